"""The application factory: `create_app(settings)` builds one FastAPI app with its own store, identity
service and templates (no module-level state), the auth API and sign-in pages, error mapping, CSRF cookie
and security headers. Other areas' routers (the dashboard, the REST resources) are passed in or added by
`include_routers`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tianmu import __version__
from tianmu.gmcrypto.errors import CryptoError
from tianmu.identity import (
    AuthenticationError,
    Conflict,
    IdentityError,
    IdentityService,
    NotFound,
    PermissionDenied,
    RateLimited,
    RelyingParty,
)
from tianmu.service.api.deps import CSRF_COOKIE, cookie_name
from tianmu.service.api.routes import auth as auth_api
from tianmu.service.settings import ServiceSettings
from tianmu.service.web import auth as auth_pages
from tianmu.store.database import Store, open_store

__all__ = ["create_app"]

_WEB = Path(__file__).parent / "web"
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def _error(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status_code, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def rate_limited(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        return _error(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), {"Retry-After": str(exc.retry_after)})

    mapping: list[tuple[type[Exception], int]] = [
        (AuthenticationError, status.HTTP_401_UNAUTHORIZED),
        (PermissionDenied, status.HTTP_403_FORBIDDEN),
        (NotFound, status.HTTP_404_NOT_FOUND),
        (Conflict, status.HTTP_409_CONFLICT),
        (IdentityError, status.HTTP_400_BAD_REQUEST),
        (CryptoError, status.HTTP_400_BAD_REQUEST),
    ]
    app.add_exception_handler(RateLimited, rate_limited)
    for exc_type, code in mapping:

        def handler(_request: Request, exc: Exception, code: int = code) -> Response:
            return _error(code, str(exc))

        app.add_exception_handler(exc_type, handler)

    async def http_errors(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        # A person opening a page without a session is sent to sign in, not shown a JSON 401.
        wants_html = "text/html" in request.headers.get("accept", "")
        if (
            exc.status_code == 401
            and request.method == "GET"
            and wants_html
            and not request.url.path.startswith("/api")
        ):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/auth/sign-in?next={quote(target)}", status_code=303)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, http_errors)


def _install_middleware(app: FastAPI, settings: ServiceSettings) -> None:
    @app.middleware("http")
    async def headers_and_csrf_cookie(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        fresh = getattr(request.state, "new_csrf", None)
        if fresh:
            response.set_cookie(
                cookie_name(settings, CSRF_COOKIE),
                fresh,
                httponly=True,
                secure=settings.cookie_secure,
                samesite="strict",
                path="/",
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if settings.cookie_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.url.path.startswith("/auth"):
            response.headers.setdefault("Content-Security-Policy", _PAGE_CSP)
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def include_routers(app: FastAPI, routers: Sequence[APIRouter], *, api_prefix: str = "") -> None:
    """Add routers after creation (the dashboard and REST resources); keeps the post-sign-in target right."""
    for router in routers:
        app.include_router(router, prefix=api_prefix)
    # Ask the router itself (included routers are not flat route lists in every FastAPI version).
    scope = {
        "type": "http",
        "path": "/",
        "method": "GET",
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    has_root = any(route.matches(dict(scope))[0] == Match.FULL for route in app.router.routes)
    app.state.after_sign_in = "/" if has_root else "/auth/account"


def create_app(
    settings: ServiceSettings | None = None,
    *,
    store: Store | None = None,
    identity: IdentityService | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """One Tianmu web application. Refuses unsafe settings (ConfigError) outside development."""
    settings = settings or ServiceSettings.from_env()
    settings.validate()
    owns_store = store is None
    store = store or open_store(settings.core)
    identity = identity or IdentityService(
        store,
        home=settings.core.home,
        rp=RelyingParty(id=settings.relying_party_id, name=settings.rp_name, origin=settings.origin),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_store:
            store.close()

    app = FastAPI(
        title="Tianmu",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs" if settings.is_development else None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings.core
    app.state.service_settings = settings
    app.state.store = store
    app.state.identity = identity
    app.state.auth_templates = Jinja2Templates(directory=str(_WEB / "templates"))
    app.mount("/static/auth", StaticFiles(directory=str(_WEB / "static" / "auth")), name="auth-static")
    app.include_router(auth_api.router, prefix="/api")
    app.include_router(auth_pages.router)
    _install_error_handlers(app)
    _install_middleware(app, settings)
    include_routers(app, routers)
    return app
