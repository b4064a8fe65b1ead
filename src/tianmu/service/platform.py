"""The whole Tianmu service: the identity app of `create_app` plus the REST API (/api/v1), the situation
dashboard, its static files, and a job runner. This is what `tianmu serve` runs.

The job runner is the in-process one by default (one machine, SQLite or PostgreSQL); with
`TIANMU_RUNNER=celery` the API hands jobs to `tianmu worker` processes through the broker instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from tianmu.core.errors import ConfigError
from tianmu.identity import Permission
from tianmu.intel.taxii_server import taxii_router
from tianmu.jobs.runner import InProcessRunner, Runner
from tianmu.service.api.deps import require
from tianmu.service.api.routes import assets, findings, jobs, kb, overview, situation, tenants
from tianmu.service.app import create_app
from tianmu.service.settings import ServiceSettings
from tianmu.service.web import dashboard
from tianmu.store.database import Store

__all__ = ["api_router", "create_platform_app"]

_STATIC = Path(__file__).parent / "web" / "static"
_DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def api_router() -> APIRouter:
    """Every /api/v1 resource router."""
    router = APIRouter(prefix="/api/v1")
    for sub in (
        overview.router,
        findings.router,
        assets.router,
        assets.components_router,
        jobs.router,
        jobs.uploads_router,
        kb.router,
        situation.incidents_router,
        situation.services_router,
        situation.trace_router,
        tenants.router,
    ):
        router.include_router(sub)
    return router


def create_platform_app(
    settings: ServiceSettings | None = None,
    *,
    store: Store | None = None,
    runner: Runner | None = None,
    runner_kind: str | None = None,
) -> FastAPI:
    """The service application. `runner` overrides the choice of TIANMU_RUNNER (local | celery)."""
    settings = settings or ServiceSettings.from_env()
    # TAXII 2.1 (read-only) over the intelligence base, for any signed-in user or API token: other tools
    # (and other Tianmu installations) subscribe to it with their token as a Bearer credential.
    taxii = taxii_router(dependencies=[Depends(require(Permission.SITUATION_READ))])
    app = create_app(settings, store=store, routers=[api_router(), dashboard.router, taxii])
    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")
    kind = runner_kind or os.environ.get("TIANMU_RUNNER", "local")
    owned: InProcessRunner | None = None
    if runner is None:
        if kind == "celery":
            # Celery: heavy, optional (only with TIANMU_RUNNER=celery; the default runner is in-process).
            from tianmu.jobs.celery_app import CeleryRunner, create_celery

            runner = CeleryRunner(create_celery(settings.core))
        elif kind == "local":
            owned = InProcessRunner(
                app.state.store, settings.core, workers=max(1, (os.cpu_count() or 2) // 2)
            )
            runner = owned
        else:
            raise ConfigError(f"TIANMU_RUNNER must be local or celery, not {kind!r}")
    app.state.runner = runner

    inner_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        if owned is not None:
            owned.start()
        try:
            async with inner_lifespan(application):
                yield
        finally:
            if owned is not None:
                owned.shutdown(wait=False)

    app.router.lifespan_context = lifespan

    @app.middleware("http")
    async def dashboard_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        if not request.url.path.startswith(("/api", "/auth", "/static")):
            response.headers.setdefault("Content-Security-Policy", _DASHBOARD_CSP)
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
