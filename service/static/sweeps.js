// The sweeps panel: a tenant's sweeps, one sweep's leaderboard (trials best first) and its
// trials' validation curves on one chart, the best trial highlighted. Reads /v1/sweeps and
// each trial's /v1/jobs/{id}/history like any client; kept apart from the jobs view.

import { getJSON } from "./api.js";
import { LineChart } from "./chart.js";

const BEST_COLOR = "#d1241f";
const OTHER_COLOR = "#9aa1ab";
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);
let chart = null;
let selected = null;

function el(tag, text = "", props = {}) {
  const node = document.createElement(tag);
  node.textContent = text;
  return Object.assign(node, props);
}

function number(value) {
  return value === null || value === undefined ? "—" : Number(value).toPrecision(4);
}

function paramsText(params) {
  return Object.entries(params)
    .map(([path, v]) => `${path}=${typeof v === "number" ? number(v) : JSON.stringify(v)}`)
    .join(" ");
}

async function refreshList() {
  try {
    const { sweeps } = await getJSON("/v1/sweeps?limit=20");
    $("sweeps-empty").hidden = sweeps.length > 0;
    $("sweeps-list").replaceChildren(...sweeps.map((s) => {
      const row = el("tr");
      row.dataset.id = s.id;
      row.className = s.id === selected ? "selected" : "";
      row.append(el("td", s.id), el("td", s.status), el("td", s.strategy),
                 el("td", `${s.progress.trials_ended}/${s.progress.trials}`),
                 el("td", number(s.best?.metric), { className: "num" }));
      row.addEventListener("click", () => { selected = s.id; refreshSweep(); refreshList(); });
      return row;
    }));
  } catch {
    // the jobs view reports a missing key or an unreachable API
  }
}

async function refreshSweep() {
  if (!selected) return;
  const sweep = await getJSON(`/v1/sweeps/${selected}`);
  const best = sweep.best?.job_id;
  $("sweep-detail").hidden = false;
  $("sweep-title").textContent = `${sweep.id} · ${sweep.status} · ${sweep.strategy} · ` +
    `${sweep.metric} (${sweep.mode}) · epochs ${sweep.epochs_trained} of ` +
    `${sweep.progress.epochs_if_all_trained} if all trained`;
  $("sweep-trials").replaceChildren(...sweep.trials.map((t) => {
    const row = el("tr", "", { className: t.job_id && t.job_id === best ? "best" : "" });
    row.append(el("td", String(t.index)), el("td", t.job_id || "—"), el("td", t.status),
               el("td", String(t.epochs), { className: "num" }),
               el("td", number(t.metric), { className: "num" }), el("td", t.worker || "—"),
               el("td", paramsText(t.params)));
    return row;
  }));
  const histories = await Promise.all(sweep.trials.filter((t) => t.job_id).map(async (t) => {
    const { epochs } = await getJSON(`/v1/jobs/${t.job_id}/history`);
    return { trial: t, epochs };
  }));
  const key = sweep.metric;
  chart.setSeries(histories
    .sort((a, b) => (a.trial.job_id === best) - (b.trial.job_id === best))  // best drawn last
    .map(({ trial, epochs }) => ({
      name: `trial ${trial.index}`,
      color: trial.job_id === best ? BEST_COLOR : OTHER_COLOR,
      width: trial.job_id === best ? 3 : 1,
      points: epochs.filter((e) => e[key] !== null && e[key] !== undefined)
        .map((e) => [e.epoch, e[key]]),
    })));
  $("sweep-chart").dataset.best = best || "";
}

function init() {
  chart = new LineChart($("sweep-chart"));
  refreshList();
  setInterval(() => { refreshList(); refreshSweep().catch(() => {}); }, REFRESH_MS);
}

init();
