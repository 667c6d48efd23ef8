// The dashboard: a job list polled every POLL_MS, and for the selected job (#job=ID in the URL)
// its loss curves and per-layer gradient norms, fed live by GET /v1/jobs/{id}/events.

import { ApiError, apiKey, getJSON, readEvents } from "./api.js";
import { LineChart } from "./chart.js";
import { renderColumns } from "./dataset.js";
import { el, formatNumber } from "./format.js";
import { clearModel, showModel } from "./model.js";

const POLL_MS = 2000;
const RETRY_MS = 2000;
const JOBS_SHOWN = 50;
const LOSS_COLOR = "#1f6fd1";
const VAL_LOSS_COLOR = "#e8710a";
const LAYER_COLORS = ["#1f6fd1", "#e8710a", "#1e7f3c", "#b3261e", "#7b3fb5", "#00838f", "#a1662f", "#c2185b"];

const $ = (id) => document.getElementById(id);

const state = {
  jobs: [], // the last /v1/jobs answer
  selected: null, // id of the job shown on the right
  job: null, // its latest record (from the list, the stream's end event, or GET /v1/jobs/{id})
  records: [], // its epoch records, in order, as the events stream delivered them
  stream: null, // AbortController of its events stream
  frame: 0,
};

let lossChart;
let gradChart;

function init() {
  lossChart = new LineChart($("loss-chart"), { onHover: renderLegends });
  gradChart = new LineChart($("grad-chart"), { logY: true, onHover: renderLegends });
  $("loss-log").addEventListener("change", (event) => {
    lossChart.logY = event.target.checked;
    lossChart.redraw();
  });
  $("key-input").value = apiKey.get();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveKey($("key-input").value.trim());
  });
  $("key-forget").addEventListener("click", () => saveKey(""));
  window.addEventListener("hashchange", selectFromHash);
  selectFromHash();
  pollJobs();
}

function saveKey(key) {
  apiKey.set(key);
  $("key-input").value = key;
  const id = state.selected;
  state.selected = null;
  if (id) select(id); // reconnect its stream with the new key
  refreshJobs();
}

// -- the job list ------------------------------------------------------------------------------

async function pollJobs() {
  if (!document.hidden) await refreshJobs();
  setTimeout(pollJobs, POLL_MS);
}

async function refreshJobs() {
  try {
    const answer = await getJSON(`/v1/jobs?limit=${JOBS_SHOWN}`);
    state.jobs = answer.jobs;
    showNotice(null);
    $("key-form").classList.remove("needed");
    $("jobs-updated").textContent = `· updated ${new Date().toLocaleTimeString()}`;
    const listed = state.jobs.find((job) => job.id === state.selected);
    if (listed && !isFinished(state.job)) state.job = listed;
    renderJobs();
    scheduleRender();
  } catch (error) {
    showProblem(error);
  }
}

function renderJobs() {
  const body = $("jobs-table").tBodies[0];
  const focused = body.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  body.replaceChildren(...state.jobs.map(jobRow));
  // A keyboard user keeps their place across refreshes.
  if (focused) [...body.rows].find((row) => row.dataset.id === focused)?.focus();
  $("jobs-empty").hidden = state.jobs.length > 0;
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.id = job.id;
  row.tabIndex = 0;
  row.classList.toggle("selected", job.id === state.selected);
  const open = () => (location.hash = `job=${encodeURIComponent(job.id)}`);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (event) => event.key === "Enter" && open());
  const { epoch, epochs, fraction } = job.progress;
  row.append(
    cell(el("code", job.id, { title: job.id }), "job-id"),
    cell(badge(job.status)),
    cell(progressCell(fraction, `${epoch}/${epochs}`)),
    metricCell(job),
    cell(formatNumber(job.metrics?.loss), "num"),
    cell(timeAgo(job.created_at), "muted"),
  );
  return row;
}

/** The metric early stopping weighs: val_metric when the job validates, else metric; a
 * finished job's are its kept epoch's. The value keeps every digit in data-value. */
function metricCell(job) {
  const metrics = job.metrics || {};
  const validated = metrics.val_metric !== null && metrics.val_metric !== undefined;
  const value = validated ? metrics.val_metric : metrics.metric;
  const name = metrics.metric_name ? `${validated ? "val " : ""}${metrics.metric_name}` : "";
  const td = el("td", "", { className: "num metric" });
  td.dataset.value = value ?? "";
  td.dataset.name = name;
  td.append(el("span", formatNumber(value)), el("small", name));
  if (name) td.title = `${name} ${value}${job.kept_epoch ? ` (kept epoch ${job.kept_epoch})` : ""}`;
  return td;
}

// -- the selected job --------------------------------------------------------------------------

function selectFromHash() {
  const match = location.hash.match(/job=([^&]+)/);
  if (match) select(decodeURIComponent(match[1]));
}

function select(id) {
  if (id === state.selected) return;
  state.stream?.abort();
  state.selected = id;
  state.job = state.jobs.find((job) => job.id === id) || null;
  state.records = [];
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("detail-id").textContent = id;
  $("detail-stream").textContent = `GET /v1/jobs/${id}/events`;
  $("detail-error").hidden = true;
  $("data").hidden = true;
  clearModel($("detail-model"));
  for (const row of $("jobs-table").tBodies[0].rows) row.classList.toggle("selected", row.dataset.id === id);
  if (!state.job) {
    getJSON(`/v1/jobs/${encodeURIComponent(id)}`)
      .then((job) => id === state.selected && !state.job && ((state.job = job), scheduleRender()))
      .catch((error) => id === state.selected && showDetailError(error));
  }
  scheduleRender();
  follow(id);
  showData(id);
}

/** The selected job's dataset and its columns (jobs with inline data have none to show). */
async function showData(id) {
  try {
    const job = state.job?.id === id ? state.job : await getJSON(`/v1/jobs/${encodeURIComponent(id)}`);
    if (!job.dataset_id || id !== state.selected) return;
    const dataset = await getJSON(`/v1/datasets/${encodeURIComponent(job.dataset_id)}`);
    if (id !== state.selected) return;
    $("data-id").textContent = dataset.id;
    $("data-facts").textContent = renderColumns($("columns-table").tBodies[0], dataset);
    $("data").hidden = false;
  } catch {
    // a deleted dataset, or no key yet: the job's own view still stands
  }
}

/** Follow a job's events until its `end`; reconnect after drops, resuming at the last epoch. */
async function follow(id) {
  const controller = new AbortController();
  state.stream = controller;
  const path = `/v1/jobs/${encodeURIComponent(id)}/events`;
  let ended = false;
  const onEvent = ({ event, data }) => {
    if (event === "epoch") addRecord(JSON.parse(data));
    else if (event === "end") {
      ended = true;
      state.job = JSON.parse(data);
      scheduleRender();
      refreshJobs();
    }
  };
  while (!ended && !controller.signal.aborted) {
    const last = state.records.at(-1)?.epoch ?? null;
    setStreamState("live");
    try {
      await readEvents(path, { lastEventId: last, signal: controller.signal, onEvent });
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof ApiError && [401, 404].includes(error.status)) {
        showDetailError(error);
        setStreamState("stopped");
        return;
      }
      setStreamState(`reconnecting (${error.message})`);
    }
    if (!ended) await sleep(RETRY_MS);
  }
  if (ended && !controller.signal.aborted) setStreamState("finished");
}

function addRecord(record) {
  const last = state.records.at(-1)?.epoch ?? 0;
  if (record.epoch <= last) return;
  state.records.push(record);
  if (state.job && !isFinished(state.job)) {
    const progress = state.job.progress;
    state.job = { ...state.job, status: "running", progress: { ...progress, epoch: record.epoch,
      fraction: record.epoch / progress.epochs } };
  }
  scheduleRender();
}

/** Many events, one repaint: text and charts are redrawn once per animation frame. */
function scheduleRender() {
  if (state.frame) return;
  state.frame = requestAnimationFrame(() => {
    state.frame = 0;
    renderDetail();
    renderCharts();
  });
}

function renderDetail() {
  const job = state.job;
  if (!state.selected || !job) return;
  const status = $("detail-status");
  status.textContent = job.status;
  status.className = `badge ${job.status}`;
  const last = state.records.at(-1) || {};
  const epoch = Math.max(job.progress.epoch, last.epoch ?? 0); // the list may lag the stream
  $("detail-bar").style.width = `${(100 * epoch) / job.progress.epochs}%`;
  // A finished job's metrics are its kept epoch's (early stopping keeps the best weights),
  // not the last epoch's.
  const kept = isFinished(job) && job.kept_epoch;
  const metrics = kept ? { ...last, ...(job.metrics || {}) } : { ...(job.metrics || {}), ...last };
  const metricName = metrics.metric_name || "metric";
  const rate = last.learning_rate ?? job.training.learning_rate;
  const facts = [
    ["epoch", kept ? `kept epoch ${job.kept_epoch} of ${epoch}` : `${epoch} / ${job.progress.epochs}`],
    ["loss", formatNumber(metrics.loss)],
    ["val_loss", formatNumber(metrics.val_loss)],
    [metricName, formatNumber(metrics.metric)],
    [`val ${metricName}`, formatNumber(metrics.val_metric)],
    ["elapsed", formatSeconds(job.progress.elapsed_s)],
    ["ETA", isFinished(job) ? "—" : formatSeconds(job.progress.eta_s)],
    ["network", describeNetwork(job.network)],
    ["optimizer", `${job.training.optimizer ?? "default"} · lr ${formatNumber(rate)}`],
    ["model", job.model_id || "—"],
  ];
  if (job.restarts) facts.push(["restarts", String(job.restarts)]);
  $("detail-facts").replaceChildren(...facts.map(([name, value]) => {
    const item = el("div", "", { className: name === "network" ? "wide" : "" });
    item.append(el("dt", name), el("dd", value, { title: value }));
    return item;
  }));
  showModel($("detail-model"), job);
  const error = $("detail-error");
  error.hidden = !job.error;
  if (job.error) {
    const where = job.error.epoch ? ` at epoch ${job.error.epoch}` : "";
    error.textContent = `Failed${where}: ${job.error.message}`;
  }
}

function renderCharts() {
  const records = state.records;
  const validated = records.filter((r) => r.val_loss !== null && r.val_loss !== undefined);
  const loss = [{ name: "loss", color: LOSS_COLOR, points: records.map((r) => [r.epoch, r.loss]) }];
  if (validated.length) {
    loss.push({ name: "val_loss", color: VAL_LOSS_COLOR, dashed: true,
                points: validated.map((r) => [r.epoch, r.val_loss]) });
  }
  lossChart.setSeries(loss);
  const layers = records[0]?.grad_norms?.length ?? 0;
  const specs = state.job?.network?.layers || [];
  gradChart.setSeries(Array.from({ length: layers }, (_, l) => ({
    name: `layer ${l + 1}${specs[l] ? ` (${specs[l].units} ${specs[l].activation})` : ""}`,
    color: LAYER_COLORS[l % LAYER_COLORS.length],
    points: records.map((r) => [r.epoch, r.grad_norms[l]]),
  })));
  renderLegends(lossChart.hoverX ?? gradChart.hoverX);
}

/** Legends show each series' value at the hovered epoch, or at the latest one. */
function renderLegends(hoverEpoch = null) {
  for (const [chart, legendId] of [[lossChart, "loss-legend"], [gradChart, "grad-legend"]]) {
    const items = chart.series.map((s) => {
      const point = hoverEpoch === null ? s.points.at(-1) : s.points.find((p) => p[0] === hoverEpoch);
      const swatch = el("span", "", { className: `swatch${s.dashed ? " dashed" : ""}` });
      swatch.style.color = s.color;
      if (!s.dashed) swatch.style.background = s.color;
      const item = el("span");
      item.append(swatch, `${s.name} `, el("b", point ? formatNumber(point[1]) : "—"));
      return item;
    });
    if (hoverEpoch !== null && items.length) items.unshift(el("span", `epoch ${hoverEpoch}`));
    $(legendId).replaceChildren(...items);
  }
}

// -- messages ----------------------------------------------------------------------------------

function showProblem(error) {
  if (error instanceof ApiError && error.status === 401) {
    $("key-form").classList.add("needed");
    showNotice(apiKey.get()
      ? `The API key was refused: ${error.message}. Enter a valid key above.`
      : "This service needs an API key: enter it above (it stays in this browser).");
    $("key-input").focus();
  } else {
    showNotice(`Cannot read the job list: ${error.message}. Retrying every ${POLL_MS / 1000} s.`);
  }
}

function showNotice(text) {
  const notice = $("notice");
  notice.hidden = !text;
  notice.textContent = text || "";
}

function showDetailError(error) {
  const box = $("detail-error");
  box.hidden = false;
  box.textContent = error.message;
}

function setStreamState(text) {
  $("stream-state").textContent = text;
}

// -- small helpers -----------------------------------------------------------------------------

function cell(content, className = "") {
  const td = el("td", typeof content === "string" ? content : "", { className });
  if (typeof content !== "string") td.append(content);
  return td;
}

function badge(status) {
  return el("span", status, { className: `badge ${status}` });
}

function progressCell(fraction, label) {
  const box = el("div", "", { className: "progress-cell" });
  const bar = el("div", "", { className: "progress" });
  const fill = el("div");
  fill.style.width = `${100 * fraction}%`;
  bar.append(fill);
  box.append(bar, el("span", label));
  return box;
}

function isFinished(job) {
  return !!job && ["succeeded", "failed", "canceled"].includes(job.status);
}

function describeNetwork(network) {
  return (network?.layers || []).map((l) => `${l.units} ${l.activation}`).join(" → ") || "—";
}

function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function timeAgo(epochSeconds) {
  const seconds = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(epochSeconds * 1000).toLocaleDateString();
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

init();
