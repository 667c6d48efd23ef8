"""Text reports of the CLI: tables, a model's scores and importance, an evaluation."""

from __future__ import annotations


def kept_of(info: dict) -> str:
    """"kept epoch 9 of 29": whose weights the model holds, and so whose metrics it shows."""
    return f"kept epoch {info.get('kept_epoch')} of {info['progress']['epoch']}"


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def number(value) -> str | None:
    return None if value is None or value != value else f"{value:.4g}"


def model_report(info: dict) -> str:
    """A model's task, kept epoch, metrics, test scores and feature importance."""
    metrics = info.get("metrics") or {}
    lines = [f"{info['id']}: {info['task']}, {info.get('target') or 'target'} from "
             f"{info['n_inputs']} inputs, trained {info['epochs_trained']} epochs, kept epoch "
             f"{info.get('kept_epoch')}",
             "  metrics:  " + scalars(metrics)]
    if info.get("test_metrics"):
        lines.append(f"  test ({info['test_rows']} rows): " + scalars(info["test_metrics"]))
    if info.get("feature_importance"):
        lines.append(f"\nfeature importance (on the {info.get('importance_rows')} rows: how "
                     f"much {metrics.get('metric_name')} worsens when the column is shuffled)")
        ranked = sorted(info["feature_importance"], key=lambda f: -f["importance"])
        lines.append(table(["COLUMN", "IMPORTANCE"], [[f["column"], number(f["importance"])]
                                                      for f in ranked]))
    return "\n".join(lines)


def evaluation_report(found: dict) -> str:
    """An evaluation's metrics, and for a classifier its confusion matrix and per-class
    precision and recall."""
    metrics = found["metrics"]
    lines = [f"{found['n_rows']} rows: " + scalars(metrics)]
    matrix = found.get("confusion_matrix")
    if matrix:
        labels = [str(label) for label in matrix["labels"]]
        lines += ["\nconfusion matrix (rows: true class, columns: predicted)",
                  table(["", *labels], [[label, *row] for label, row in
                                        zip(labels, matrix["counts"])]),
                  "\n" + table(["CLASS", "PRECISION", "RECALL"],
                               [[label, number(metrics["precision"][label]),
                                 number(metrics["recall"][label])] for label in labels])]
    return "\n".join(lines)


def scalars(metrics: dict) -> str:
    return ", ".join(f"{k} {number(v)}" for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool))
