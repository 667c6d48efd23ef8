"""core.logs: JSON lines, and the access log's direct writes in the same format."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_logging(script: str, tmp_path: Path) -> list[dict]:
    """Run `script` after setup_logging("api") in a fresh interpreter; its stderr's JSON lines."""
    err = tmp_path / "stderr.log"
    code = textwrap.dedent("""
        import logging, sys
        sys.path.insert(0, %r)
        from core.logs import AccessLog, setup_logging
        setup_logging("api")
        access = logging.getLogger("backprop.api.access")
    """ % str(ROOT)) + textwrap.dedent(script)
    with open(err, "wb") as stderr:
        subprocess.run([sys.executable, "-c", code], stderr=stderr, check=True, timeout=60)
    return [json.loads(line) for line in err.read_text().splitlines()]


FIELDS = {"route": "/v1/jobs/{job_id}", "status": 404, "duration_ms": 0.5, "tenant": "public",
          "job_id": "job_1"}


def test_access_lines_are_what_logging_writes(tmp_path):
    lines = run_logging(f"""
        fields = {FIELDS!r}
        access.info("GET /v1/jobs/{{job_id}} 404", extra=fields)   # through logging
        AccessLog(access).info("GET /v1/jobs/{{job_id}} 404", fields)  # written directly
    """, tmp_path)
    assert len(lines) == 2
    through_logging, direct = lines
    assert abs(through_logging.pop("ts") - direct.pop("ts")) < 5
    assert list(direct.items()) == list(through_logging.items())    # same keys, same order
    assert direct["logger"] == "backprop.api.access" and direct["process"] == "api"


def test_lines_interleave_whole_with_other_records(tmp_path):
    lines = run_logging("""
        log = AccessLog(access)
        other = logging.getLogger("backprop.api")
        for i in range(50):
            log.info(f"GET /x {i}", {"status": 200})
            other.warning("warn %d", i)
    """, tmp_path)
    assert [e["message"] for e in lines] == [m for i in range(50)
                                             for m in (f"GET /x {i}", f"warn {i}")]


def test_the_level_is_respected_and_logging_takes_over_without_our_handler(tmp_path):
    lines = run_logging("""
        access.setLevel(logging.WARNING)
        AccessLog(access).info("GET /quiet 200", {"status": 200})
        access.setLevel(logging.INFO)
        logging.getLogger("backprop").handlers[0].setStream(open("/dev/null", "w"))
        import io
        stream = io.StringIO()                     # no file descriptor: through logging
        logging.getLogger("backprop").handlers[0].setStream(stream)
        AccessLog(access).info("GET /fallback 200", {"status": 200})
        sys.stderr.write(stream.getvalue())
    """, tmp_path)
    assert [e["message"] for e in lines] == ["GET /fallback 200"]
