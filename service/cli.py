"""The `backprop` command: `up` (the whole local stack), `api`, `worker`; the client commands
(train, jobs, status, history, predict, cancel) are the client distribution's own
(backprop_client.cli, also run as `backprop-client`), offered here too."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
import threading

from backprop_client.cli import add_client_commands

from core.settings import Settings, env_name, get_settings


def exposure_refused(host: str, settings: Settings) -> str | None:
    """Why the API must not serve `host` as configured, or None: an address other hosts can
    reach, without API keys, would let anyone read, change and delete every record."""
    if settings.tenant_keys or settings.allow_public_without_keys:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may well resolve to a public address
        loopback = False
    if loopback:
        return None
    return (f"refusing to serve on {host} without API keys: anyone who can reach it could read "
            f"and delete every record. Set BACKPROP_API_KEYS (tenant:key pairs), serve on "
            f"127.0.0.1 (--host), or set BACKPROP_ALLOW_PUBLIC_WITHOUT_KEYS=true to serve "
            f"without keys anyway")


def cmd_up(args: argparse.Namespace) -> int:
    from service.launcher import Stack

    settings = get_settings()
    refused = exposure_refused(args.host, settings)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    # A terminal shows what happens to jobs; a line per request is for a log collector, so
    # `backprop up` writes request lines only where BACKPROP_ACCESS_LOG asks for them.
    quiet = {} if "access_log" in settings.model_fields_set else {env_name("access_log"): "false"}
    stack = Stack(settings, args.host, args.port, args.workers, args.api_workers,
                  extra_env=quiet)
    # Ctrl-C from here on stops what has started: before, one arriving between the banner and
    # these handlers raised KeyboardInterrupt and left the children running (holding the
    # terminal's output open).
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stack.start()
    redis_where = (f"embedded Valkey at {stack.valkey.url} (data in {stack.valkey.data_dir})"
                   if stack.valkey else f"Redis at {settings.redis_url}")
    print(f"backprop-service is up\n  API:       {stack.url}\n  API docs:  {stack.url}/docs\n"
          f"  Redis:     {redis_where}\n  workers:   {args.workers}\nPress Ctrl-C to stop.",
          flush=True)
    while not stopping.wait(1.0):
        pass  # the stack starts a process that died again (API or worker)
    print("stopping: workers checkpoint running jobs, then the API and Redis stop", flush=True)
    stack.stop()
    return 0


def serve(app_factory: str, host: str, port: int, workers: int) -> None:
    """uvicorn with the API's server options (bench/bare_app.py runs through this too, so the
    framework's ceiling is measured on the same settings).

    With several worker processes, their request metrics go through files in
    PROMETHEUS_MULTIPROC_DIR (a fresh temporary folder unless set), so that /metrics, whichever
    process answers it, counts every process's requests."""
    import uvicorn

    with multiprocess_metrics(workers):
        # timeout_graceful_shutdown: open event streams (/v1/jobs/{id}/events) never end by
        # themselves, so on SIGTERM uvicorn cancels them after 5 s instead of waiting forever.
        # http: uvicorn's httptools protocol with a header timeout, a header size bound, a body
        # idle timeout and a connection cap (service/http_guard.py): a connection that dawdles
        # is closed.
        uvicorn.run(app_factory, factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                    http="service.http_guard:GuardedHttpToolsProtocol", timeout_keep_alive=5)


@contextlib.contextmanager
def multiprocess_metrics(workers: int):
    """A fresh PROMETHEUS_MULTIPROC_DIR for several worker processes, removed afterwards. One
    set by the user is used as it is (and emptied by them between runs, as prometheus_client
    asks: an earlier run's counts would be added in)."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    folder = tempfile.mkdtemp(prefix="backprop-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(folder, ignore_errors=True)


def cmd_api(args: argparse.Namespace) -> int:
    refused = exposure_refused(args.host, get_settings())
    if refused:
        print(refused, file=sys.stderr)
        return 2
    serve("service.app:create_app", args.host, args.port, args.workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # The API and the workers are peers over core/: the command hands this process over to the
    # worker's own entry point (`python -m worker`) rather than importing it.
    argv = (["--queues", args.queues] if args.queues else []) + (["--burst"] if args.burst else [])
    os.execv(sys.executable, [sys.executable, "-m", "worker", *argv])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop", description="backprop-service")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Redis (embedded unless BACKPROP_REDIS_URL is set), "
                                   "the API and workers; Ctrl-C stops them")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--workers", type=int, default=1, help="training worker processes")
    up.add_argument("--api-workers", type=int, default=1, help="API (uvicorn) processes")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="run the HTTP API (needs BACKPROP_REDIS_URL)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a training worker (needs BACKPROP_REDIS_URL)")
    worker.add_argument("--queues", help="comma-separated queues (default: BACKPROP_QUEUE)")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.set_defaults(func=cmd_worker)
    add_client_commands(parser, sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
