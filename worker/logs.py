"""Structured logs: one JSON object a line, with job_id, epoch and tenant when known."""

from __future__ import annotations

import logging
import sys
import time

import orjson

CONTEXT_FIELDS = ("job_id", "epoch", "tenant", "model_id", "route", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str):
        super().__init__()
        self.process_name = process

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(time.time(), 3), "level": record.levelname,
                 "process": self.process_name, "logger": record.name,
                 "message": record.getMessage()}
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # orjson: the access log writes a line per request, and json.dumps was most of its cost.
        return orjson.dumps(entry, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def setup_logging(process: str, level: int = logging.INFO) -> None:
    """Our loggers ("backprop.*") write JSON lines to stderr; idempotent."""
    logger = logging.getLogger("backprop")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class ContextLogger(logging.LoggerAdapter):
    """A logger carrying fixed context (job_id, tenant) merged with each call's `extra`."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return msg, kwargs
