"""The serving layout of issue 23: route modules are faces that never import one another (they
share service/serving, service/job_views and the like), and the app's state is one typed object
whose model-deletion listener stops when the app does."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from core.settings import Settings, env_name, settings_env
from service.app import create_app
from service.state import ServiceState, state_of

ROUTES = Path(__file__).resolve().parents[2] / "service" / "routes"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, as written (`from service.routes import jobs` gives
    service.routes.jobs, `from . import x` gives .x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
            found.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return found


def test_no_route_module_imports_another():
    modules = sorted(p for p in ROUTES.glob("*.py") if p.name != "__init__.py")
    assert len(modules) >= 8, modules
    route_names = {p.stem for p in modules}
    offenders = {}
    for path in modules:
        bad = sorted(m for m in imported_modules(path)
                     if m.startswith(("service.routes.", ".")) and
                     m.rsplit(".", 1)[-1] in route_names | {"routes"})
        if bad:
            offenders[path.name] = bad
    assert offenders == {}, f"route modules import route modules: {offenders}"


def test_the_import_check_sees_a_route_import(tmp_path):
    """The check above would notice one: both spellings of such an import are found."""
    source = tmp_path / "v2.py"
    source.write_text("from service.routes.models import loaded_model\n"
                      "from service.routes import health\nimport json\n")
    assert {"service.routes.models", "service.routes.health"} <= imported_modules(source)


def test_environment_names_come_from_the_settings_fields():
    assert env_name("max_body_bytes") == "BACKPROP_MAX_BODY_BYTES"
    assert env_name("redis_url") == "BACKPROP_REDIS_URL"
    with pytest.raises(KeyError, match="not a Settings field"):
        env_name("max_bodybytes")
    settings = Settings(redis_url="redis://h:1/0", access_log=False, max_predict_rows=7)
    env = settings_env(settings, "redis_url", "access_log", "max_predict_rows")
    assert env == {"BACKPROP_REDIS_URL": "redis://h:1/0", "BACKPROP_ACCESS_LOG": "false",
                   "BACKPROP_MAX_PREDICT_ROWS": "7"}


def test_the_app_state_is_one_typed_object_and_the_listener_stops_at_shutdown(service_env):
    app = create_app(Settings())
    state = state_of(app)
    assert isinstance(state, ServiceState)
    assert state.serving.models is state.models
    listener = state.models.listener
    assert listener is not None

    async def serve_then_stop():
        async with app.router.lifespan_context(app):
            assert listener.is_alive()

    asyncio.run(serve_then_stop())
    assert not listener.is_alive(), "the model-deletion listener outlived the app"
