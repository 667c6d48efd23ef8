#!/usr/bin/env python
"""The framework's ceiling for bench/service.py: a bare FastAPI app that does no work.

    BENCH_BARE_PAYLOADS=/tmp/payloads python bench/bare_app.py --port 8001 --workers 1

`POST /bare/{name}` reads the request body (as a predict does), then answers the bytes of
`$BENCH_BARE_PAYLOADS/{name}.json` as application/json: a response of exactly the size the
real predict endpoint sends, without parsing, predicting or serializing anything. It runs
through service.cli.serve, so uvicorn's options and process count are the API's own.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parent.parent
# First, before bench/ (this script's folder), whose service.py would shadow the service package.
if str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))


def create_app() -> FastAPI:
    folder = Path(os.environ["BENCH_BARE_PAYLOADS"])
    payloads = {p.stem: p.read_bytes() for p in folder.glob("*.json")}
    app = FastAPI(title="bare")

    @app.post("/bare/{name}")
    async def bare(name: str, request: Request) -> Response:
        await request.body()
        return Response(payloads[name], media_type="application/json")

    @app.get("/readyz")
    async def ready() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


def main() -> int:
    from service.cli import serve

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    serve("bare_app:create_app", args.host, args.port, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
