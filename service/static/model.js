// The selected job's model, from GET /v1/models/{id}: how it scored on the rows the job held
// out (training.test_split) — a classifier's confusion matrix, a regression's errors in the
// target's units — and which raw columns it leans on (permutation feature importance).

import { getJSON } from "./api.js";
import { el, formatNumber } from "./format.js";

/** Scores shown above the confusion matrix, in this order, when the model has them. */
const CLASS_SCORES = ["accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc"];
/** A regression's test scores; rmse and mae are in the target's units (the API's own). */
const REGRESSION_SCORES = ["r2", "rmse", "mae"];
const HIT_RGB = "30, 127, 60"; // --succeeded: the diagonal
const MISS_RGB = "179, 38, 30"; // --failed: everything off it

/** Show `job`'s model in `box` (hidden while the job has none); fetched once per model. */
export async function showModel(box, job) {
  if (!job?.model_id) {
    clearModel(box);
    return;
  }
  if (box.dataset.model === job.model_id) return;
  box.dataset.model = job.model_id;
  let model;
  try {
    model = await getJSON(`/v1/models/${encodeURIComponent(job.model_id)}`);
  } catch (error) {
    if (box.dataset.model !== job.model_id) return;
    box.replaceChildren(el("p", `Cannot read model ${job.model_id}: ${error.message}`, { className: "error" }));
    box.hidden = false;
    return;
  }
  if (box.dataset.model !== job.model_id) return; // another job was selected meanwhile
  const title = el("h3", "Model ");
  title.append(el("code", model.id), el("span", ` · ${model.task}`, { className: "muted" }));
  box.replaceChildren(title, ...evaluation(model), ...importance(model));
  box.hidden = false;
}

/** Empty and hide `box`, so the next job's model is fetched afresh. */
export function clearModel(box) {
  box.hidden = true;
  delete box.dataset.model;
  box.replaceChildren();
}

function evaluation(model) {
  if (model.task === "multilabel") return []; // held-out scores are kept for one answer per row
  if (!model.test_metrics) return [noTestRows(model)];
  const heading = el("h4", `Test rows (${model.test_rows}), held out of training`);
  if (model.task === "classification") {
    const shown = CLASS_SCORES.filter((name) => typeof model.test_metrics[name] === "number");
    return [heading, scores(model.test_metrics, shown), confusionMatrix(model.test_confusion_matrix)];
  }
  const units = el("p", `rmse and mae in the units of ${model.target ?? "the target"}. Per-row ` +
    "residuals are not stored with the model; POST rows with their target to " +
    `/v1/models/${model.id}/evaluate to score rows of your own.`, { className: "muted small" });
  return [heading, scores(model.test_metrics, REGRESSION_SCORES), units];
}

function noTestRows(model) {
  const what = model.task === "classification" ? "confusion matrix" : "test scores (r2, rmse, mae)";
  return el("p", `No held-out rows were kept for this job, so there is no ${what}. Submit it ` +
    "again with training.test_split (for example 0.2) to hold that share of the rows out of " +
    `training and score the model on them, or POST rows to /v1/models/${model.id}/evaluate.`,
  { className: "muted no-test-rows" });
}

function scores(metrics, names) {
  const list = el("dl", "", { className: "facts test-scores" });
  for (const name of names) {
    const item = el("div");
    item.dataset.metric = name;
    item.append(el("dt", name), el("dd", formatNumber(metrics[name])));
    list.append(item);
  }
  return list;
}

/** Rows: true class; columns: predicted. Each cell is shaded by its share of its row. */
function confusionMatrix(matrix) {
  const table = el("table", "", { className: "confusion" });
  table.createCaption().textContent = "Confusion matrix: rows are the true class, columns the predicted one";
  const head = table.createTHead().insertRow();
  head.append(el("th", "true \\ predicted", { className: "corner" }),
    ...matrix.labels.map((label) => el("th", String(label), { title: String(label), className: "num" })));
  const body = table.createTBody();
  matrix.counts.forEach((counts, i) => {
    const row = body.insertRow();
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    row.append(el("th", String(matrix.labels[i]), { title: String(matrix.labels[i]) }));
    counts.forEach((count, j) => {
      const cell = el("td", String(count), { className: "num" });
      cell.dataset.count = String(count);
      const share = count / total;
      if (count) cell.style.background = `rgba(${i === j ? HIT_RGB : MISS_RGB}, ${0.12 + 0.5 * share})`;
      cell.title = `${count} of ${total} rows of ${matrix.labels[i]} predicted ${matrix.labels[j]}`;
      row.append(cell);
    });
  });
  const scroll = el("div", "", { className: "table-scroll" });
  scroll.append(table);
  return scroll;
}

/** Permutation importance per raw column, largest first, as bars scaled to the largest. */
function importance(model) {
  const found = [...(model.feature_importance || [])].sort((a, b) => b.importance - a.importance);
  if (!found.length) return [];
  const top = Math.max(...found.map((f) => f.importance), 1e-12);
  const metric = model.metrics?.metric_name ?? "the metric";
  const box = el("div", "", { id: "detail-importance", className: "importance" });
  box.append(el("h4", `Feature importance (${model.importance_rows} rows): how much ${metric} ` +
    "worsens when the column is shuffled"));
  for (const f of found) {
    const bar = el("div", "", { className: "progress" });
    bar.append(el("div"));
    bar.firstChild.style.width = `${Math.max(0, (100 * f.importance) / top)}%`;
    const row = el("div", "", { className: "importance-row" });
    row.append(el("span", f.column, { title: f.column }), bar,
      el("span", formatNumber(f.importance), { className: "num" }));
    box.append(row);
  }
  return [box];
}
