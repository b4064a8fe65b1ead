"""Dependencies of every route: who is asking (`current_principal`), may they (`require`), and is this
browser request really from our own pages (CSRF).

`require(permission)` is how every API route and dashboard page goes through the one permission check,
`tianmu.identity.authorize`. Bearer tokens (API clients) carry no ambient authority, so CSRF checks apply
only to cookie-authenticated requests.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from itsdangerous import BadSignature, URLSafeSerializer

from tianmu.identity import (
    AuthenticationError,
    IdentityService,
    Permission,
    PermissionDenied,
    Principal,
    authorize,
)
from tianmu.service.settings import ServiceSettings

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "PENDING_COOKIE",
    "SESSION_COOKIE",
    "CsrfChecked",
    "IdentityDep",
    "PrincipalDep",
    "ServiceSettingsDep",
    "client_address",
    "cookie_name",
    "csrf_protect",
    "csrf_token_for",
    "current_principal",
    "get_identity",
    "get_service_settings",
    "optional_principal",
    "require",
    "verify_csrf",
]

SESSION_COOKIE = "tianmu_session"
PENDING_COOKIE = "tianmu_pending"
CSRF_COOKIE = "tianmu_csrf"
CSRF_HEADER = "x-csrf-token"


def get_identity(request: Request) -> IdentityService:
    identity: IdentityService = request.app.state.identity
    return identity


def get_service_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.service_settings
    return settings


IdentityDep = Annotated[IdentityService, Depends(get_identity)]
ServiceSettingsDep = Annotated[ServiceSettings, Depends(get_service_settings)]


def cookie_name(settings: ServiceSettings, name: str) -> str:
    # "__Host-" cookies are Secure, host-only and path "/" by browser rule: nobody can plant one from a
    # sibling sub-domain.
    return f"__Host-{name}" if settings.cookie_secure else name


def client_address(request: Request) -> str:
    """The client's address; X-Forwarded-For is believed only from a configured proxy."""
    peer = request.client.host if request.client else "unknown"
    settings = get_service_settings(request)
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and peer in settings.trusted_proxies:
        candidate = forwarded.split(",")[0].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return peer
    return peer


def _principal(request: Request, identity: IdentityService) -> Principal | None:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    header = request.headers.get("authorization", "")
    try:
        if header.lower().startswith("bearer "):
            principal = identity.token_principal(header[7:].strip())
        else:
            secret = request.cookies.get(cookie_name(get_service_settings(request), SESSION_COOKIE))
            if not secret:
                return None
            principal = identity.session_principal(secret)
    except AuthenticationError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), {"WWW-Authenticate": "Bearer"}) from exc
    request.state.principal = principal
    return principal


def optional_principal(request: Request, identity: IdentityDep) -> Principal | None:
    """The signed-in principal, or None (sign-in pages use this to redirect people already signed in)."""
    try:
        return _principal(request, identity)
    except HTTPException:
        return None


def current_principal(request: Request, identity: IdentityDep) -> Principal:
    principal = _principal(request, identity)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "please sign in", {"WWW-Authenticate": "Bearer"})
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency giving the principal when it holds `permission` in its tenant; 401/403 otherwise."""

    def dependency(principal: PrincipalDep) -> Principal:
        try:
            authorize(principal, permission)
        except PermissionDenied as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        return principal

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


# --- CSRF: signed double-submit, bound to the session, with the request's origin as a second line ------
#
# The cookie holds a signed random nonce. The token our pages echo (header or form field) is signed too
# and carries the same nonce *and* a digest of the session cookie the page was rendered for: a token
# minted for another session (an attacker's own, or one from before sign-in) or a planted cookie
# without its matching token does not pass. Browsers also say where a request comes from (`Origin`,
# `Sec-Fetch-Site`); a state-changing request from another site or origin is refused even with a token.


def _cookie_serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(get_service_settings(request).secret_key, salt="tianmu-csrf")


def _token_serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(get_service_settings(request).secret_key, salt="tianmu-csrf-token")


def _session_binding(request: Request, session_secret: str | None = None) -> str:
    """A digest of the session cookie this request carries ("" before sign-in): what tokens are bound to."""
    secret = session_secret or request.cookies.get(cookie_name(get_service_settings(request), SESSION_COOKIE))
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:32] if secret else ""


def _cookie_nonce(request: Request) -> str | None:
    cookie = request.cookies.get(cookie_name(get_service_settings(request), CSRF_COOKIE))
    if not cookie:
        return None
    try:
        nonce = _cookie_serializer(request).loads(cookie)
    except BadSignature:
        return None
    return nonce if isinstance(nonce, str) else None


def csrf_token_for(request: Request, *, session_secret: str | None = None) -> str:
    """The token to put in this page's forms, bound to its session (the cookie is set by the middleware);
    `session_secret` binds it to a session being created by this response instead."""
    nonce = _cookie_nonce(request)
    if nonce is None:
        fresh = getattr(request.state, "new_csrf", None)
        if fresh is None:
            fresh = _cookie_serializer(request).dumps(secrets.token_urlsafe(24))
            request.state.new_csrf = fresh
        nonce = _cookie_serializer(request).loads(fresh)
    return str(_token_serializer(request).dumps([nonce, _session_binding(request, session_secret)]))


def _check_origin(request: Request) -> None:
    """403 for a browser request that says it comes from another site or origin."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != get_service_settings(request).origin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"request from another origin refused ({origin})")


def verify_csrf(request: Request, token: str | None) -> None:
    """403 unless the request comes from our origin and `token` is ours, for this cookie and session."""
    _check_origin(request)
    nonce = _cookie_nonce(request)
    if nonce is None or not token:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token; reload the page")
    try:
        token_nonce, binding = _token_serializer(request).loads(token)
    except (BadSignature, TypeError, ValueError) as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid CSRF token; reload the page") from exc
    if not hmac.compare_digest(str(token_nonce), nonce):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token; reload the page")
    if not hmac.compare_digest(str(binding), _session_binding(request)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the CSRF token belongs to another session; reload the page"
        )


async def csrf_protect(request: Request) -> None:
    """For state-changing routes: skip for bearer-token clients, otherwise demand the header or form field."""
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        token = value if isinstance(value, str) else None
    verify_csrf(request, token)


CsrfChecked = Depends(csrf_protect)
