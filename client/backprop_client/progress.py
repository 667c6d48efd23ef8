"""A job's progress as one line: redrawn in place on a terminal, logged sparingly elsewhere."""

from __future__ import annotations

import time


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """One line per job: rewritten in place on a terminal; on a pipe or log file, a line per
    new epoch at most every `every_s` seconds, and the last one always."""

    def __init__(self, stream, width: int = 24, every_s: float = 1.0):
        self.stream, self.width, self.every_s = stream, width, every_s
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_line, self.last_at, self.shown = "", 0.0, False

    @staticmethod
    def render(info: dict, width: int = 24) -> str:
        progress, metrics = info["progress"], info.get("metrics") or {}
        filled = int(round(width * progress["fraction"]))
        digits = len(str(progress["epochs"]))
        line = (f"{info['id']} {info['status']:<9} [{'#' * filled}{'.' * (width - filled)}] "
                f"epoch {progress['epoch']:>{digits}}/{progress['epochs']}")
        for name in ("loss", "val_loss"):
            if metrics.get(name) is not None:
                line += f"  {name} {metrics[name]:.4g}"
        return line + f"  ETA {duration(progress.get('eta_s'))}"

    def show(self, job) -> None:
        line, now = self.render(job.info, self.width), time.monotonic()
        if line == self.last_line:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
        elif job.done or now - self.last_at >= self.every_s:
            self.stream.write(line + "\n")
            self.last_at = now
        else:
            return
        self.stream.flush()
        self.last_line, self.shown = line, True

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
