"""Nothing a client sends is unpickled or evaluated: RQ jobs are JSON holding the job id, and no
code of ours loads pickles or calls eval/exec."""

from __future__ import annotations

import ast
import json
import zlib
from pathlib import Path
from tests.service.helpers import classifier, idle_gpu_worker

ROOT = Path(__file__).resolve().parents[2]
NETWORK = classifier(hidden=4, classes=3)
INLINE = {"X": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], "y": [0, 1, 2]}


def job(**changes) -> dict:
    return {"network": NETWORK, "data": INLINE, **changes}


def test_rq_jobs_in_redis_are_plain_json_holding_only_the_job_id(api, redis_client, valkey):
    """A GPU job stays queued (its worker takes no job): read RQ's own hash."""
    with idle_gpu_worker(valkey.url):
        answer = api.post("/v1/jobs", json=job(device="gpu"))
    assert answer.status_code == 202, answer.text
    submitted = answer.json()
    try:
        rq_keys = [k for k in redis_client.scan_iter(match="rq:job:*")
                   if submitted["id"] in k.decode()]
        assert rq_keys, "the queued job has no RQ hash"
        data = redis_client.hget(rq_keys[0], "data")
        func, instance, args, kwargs = json.loads(zlib.decompress(data))  # JSON, not pickle
        assert (func, instance, args, kwargs) == ("worker.jobs.train", None,
                                                  [submitted["id"]], {})
    finally:
        assert api.post(f"/v1/jobs/{submitted['id']}/cancel").status_code == 202
        assert api.delete(f"/v1/jobs/{submitted['id']}").status_code == 204


UNPICKLERS = {("pickle", "loads"), ("pickle", "load"), ("pickle", "Unpickler"),
              ("marshal", "loads"), ("dill", "loads"), ("cloudpickle", "loads"),
              ("builtins", "eval"), ("builtins", "exec")}


def test_no_code_of_ours_unpickles_or_evaluates():
    """AST scan: no pickle/marshal loads, no eval/exec, every np.load passes allow_pickle=False."""
    offenders = []
    for package in ("engine", "worker", "service"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    if any(n.split(".")[0] in ("pickle", "dill", "cloudpickle", "marshal",
                                               "shelve") for n in names):
                        offenders.append(f"{where}: imports {names}")
                if not isinstance(node, ast.Call):
                    continue
                name = _call_name(node.func)
                if name in ("eval", "exec") or tuple(name.rsplit(".", 1)) in UNPICKLERS:
                    offenders.append(f"{where}: calls {name}")
                if name.endswith("load") and name.split(".")[0] in ("np", "numpy", "xp", "cp"):
                    allow = {k.arg: k.value for k in node.keywords}.get("allow_pickle")
                    if not (isinstance(allow, ast.Constant) and allow.value is False):
                        offenders.append(f"{where}: {name} without allow_pickle=False")
    assert offenders == []


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{_call_name(func.value)}.{func.attr}"
    return ""
