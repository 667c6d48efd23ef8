"""`backprop-client train|jobs|status|history|predict` (and the same commands under the server's
`backprop`) run as real subprocesses against real stacks."""

from __future__ import annotations

import csv
import json
import os
import re
import struct
import subprocess
import sys

import httpx
import pytest

from backprop_client import Client, Unauthorized
from core.settings import Settings
from service.embedded_redis import free_port
from service.launcher import Stack
from tests.client.helpers import ROOT, backprop, client_cli
from tests.service.helpers import blobs, classifier

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("cli")
    X, y = blobs(n=120, classes=3, features=4, seed=5)
    data = folder / "data.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["f1", "f2", "f3", "f4", "label"])
        writer.writerows([[f"{v:.6f}" for v in x] + [int(t)] for x, t in zip(X, y)])
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"network": classifier(hidden=12),
                                "training": {"epochs": 50, "optimizer": "sgd", "batch_size": 16}}))
    return {"folder": folder, "data": str(data), "spec": str(spec), "y": y}


@pytest.fixture(scope="module")
def followed(stack, files) -> dict:
    """`backprop train spec.json --data data.csv --target label ... --follow`, run once."""
    done = backprop("train", files["spec"], "--data", files["data"], "--target", "label",
                    "--epochs", "8", "--lr", "0.05", "--optimizer", "adam",
                    "--validation-split", "0.2", "--follow", url=stack.url)
    assert done.returncode == 0, done.stderr
    job_id = re.search(r"training job (job_\S+):", done.stderr).group(1)
    return {"run": done, "job_id": job_id, "model_id": done.stdout.strip()}


def test_train_follow_shows_progress_and_ends_with_the_model_id(followed, stack):
    run = followed["run"]
    assert re.fullmatch(r"mdl_[\w-]+", followed["model_id"]), run.stdout
    progress = [line for line in run.stderr.splitlines() if line.startswith(followed["job_id"])]
    assert progress, run.stderr
    assert "epoch 8/8" in progress[-1] and "succeeded" in progress[-1]
    assert "loss " in progress[-1] and "val_loss " in progress[-1] and "ETA" in progress[-1]
    status = client_cli("status", followed["job_id"], "--json", url=stack.url)
    training = json.loads(status.stdout)["training"]
    # spec.json said 50 epochs of sgd; the inline options win
    assert training["epochs"] == 8 and training["optimizer"] == "adam"
    assert training["learning_rate"] == 0.05
    assert training["batch_size"] == 16 and training["validation_split"] == 0.2


def test_jobs_lists_the_job_in_a_table(followed, stack):
    done = backprop("jobs", url=stack.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["JOB", "STATUS", "EPOCH", "LOSS", "VAL_LOSS", "MODEL", "CREATED"]
    row = next(line for line in lines if line.startswith(followed["job_id"]))
    assert row.split()[1:3] == ["succeeded", "8/8"] and followed["model_id"] in row
    running = backprop("jobs", "--status", "running", url=stack.url)
    assert running.returncode == 0 and followed["job_id"] not in running.stdout


def test_status_shows_progress_and_model(followed, stack):
    done = client_cli("status", followed["job_id"], url=stack.url)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "epoch 8/8" in done.stdout
    assert f"model:    {followed['model_id']}" in done.stdout


def test_history_prints_the_epochs_and_plots_a_png(followed, stack, files):
    png = files["folder"] / "plots" / "loss.png"
    done = client_cli("history", followed["job_id"], "--plot", str(png), url=stack.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["EPOCH", "LOSS", "VAL_LOSS", "ACCURACY", "SECONDS"]
    assert [int(line.split()[0]) for line in lines[1:]] == list(range(1, 9))
    content = png.read_bytes()
    assert content[:8] == PNG_SIGNATURE and len(content) > 1024
    width, height = struct.unpack(">II", content[16:24])  # the IHDR chunk
    assert (width, height) == (640, 400)


def test_predict_of_a_csv_file_by_a_model_without_preparation_says_what_to_do(stack, files):
    """A model trained with preprocessing "none" takes arrays, not CSV files: the command
    passes on the service's 415, which says what to send instead."""
    import numpy as np
    from tests.service.helpers import npz_bytes, wait_for_job

    X, y = np.eye(3, dtype=np.float32), np.arange(3)
    dataset = httpx.post(f"{stack.url}/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=y))})
    job = httpx.post(f"{stack.url}/v1/jobs", json={
        "dataset_id": dataset.json()["id"], "preprocessing": "none", "training": {"epochs": 1},
        "network": {"layers": [{"units": 3, "activation": "softmax"}], "loss": "cross_entropy"}})
    with httpx.Client(base_url=stack.url) as api:
        model_id = wait_for_job(api, job.json()["id"])["model_id"]
    out = files["folder"] / "never.csv"
    done = client_cli("predict", model_id, files["data"], "-o", str(out), url=stack.url)
    assert done.returncode == 1 and done.stdout == ""
    assert "CSV is read for models trained with preprocessing" in done.stderr, done.stderr
    assert "send JSON" in done.stderr and not out.exists()


def test_predict_of_a_missing_file_says_so(followed, stack):
    missing = client_cli("predict", followed["model_id"], "nowhere.csv", url=stack.url)
    assert missing.returncode == 2 and "no data file nowhere.csv" in missing.stderr


def test_train_without_follow_prints_the_job_id(stack, files):
    spec = files["folder"] / "network.json"
    spec.write_text(json.dumps(classifier(hidden=4)))
    training = files["folder"] / "training.json"
    training.write_text(json.dumps({"epochs": 2, "learning_rate": 0.1}))
    done = client_cli("train", str(spec), "--data", files["data"], "--training", str(training),
                      url=stack.url)
    assert done.returncode == 0, done.stderr
    job = Client(stack.url).job(done.stdout.strip())
    assert f"follow it with `backprop-client status {job.id}`" in done.stderr
    assert job.info["training"]["epochs"] == 2 and job.info["training"]["learning_rate"] == 0.1
    assert job.wait(progress=False, timeout=60).status == "succeeded"


def test_train_exits_non_zero_with_the_apis_message(stack, files):
    spec = files["folder"] / "bad.json"
    spec.write_text(json.dumps({"layers": [{"units": 4, "activation": "swish"},
                                           {"units": 3, "activation": "softmax"}],
                                "loss": "cross_entropy"}))
    done = client_cli("train", str(spec), "--data", files["data"], "--follow", url=stack.url)
    assert done.returncode == 1 and done.stdout == ""
    assert "error: network.layers[0].activation: unknown activation 'swish'" in done.stderr
    assert "(HTTP 422)" in done.stderr


def test_failed_job_exits_non_zero_with_its_epoch_and_message(stack, files):
    spec = files["folder"] / "diverges.json"
    spec.write_text(json.dumps({"network": {"layers": [{"units": 8, "activation": "relu"},
                                                       {"units": 1, "activation": "identity"}],
                                            "loss": "squared_error"},
                                "training": {"optimizer": "sgd", "learning_rate": 1e4}}))
    data = files["folder"] / "big.csv"
    data.write_text("a,b,y\n" + "".join(f"{i * 100},{i * 50},{i * 1e5}\n" for i in range(32)))
    done = client_cli("train", str(spec), "--data", str(data), "--follow", url=stack.url)
    assert done.returncode == 1 and done.stdout == ""
    assert re.search(r"error: job job_\S+ failed at epoch \d+: the training loss became",
                     done.stderr), done.stderr


def test_errors_name_what_to_change(stack, files):
    missing = client_cli("history", "job_nope", url=stack.url)
    assert missing.returncode == 1 and "no job with id 'job_nope'" in missing.stderr
    no_data = client_cli("train", files["spec"], "--data", "nowhere.csv", url=stack.url)
    assert no_data.returncode == 2 and "no data file nowhere.csv" in no_data.stderr
    down = client_cli("jobs", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot reach the API" in down.stderr


def test_train_checks_its_table_options_before_uploading(stack, files, tmp_path):
    npz = tmp_path / "data.npz"
    npz.write_bytes(b"PK")  # never read: the options are refused first
    done = client_cli("train", files["spec"], "--data", str(npz), "--ignore", "f1", url=stack.url)
    assert done.returncode == 2
    assert "--target, --ignore and --columns name CSV columns" in done.stderr
    done = client_cli("train", files["spec"], "--data", files["data"], "--columns", "year",
                      url=stack.url)
    assert done.returncode == 2 and "--columns must be a JSON object" in done.stderr


def test_backprop_offers_the_client_commands_and_backprop_client_only_those():
    server = subprocess.run([sys.executable, "-m", "service.cli", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    client = subprocess.run([sys.executable, "-m", "backprop_client.cli", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    commands = re.compile(r"\{([a-z,]+)\}")
    assert commands.search(server.stdout).group(1).split(",") == [
        "up", "api", "worker", "train", "jobs", "status", "history", "predict", "model",
        "evaluate", "cancel", "sweep", "sweeps"]
    assert commands.search(client.stdout).group(1).split(",") == [
        "train", "jobs", "status", "history", "predict", "model", "evaluate", "cancel", "sweep",
        "sweeps"]


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory):
    """A second deployment whose API wants keys: its own Valkey, API and one worker."""
    settings = Settings(redis_url=None, data_dir=tmp_path_factory.mktemp("keyed"))
    running = Stack(settings, "127.0.0.1", free_port(), workers=1,
                    log_dir=tmp_path_factory.mktemp("keyed-logs"),
                    extra_env={"BACKPROP_API_KEYS": "alice:key-a"}).start()
    yield running
    running.stop()


def test_client_and_cli_send_the_api_key_as_bearer(keyed_stack, files):
    url = keyed_stack.url
    with Client(url, api_key="") as anonymous, pytest.raises(Unauthorized) as no_key:
        anonymous.jobs()
    assert no_key.value.status == 401 and "Authorization: Bearer" in no_key.value.message
    with Client(url, api_key="key-a") as alice:
        assert alice.upload(*blobs(n=20))["n_samples"] == 20

    trained = client_cli("train", files["spec"], "--data", files["data"], "--epochs", "2",
                       "--follow", url=url, BACKPROP_API_KEY="key-a")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.startswith("mdl_")
    listed = backprop("--api-key", "key-a", "jobs", url=url)
    assert listed.returncode == 0 and "succeeded" in listed.stdout
    wrong = client_cli("jobs", "--api-key", "key-b", url=url)
    assert wrong.returncode == 1 and "the API key is not valid" in wrong.stderr
    assert wrong.stderr.rstrip().endswith("(HTTP 401)")
    keyless = backprop("jobs", url=url)
    assert keyless.returncode == 1 and "Authorization: Bearer" in keyless.stderr


def test_train_on_an_uploaded_dataset_applies_ignore_and_refuses_upload_options(stack, files):
    with Client(stack.url) as client:
        dataset = client.upload_csv(files["data"], target="label")
    done = client_cli("train", files["spec"], "--dataset", dataset["id"], "--ignore", "f1,f3",
                      "--epochs", "2", "--follow", url=stack.url)
    assert done.returncode == 0, done.stderr
    with Client(stack.url) as client:
        columns = client.model(done.stdout.strip()).input_columns
    assert [c["name"] for c in columns] == ["f2", "f4"]
    refused = client_cli("train", files["spec"], "--dataset", dataset["id"], "--target", "f2",
                         url=stack.url)
    assert refused.returncode == 2 and "--target and --columns shape a CSV upload" in refused.stderr


def test_a_reader_that_leaves_early_gets_no_traceback(followed, stack):
    """`backprop history JOB | head`: the pipe's reader is gone before the command writes."""
    read, write = os.pipe()
    environ = {**os.environ, "BACKPROP_URL": stack.url}
    process = subprocess.Popen([sys.executable, "-m", "backprop_client.cli", "history",
                                followed["job_id"]], cwd=ROOT, env=environ, stdout=write,
                               stderr=subprocess.PIPE, text=True)
    os.close(write)
    os.close(read)  # the reader leaves before the command has started
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
