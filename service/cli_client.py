"""The `backprop` commands that talk to a running service through the Python client:
train, jobs, status, history, predict, cancel. `--url` / `--api-key` (or BACKPROP_URL,
BACKPROP_API_KEY) choose the service; the default is what `backprop up` serves."""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

import numpy as np

TRAINING_OPTIONS = {"epochs": "epochs", "lr": "learning_rate", "optimizer": "optimizer",
                    "batch_size": "batch_size", "validation_split": "validation_split",
                    "training_seed": "seed"}


class UsageError(Exception):
    """A local file or option the user should change (exit status 2)."""


def client_from(args: argparse.Namespace):
    from service.client import Client

    return Client(url=args.url, api_key=args.api_key)


def read_json(path: str, what: str) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} {path} must hold a JSON object")
    return value


def job_request(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """(network, training, options) from spec.json (a network spec, or {"network", "training",
    ...}), then --training FILE, then the inline options, each overriding the one before."""
    spec = read_json(args.spec, "spec")
    if "network" in spec:
        network, training = spec["network"], dict(spec.get("training") or {})
        options = {k: spec[k] for k in ("device", "dtype", "seed", "timeout_s") if k in spec}
    else:
        network, training, options = spec, {}, {}
    if args.training:
        training.update(read_json(args.training, "training file"))
    training.update({field: getattr(args, name) for name, field in TRAINING_OPTIONS.items()
                     if getattr(args, name) is not None})
    options.update({k: getattr(args, k) for k in ("device", "dtype", "seed")
                    if getattr(args, k) is not None})
    return network, training, options


def upload_data(client, path: str, target: str | None, dtype: str) -> dict:
    """A CSV (header row; --target names the label column(s)) or an NPZ holding X and y."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no data file {path}")
    if file.suffix.lower() == ".npz":
        with np.load(file, allow_pickle=False) as npz:
            if not {"X", "y"} <= set(npz.files):
                raise UsageError(f"{path} holds {npz.files}; the NPZ needs arrays X and y")
            return client.upload(npz["X"], npz["y"], name=file.stem, dtype=dtype)
    targets = [t.strip() for t in target.split(",")] if target else None
    return client.upload_csv(file, target=targets, dtype=dtype)


def cmd_train(args: argparse.Namespace) -> int:
    network, training, options = job_request(args)
    if (args.data is None) == (args.dataset is None):
        raise UsageError("give the data: --data data.csv (or .npz), or --dataset ID")
    with client_from(args) as client:
        dataset_id = args.dataset
        if args.data:
            dataset = upload_data(client, args.data, args.target, options.get("dtype", "float32"))
            dataset_id = dataset["id"]
            say(f"uploaded {args.data}: dataset {dataset_id} ({dataset['n_samples']} rows, "
                f"{dataset['n_features']} features)")
        job = client.train(network, training, dataset=dataset_id, **options)
        if not args.follow:
            say(f"submitted job {job.id} ({job.status}); follow it with `backprop status {job.id}`")
            print(job.id)
            return 0
        say(f"training job {job.id}: {job.epochs} epochs (Ctrl-C stops following, not the job)")
        try:
            job.wait(progress=True)
        except KeyboardInterrupt:
            say(f"\nstopped following; job {job.id} goes on: `backprop status {job.id}`")
            return 130
    return report_end(job)


def report_end(job) -> int:
    names = {"loss": "loss", "val_loss": "val_loss", "metric": job.metrics.get("metric_name"),
             "val_metric": f"val_{job.metrics.get('metric_name')}"}
    metrics = ", ".join(f"{names[k]} {job.metrics[k]:.4g}" for k in names
                        if job.metrics.get(k) is not None)
    if job.status == "succeeded":
        say(f"job {job.id} succeeded after {job.epoch} epochs ({metrics}); model:")
        print(job.model_id)
        return 0
    say(f"job {job.id} was canceled at epoch {job.epoch}"
        + (f"; model {job.model_id} keeps the weights it had" if job.model_id else ""))
    return 1


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def number(value) -> str | None:
    return None if value is None or value != value else f"{value:.4g}"


def when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def cmd_jobs(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        jobs = client.jobs(status=args.status, limit=args.limit)
    print(table(["JOB", "STATUS", "EPOCH", "LOSS", "VAL_LOSS", "MODEL", "CREATED"],
                [[j.id, j.status, f"{j.epoch}/{j.epochs}", number(j.metrics.get("loss")),
                  number(j.metrics.get("val_loss")), j.model_id, when(j.info["created_at"])]
                 for j in jobs]))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from service.client import ProgressBar

    with client_from(args) as client:
        job = client.job(args.job_id)
    if args.json:
        print(json.dumps(job.info, indent=2))
        return 0
    print(ProgressBar.render(job.info))
    for label, value in (("model", job.model_id), ("dataset", job.info.get("dataset_id")),
                         ("created", when(job.info["created_at"])),
                         ("started", when(job.info.get("started_at"))),
                         ("finished", when(job.info.get("finished_at"))),
                         ("error", job.error and (f"at epoch {job.error.get('epoch')}: "
                                                  f"{job.error['message']}"))):
        if value:
            print(f"  {label + ':':<10}{value}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        job = client.job(args.job_id)
        history = job.history()
    metric = (job.metrics.get("metric_name") or "metric").upper()
    print(table(["EPOCH", "LOSS", "VAL_LOSS", metric, "SECONDS"],
                [[int(e), number(l), number(v), number(m), f"{s:.3f}"] for e, l, v, m, s in zip(
                    history["epoch"], history["loss"], history["val_loss"], history["metric"],
                    history["seconds"])]))
    if args.plot:
        if not len(history["epoch"]):
            raise UsageError(f"job {job.id} has no epochs yet; nothing to plot")
        plot_history(history, job.id, job.info["network"].get("loss", "loss"), Path(args.plot))
        say(f"wrote the loss curve of {job.id} to {args.plot}")
    return 0


def plot_history(history: dict, job_id: str, loss_name: str, path: Path) -> None:
    """loss and val_loss per epoch, as a PNG (matplotlib's Agg backend, no display needed)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'backprop-service[plot]'") from None
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    epochs, loss, val = history["epoch"], history["loss"], history["val_loss"]
    ax.plot(epochs, loss, label="loss (training)", color="#1f77b4", linewidth=1.8)
    if np.isfinite(val).any():
        ax.plot(epochs, val, label="val_loss (validation)", color="#ff7f0e", linewidth=1.8)
    values = np.concatenate([loss, val[np.isfinite(val)]])
    if values.min() > 0 and values.max() / values.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{loss_name} loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title(f"job {job_id}", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def read_rows(path: str, drop: str | None) -> np.ndarray:
    """A CSV with a header row -> float rows, leaving out the --target column(s)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [row for row in reader if row]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    dropped = [t.strip() for t in drop.split(",")] if drop else []
    missing = [t for t in dropped if t not in header]
    if missing:
        raise UsageError(f"--target column(s) {missing} are not in the header of {path}: {header}")
    keep = [i for i, h in enumerate(header) if h not in dropped]
    try:
        return np.array([[float(row[i]) for i in keep] for row in rows], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise UsageError(f"{path}: every row needs {len(header)} numbers ({exc})") from None


def cmd_predict(args: argparse.Namespace) -> int:
    X = read_rows(args.data, args.target)
    with client_from(args) as client:
        model = client.model(args.model_id)
        if X.ndim != 2 or X.shape[1] != model.n_inputs:
            width = X.shape[1] if X.ndim == 2 else 0
            raise UsageError(f"{args.data} has {width} feature columns; model {model.id} takes "
                             f"{model.n_inputs} (name the label column(s) with --target)")
        outputs = model.predict(X)
        labels = model.predict_labels(X) if model.task != "regression" else None
    header = [f"output_{j}" for j in range(outputs.shape[1])]
    if labels is not None:
        labels = labels.reshape(len(X), -1)
        header = (["label"] if labels.shape[1] == 1 else
                  [f"label_{j}" for j in range(labels.shape[1])]) + header
        outputs = np.hstack([labels, outputs])
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(header)
        n_labels = 0 if labels is None else labels.shape[1]
        writer.writerows([[int(v) for v in row[:n_labels]] + [f"{v:.7g}" for v in row[n_labels:]]
                          for row in outputs])
    finally:
        if args.output:
            out.close()
            say(f"wrote {len(X)} predictions of model {model.id} to {args.output}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        job = client.job(args.job_id).cancel()
    say(f"job {job.id} is {job.status}" + (" (stops within one epoch)" if not job.done else ""))
    return 0


def say(message: str) -> None:
    """Progress and summaries go to stderr; stdout keeps what scripts read (ids, tables, CSV)."""
    print(message, file=sys.stderr, flush=True)


def guarded(command):
    """Run a command, turning API and usage errors into a one-line message and exit status."""
    def run(args: argparse.Namespace) -> int:
        from service.client import ApiError

        try:
            return command(args)
        except ApiError as exc:
            say(f"error: {exc}")
            return 1
        except UsageError as exc:
            say(f"error: {exc}")
            return 2
    return run


def add_client_commands(parser: argparse.ArgumentParser, sub) -> None:
    """The client subcommands, and --url/--api-key both before and after the command name."""
    def connection(target: argparse.ArgumentParser, default) -> None:
        target.add_argument("--url", default=default, help="the service's URL (default: "
                                                           "BACKPROP_URL or http://127.0.0.1:8000)")
        target.add_argument("--api-key", default=default,
                            help="sent as `Authorization: Bearer` (default: BACKPROP_API_KEY)")
    connection(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    connection(common, argparse.SUPPRESS)  # after the command too, without hiding the global one

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=help, description=help)
        cmd.set_defaults(func=guarded(handler))
        return cmd

    train = command("train", cmd_train, "upload data, submit a training job and (with --follow) "
                                         "show its progress until it ends with a model id")
    train.add_argument("spec", help="JSON file: a network spec, or "
                                    "{\"network\": ..., \"training\": ...}")
    train.add_argument("--data", help="CSV with a header row, or NPZ with arrays X and y")
    train.add_argument("--dataset", help="an uploaded dataset's id, instead of --data")
    train.add_argument("--target", help="CSV label column(s), comma-separated (default: the last)")
    train.add_argument("--training", help="JSON file of training settings")
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--optimizer", help="gd, sgd, momentum, nesterov or adam")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--validation-split", type=float, help="fraction held out, e.g. 0.1")
    train.add_argument("--training-seed", type=int, help="seed of shuffling and the split")
    train.add_argument("--seed", type=int, help="weight-initialisation seed")
    train.add_argument("--device", choices=["cpu", "gpu", "auto"])
    train.add_argument("--dtype", choices=["float32", "float64"])
    train.add_argument("--follow", "-f", action="store_true",
                       help="show a live progress bar; print the model id at the end")

    jobs = command("jobs", cmd_jobs, "list jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "canceled"])
    jobs.add_argument("--limit", type=int, default=50)

    status = command("status", cmd_status, "one job's status, progress, metrics and model id")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="the API's JSON, as is")

    history = command("history", cmd_history, "a job's per-epoch loss table (and loss curve)")
    history.add_argument("job_id")
    history.add_argument("--plot", metavar="PNG", help="write the loss/val_loss curve to this PNG")

    predict = command("predict", cmd_predict, "predict with a model on the rows of a CSV")
    predict.add_argument("model_id")
    predict.add_argument("data", help="CSV with a header row")
    predict.add_argument("--target", help="column(s) to leave out, e.g. the label column")
    predict.add_argument("--output", "-o", help="CSV to write (default: stdout)")

    cancel = command("cancel", cmd_cancel, "cancel a queued or running job")
    cancel.add_argument("job_id")
