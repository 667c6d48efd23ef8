"""Real components for every test session: a Valkey server on a free port, RQ worker processes
and the API over HTTP. Nothing is faked.

`./dev test` runs the suite in parallel processes (pytest-xdist, --dist loadgroup): a session
is one process, so each has its own Valkey, stack and temporary folders, and the tests of a
module that share a module-scoped fixture (its own stack, say) run in one process, which makes
that fixture once."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import redis

from core.settings import Settings
from service.embedded_redis import EmbeddedValkey, free_port
from service.launcher import Stack

# Short leases and frequent checkpoints make fault tests quick; production defaults are longer.
TEST_ENV = {
    "BACKPROP_LEASE_S": "4",
    "BACKPROP_HEARTBEAT_S": "0.5",
    "BACKPROP_CHECKPOINT_EVERY_S": "0.5",
    "BACKPROP_MAX_RESTARTS": "3",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests that use a module-scoped fixture go to one xdist process together (an xdist_group
    per module); the others are handed out one by one."""
    # tryfirst: xdist's worker names each test's group from its marks in this same hook.
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is not None and any(
                defs and defs[-1].scope == "module"
                for defs in fixtures.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def valkey(tmp_path_factory) -> EmbeddedValkey:
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_client(valkey) -> redis.Redis:
    return redis.Redis.from_url(valkey.url)


@pytest.fixture(scope="session")
def service_env(valkey) -> dict[str, str]:
    env = {**TEST_ENV, "BACKPROP_REDIS_URL": valkey.url}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from core.settings import get_settings
    get_settings.cache_clear()
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def stack(service_env, tmp_path_factory) -> Stack:
    """The API on a free port and two workers, as `backprop up` runs them."""
    settings = Settings()
    logs = Path(tmp_path_factory.mktemp("logs"))
    # Generous, as tests/service/helpers.py START_DEADLINE_S: parallel processes share cores.
    running = Stack(settings, "127.0.0.1", free_port(), workers=2, log_dir=logs
                    ).start(ready_timeout_s=120)
    running.logs = logs
    yield running
    running.stop()


@pytest.fixture()
def api(stack) -> httpx.Client:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


@pytest.fixture()
def store(settings):
    """A Store of each test's own (key prefix and queues from the module's `settings` fixture),
    emptied after the test (tests/core and tests/worker)."""
    from tests.service.helpers import clear, private_store

    store = private_store(settings)
    yield store
    clear(store, settings)
