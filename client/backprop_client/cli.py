"""The client commands: train, jobs, status, history, predict, cancel, sweep, sweeps.
They run as `backprop-client COMMAND` and, through add_client_commands, as `backprop COMMAND`
in the server's distribution. `--url` / `--api-key` (or BACKPROP_URL, BACKPROP_API_KEY) choose the
service; the default is what `backprop up` serves."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

from backprop_client.client import Client
from backprop_client.errors import ApiError
from backprop_client.progress import ProgressBar
from backprop_client.reports import evaluation_report, kept_of, model_report, number, table
from backprop_client.sweeps import render as render_sweep

TRAINING_OPTIONS = {"epochs": "epochs", "lr": "learning_rate", "optimizer": "optimizer",
                    "batch_size": "batch_size", "validation_split": "validation_split",
                    "training_seed": "seed"}


class UsageError(Exception):
    """A local file or option the user should change (exit status 2)."""


def client_from(args: argparse.Namespace) -> Client:
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
    ...other job fields}), then --training FILE, then the inline options, each overriding the
    one before."""
    spec = read_json(args.spec, "spec") if args.spec else {"network": None}
    if "network" in spec:
        network, training = spec["network"], dict(spec.get("training") or {})
        options = {k: v for k, v in spec.items() if k not in ("network", "training")}
    else:
        network, training, options = spec, {}, {}
    if args.training:
        training.update(read_json(args.training, "training file"))
    training.update({field: getattr(args, name) for name, field in TRAINING_OPTIONS.items()
                     if getattr(args, name) is not None})
    options.update({k: getattr(args, k) for k in ("device", "dtype", "seed")
                    if getattr(args, k) is not None})
    # No training given at all: the service's defaults (adam, early stopping, ...).
    return network, training or None, options


def column_kinds(text: str | None) -> dict | None:
    """--columns '{"year": "categorical"}' as a dict."""
    if text is None:
        return None
    try:
        kinds = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--columns must be a JSON object such as "
                         f"'{{\"year\": \"categorical\"}}' ({exc})") from None
    if not isinstance(kinds, dict):
        raise UsageError("--columns must be a JSON object such as '{\"year\": \"categorical\"}'")
    return kinds


def upload_data(client: Client, args: argparse.Namespace, dtype: str | None) -> dict:
    """A CSV sent as it is (--target names the label column(s), --ignore and --columns shape
    the table) or an NPZ holding X and y."""
    file = Path(args.data)
    if not file.is_file():
        raise UsageError(f"no data file {args.data}")
    if file.suffix.lower() == ".npz":
        if args.target or args.ignore or args.columns:
            raise UsageError("--target, --ignore and --columns name CSV columns; an NPZ holds "
                             "its labels as the array y")
        with np.load(file, allow_pickle=False) as npz:
            if not {"X", "y"} <= set(npz.files):
                raise UsageError(f"{args.data} holds {npz.files}; the NPZ needs arrays X and y")
            return client.upload(npz["X"], npz["y"], name=file.stem, dtype=dtype)
    return client.upload_csv(file, target=args.target, dtype=dtype, ignore=args.ignore,
                             columns=column_kinds(args.columns))


def uploaded(client: Client, args: argparse.Namespace, dtype: str | None) -> str:
    """The id of the dataset that --data uploads (train and sweep take the same options)."""
    dataset = upload_data(client, args, dtype)
    say(f"uploaded {args.data}: dataset {dataset['id']} ({dataset['n_samples']} rows)")
    return dataset["id"]


def cmd_train(args: argparse.Namespace) -> int:
    network, training, options = job_request(args)
    if (args.data is None) == (args.dataset is None):
        raise UsageError("give the data: --data data.csv (or .npz), or --dataset ID")
    if args.dataset and (args.target or args.columns):
        raise UsageError("--target and --columns shape a CSV upload (--data); the dataset "
                         f"{args.dataset} keeps the target and column kinds it was uploaded "
                         "with (--ignore still leaves columns out of this job)")
    if args.dataset and args.ignore:
        options["ignore"] = args.ignore  # the job's preprocessing leaves them out
    with client_from(args) as client:
        dataset_id = args.dataset or uploaded(client, args, options.get("dtype"))
        job = client.train(network, training, dataset=dataset_id, **options)
        if not args.follow:
            say(f"submitted job {job.id} ({job.status}); follow it with "
                f"`{args.prog} status {job.id}`")
            print(job.id)
            return 0
        say(f"training job {job.id}: {job.epochs} epochs (Ctrl-C stops following, not the job)")
        try:
            job.wait(progress=True)
        except KeyboardInterrupt:
            say(f"\nstopped following; job {job.id} goes on: `{args.prog} status {job.id}`")
            return 130
    return report_end(job)


def report_end(job) -> int:
    names = {"loss": "loss", "val_loss": "val_loss", "metric": job.metrics.get("metric_name"),
             "val_metric": f"val_{job.metrics.get('metric_name')}"}
    metrics = ", ".join(f"{names[k]} {job.metrics[k]:.4g}" for k in names
                        if job.metrics.get(k) is not None)
    if job.status == "succeeded":
        say(f"job {job.id} succeeded after {job.epoch} epochs, {kept_of(job.info)} "
            f"({metrics}); model:")
        print(job.model_id)
        return 0
    say(f"job {job.id} was canceled at epoch {job.epoch}"
        + (f"; model {job.model_id} keeps the weights it had" if job.model_id else ""))
    return 1


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
    with client_from(args) as client:
        job = client.job(args.job_id)
    if args.json:
        print(json.dumps(job.info, indent=2))
        return 0
    print(ProgressBar.render(job.info))
    for label, value in (("model", job.model_id),
                         ("kept", job.kept_epoch and kept_of(job.info)),
                         ("dataset", job.info.get("dataset_id")),
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
    if job.kept_epoch:
        say(f"{kept_of(job.info)}: the model keeps its weights and metrics")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        model = client.model(args.model_id)
    print(json.dumps(model.info, indent=2) if args.json else model_report(model.info))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if (args.data is None) == (args.dataset is None):
        raise UsageError("give the rows: a CSV with the target column, or --dataset ID")
    with client_from(args) as client:
        model = client.model(args.model_id)
        found = model.evaluate(csv=args.data) if args.data else \
            model.evaluate(dataset=args.dataset)
    print(json.dumps(found, indent=2) if args.json else evaluation_report(found))
    return 0


def plot_history(history: dict, job_id: str, loss_name: str, path: Path) -> None:
    """loss and val_loss per epoch, as a PNG (matplotlib's Agg backend, no display needed)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'backprop-client[plot]' "
                         "(or matplotlib itself)") from None
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


def cmd_predict(args: argparse.Namespace) -> int:
    """The service scores the CSV (columns by name; ones the model does not use are passed
    through); the answer is written as it comes, the output file opened only once the first
    piece was scored."""
    if not Path(args.data).is_file():
        raise UsageError(f"no data file {args.data}")
    out, rows = None, 0
    try:
        with client_from(args) as client:
            model = client.model(args.model_id)
            try:
                for answer, n in model.predict_csv(args.data):
                    if out is None:
                        out = open(args.output, "wb") if args.output else sys.stdout.buffer
                    out.write(answer)
                    out.flush()
                    rows += n
            except ValueError as exc:  # an empty file, or one that is not UTF-8 text
                raise UsageError(f"{args.data}: {exc}") from None
    finally:
        if args.output and out is not None:
            out.close()
    if args.output:
        say(f"wrote {rows} predictions of model {model.id} to {args.output}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Start a sweep from spec.json (the POST /v1/sweeps body); --follow shows its trials."""
    body = read_json(args.spec, "sweep spec")
    if (args.data is not None) + (args.dataset is not None) + ("dataset_id" in body) != 1:
        raise UsageError("give the data once: --data data.csv (or .npz), --dataset ID, or "
                         "\"dataset_id\" in the spec")
    with client_from(args) as client:
        dataset_id = (args.dataset or body.pop("dataset_id", None)
                      or uploaded(client, args, (body.get("base") or {}).get("dtype")))
        space, base = body.pop("space", None), body.pop("base", None)
        sweep = client.sweep(space, base, dataset=dataset_id, **body)
        if not args.follow:
            say(f"started sweep {sweep.id} ({len(sweep.trials)} trials); follow it with "
                f"`{args.prog} sweeps {sweep.id}`")
            print(sweep.id)
            return 0
        try:
            sweep.wait(progress=True)
        except KeyboardInterrupt:
            say(f"\nstopped following; sweep {sweep.id} goes on")
            return 130
    return report_sweep(sweep)


def report_sweep(sweep) -> int:
    best = sweep.best
    if best is None:
        say(f"sweep {sweep.id} {sweep.status} without a model")
        return 1
    say(f"sweep {sweep.id} {sweep.status}; best trial {best['job_id']} ({sweep.info['metric']} "
        f"{number(best['metric'])}, params {json.dumps(best['params'])}); model:")
    print(best["model_id"])
    return 0


def cmd_sweeps(args: argparse.Namespace) -> int:
    """Without an id: the sweeps, newest first; with one: its trials, best first."""
    with client_from(args) as client:
        if args.sweep_id is None:
            print(table(["SWEEP", "STATUS", "STRATEGY", "TRIALS", "BEST", "CREATED"],
                        [[s.id, s.status, s.info["strategy"],
                          f"{s.info['progress']['trials_ended']}/{s.info['progress']['trials']}",
                          number((s.best or {}).get("metric")), when(s.info["created_at"])]
                         for s in client.sweeps(limit=args.limit)]))
            return 0
        sweep = client.get_sweep(args.sweep_id)
    print(json.dumps(sweep.info, indent=2) if args.json else render_sweep(sweep.info))
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
        try:
            return command(args)
        except BrokenPipeError:
            # `backprop history JOB | head`: the reader left. Python would report the failed
            # flush of stdout at exit too, so stdout goes to /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141  # what a shell reports for a writer killed by SIGPIPE
        except ApiError as exc:
            say(f"error: {exc}")
            return 1
        except UsageError as exc:
            say(f"error: {exc}")
            return 2
    return run


def add_client_commands(parser: argparse.ArgumentParser, sub) -> None:
    """The client subcommands on `parser` (whose prog names them in hints), and --url/--api-key
    both before and after the command name."""
    def connection(target: argparse.ArgumentParser, default) -> None:
        target.add_argument("--url", default=default, help="the service's URL (default: "
                                                           "BACKPROP_URL or http://127.0.0.1:8000)")
        target.add_argument("--api-key", default=default,
                            help="sent as `Authorization: Bearer` (default: BACKPROP_API_KEY)")
    connection(parser, None)
    parser.set_defaults(prog=parser.prog)
    common = argparse.ArgumentParser(add_help=False)
    connection(common, argparse.SUPPRESS)  # after the command too, without hiding the global one

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=help, description=help)
        cmd.set_defaults(func=guarded(handler))
        return cmd

    train = command("train", cmd_train, "upload data, submit a training job and (with --follow) "
                                         "show its progress until it ends with a model id")
    train.add_argument("spec", nargs="?",
                       help="JSON file: a network spec, or {\"network\": ..., \"training\": "
                            "..., other job fields}; left out, the service picks the network "
                            "(README: Defaults)")
    train.add_argument("--data", help="CSV with a header row, or NPZ with arrays X and y")
    train.add_argument("--dataset", help="an uploaded dataset's id, instead of --data")
    train.add_argument("--target", help="CSV label column(s), comma-separated (default: the last)")
    train.add_argument("--ignore", help="CSV columns to leave out, comma-separated")
    train.add_argument("--columns", metavar="JSON",
                       help="column kinds that override the guessed ones, e.g. "
                            "'{\"year\": \"categorical\"}'")
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
    jobs.add_argument("--status", choices=["queued", "running", "paused", "succeeded", "failed",
                                           "canceled"])
    jobs.add_argument("--limit", type=int, default=50)

    status = command("status", cmd_status, "one job's status, progress, metrics and model id")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="the API's JSON, as is")

    history = command("history", cmd_history, "a job's per-epoch loss table (and loss curve)")
    history.add_argument("job_id")
    history.add_argument("--plot", metavar="PNG", help="write the loss/val_loss curve to this PNG")

    predict = command("predict", cmd_predict,
                      "score a CSV file: its rows with the predicted label and class "
                      "probabilities appended")
    predict.add_argument("model_id")
    predict.add_argument("data", help="CSV with a header row (columns the model does not use, "
                                      "such as the label, pass through)")
    predict.add_argument("--output", "-o", help="CSV to write (default: stdout)")

    model = command("model", cmd_model, "a model's metrics, kept epoch, test scores and "
                                        "feature importance")
    model.add_argument("model_id")
    model.add_argument("--json", action="store_true", help="the API's JSON, as is")

    evaluate = command("evaluate", cmd_evaluate, "score a model on rows with known targets: "
                                                 "metrics and confusion matrix")
    evaluate.add_argument("model_id")
    evaluate.add_argument("data", nargs="?", help="CSV with a header row and the target "
                                                  "column(s)")
    evaluate.add_argument("--dataset", help="an uploaded dataset's id, instead of a CSV")
    evaluate.add_argument("--json", action="store_true", help="the API's JSON, as is")

    cancel = command("cancel", cmd_cancel, "cancel a queued or running job")
    cancel.add_argument("job_id")

    sweep = command("sweep", cmd_sweep, "start a hyperparameter sweep and (with --follow) "
                                        "show its trials, best first, until it ends")
    sweep.add_argument("spec", help="JSON file: the POST /v1/sweeps body ({\"base\": job "
                                    "fields, \"space\": {path: choices}, \"strategy\", ...})")
    sweep.add_argument("--data", help="CSV with a header row, or NPZ with arrays X and y")
    sweep.add_argument("--dataset", help="an uploaded dataset's id, instead of --data")
    sweep.add_argument("--target", help="CSV label column(s), comma-separated (default: the last)")
    sweep.add_argument("--ignore", help="CSV columns to leave out, comma-separated")
    sweep.add_argument("--columns", metavar="JSON", help="column kinds that override the guessed "
                                                         "ones")
    sweep.add_argument("--follow", "-f", action="store_true",
                       help="show a live table of trials; print the best model id at the end")

    sweeps = command("sweeps", cmd_sweeps, "list sweeps, or one sweep's trials, best first")
    sweeps.add_argument("sweep_id", nargs="?")
    sweeps.add_argument("--json", action="store_true", help="the sweep's JSON, as the API "
                                                           "answers it")
    sweeps.add_argument("--limit", type=int, default=50)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop-client",
                                     description="talk to a running backprop-service")
    add_client_commands(parser, parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
