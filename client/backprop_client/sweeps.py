"""A sweep as the client sees it: refresh, wait (with a live table of trials), cancel."""

from __future__ import annotations

import sys
import time
from typing import Any

SWEEP_ENDED = frozenset({"succeeded", "canceled"})
COLUMNS = ["#", "JOB", "STATUS", "EPOCHS", "METRIC", "WORKER", "PARAMS"]


def number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def params_text(params: dict) -> str:
    return " ".join(f"{path.rsplit('.', 1)[-1] if len(path) > 24 else path}="
                    f"{number(v) if isinstance(v, float) else v}" for path, v in params.items())


def trial_rows(info: dict) -> list[list[str]]:
    """The leaderboard, best first: one row per trial (the best one marked with *)."""
    best = (info.get("best") or {}).get("job_id")
    return [[str(t["index"]) + ("*" if best and t["job_id"] == best else ""),
             t["job_id"] or "-", t["status"], str(t["epochs"]), number(t["metric"]),
             t["worker"] or "-", params_text(t["params"])[:80]] for t in info["trials"]]


def render(info: dict) -> str:
    """The sweep's head line and its trials as an aligned table."""
    p = info["progress"]
    head = (f"sweep {info['id']} {info['status']} ({info['strategy']}, {info['metric']} "
            f"{info['mode']}) trials {p['trials_ended']}/{p['trials']} ended, "
            f"{p['running']} running, {p['paused']} paused; epochs {p['epochs_trained']} "
            f"of {p['epochs_if_all_trained']} if all trained")
    rows = [COLUMNS] + trial_rows(info)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([head, *lines])


class Sweep:
    """A sweep as last seen; refresh() asks again, wait() follows it to its end."""

    def __init__(self, client, info: dict):
        self.client, self.info = client, info

    def __repr__(self) -> str:
        return f"Sweep({self.id!r}, status={self.status!r})"

    id = property(lambda self: self.info["id"])
    status = property(lambda self: self.info["status"])
    done = property(lambda self: self.info["status"] in SWEEP_ENDED)
    trials = property(lambda self: self.info["trials"])
    best = property(lambda self: self.info.get("best"))

    def refresh(self) -> Sweep:
        self.info = self.client.get(f"/v1/sweeps/{self.id}")
        return self

    def wait(self, progress: bool = True, timeout: float | None = None,
             every_s: float = 1.0, stream=None) -> Sweep:
        """Poll until the sweep ends; with `progress`, redraw its leaderboard on `stream`
        (stderr) at most every `every_s` seconds. TimeoutError after `timeout` seconds."""
        stream = stream or sys.stderr
        tty = hasattr(stream, "isatty") and stream.isatty()
        deadline = None if timeout is None else time.monotonic() + timeout
        drawn, last = 0, ""
        while True:
            self.refresh()
            if progress:
                text = render(self.info)
                if text != last:
                    if tty and drawn:
                        stream.write(f"\x1b[{drawn}F\x1b[J")  # back over the last table
                    stream.write(text + "\n")
                    stream.flush()
                    drawn, last = text.count("\n") + 1, text
            if self.done:
                return self
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {self.id} is still {self.status} after {timeout} s")
            time.sleep(every_s)

    def cancel(self) -> Sweep:
        self.info = self.client.request("POST", f"/v1/sweeps/{self.id}/cancel").json()
        return self

    def delete(self, keep_models: bool = False) -> None:
        self.client.request("DELETE", f"/v1/sweeps/{self.id}",
                            params={"keep_models": str(keep_models).lower()})
