// A dataset's columns as the schema recorded at upload describes them: kind, missing values,
// categories or range, and why a column cannot be a feature as it is.

const CATEGORIES_SHOWN = 6;

function format(value) {
  return Number.isInteger(value) ? String(value) : Number(value).toPrecision(4);
}

function values(column) {
  if (column.kind === "categorical") {
    const shown = column.categories.slice(0, CATEGORIES_SHOWN).join(", ");
    const more = column.categories.length - CATEGORIES_SHOWN;
    return more > 0 ? `${shown}, … (${column.categories.length})` : shown;
  }
  if (column.kind === "numeric" && column.min !== undefined) {
    return `${format(column.min)} – ${format(column.max)} (mean ${format(column.mean)})`;
  }
  return "";
}

function row(cells, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  for (const [text, cellClass] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cellClass) td.className = cellClass;
    tr.append(td);
  }
  return tr;
}

/** Fill `body` (a tbody) with one row per column, the target last; return a one-line summary. */
export function renderColumns(body, dataset) {
  const rows = dataset.columns.map((column) => {
    const tr = row([[column.name], [column.kind], [String(column.missing), "num"], [values(column)]],
      column.problem ? "problem" : column.kind === "ignored" ? "muted" : "");
    if (column.problem) tr.title = column.problem;
    return tr;
  });
  const target = dataset.target;
  const classes = target.classes ? `${target.classes.length} classes: ${target.classes.slice(0, CATEGORIES_SHOWN).join(", ")}` : "";
  rows.push(row([[target.names.join(", ")], [`target (${target.kind})`], [String(target.rows_dropped), "num"], [classes]], "target"));
  body.replaceChildren(...rows);
  return `${dataset.name} · ${dataset.n_samples} rows · ${dataset.source}`;
}
