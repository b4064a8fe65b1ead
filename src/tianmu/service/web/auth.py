"""Sign-in pages: password (then TOTP or a passkey as the policy asks), passkey enrolment, SM2 certificate
login, and the account page. Server-rendered; the passkey ceremonies run in web/static/auth/auth.js."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tianmu.identity import Principal
from tianmu.service.api.deps import (
    SESSION_COOKIE,
    CsrfChecked,
    IdentityDep,
    ServiceSettingsDep,
    cookie_name,
    csrf_token_for,
    optional_principal,
)

__all__ = ["router"]

router = APIRouter(prefix="/auth", include_in_schema=False)
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]


def _render(request: Request, name: str, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.auth_templates
    settings = request.app.state.service_settings
    return templates.TemplateResponse(
        request,
        name,
        {
            "csrf_token": csrf_token_for(request),
            "default_tenant": settings.core.tenant,
            "after_sign_in": request.app.state.after_sign_in,
            **context,
        },
    )


def _local_path(target: str | None) -> str | None:
    """`next` only ever leads within this site: a path, never a scheme or another host ("//evil")."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(
    request: Request, principal: MaybePrincipal, tenant: str | None = None, next: str | None = None
) -> Response:
    target = _local_path(next) or request.app.state.after_sign_in
    if principal is not None:
        return RedirectResponse(target, status_code=303)
    settings = request.app.state.service_settings
    return _render(request, "auth/sign_in.html", tenant=tenant or settings.core.tenant, next_path=target)


@router.get("/certificate", response_class=HTMLResponse)
def certificate_page(request: Request, tenant: str | None = None) -> HTMLResponse:
    settings = request.app.state.service_settings
    return _render(
        request, "auth/certificate.html", tenant=tenant or settings.core.tenant, origin=settings.origin
    )


@router.get("/passkeys", response_class=HTMLResponse)
def passkeys_page(request: Request, principal: MaybePrincipal, identity: IdentityDep) -> Response:
    if principal is None:
        return RedirectResponse("/auth/sign-in", status_code=303)
    return _render(
        request, "auth/passkeys.html", principal=principal, passkeys=identity.list_passkeys(principal)
    )


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, principal: MaybePrincipal, identity: IdentityDep) -> Response:
    if principal is None:
        return RedirectResponse("/auth/sign-in", status_code=303)
    user = identity.get_user_by_id(principal.user_id)
    return _render(
        request,
        "auth/account.html",
        principal=principal,
        passkeys=identity.list_passkeys(principal),
        has_totp=user.has_totp,
    )


@router.post("/sign-out", dependencies=[CsrfChecked])
def sign_out(request: Request, identity: IdentityDep, settings: ServiceSettingsDep) -> Response:
    secret = request.cookies.get(cookie_name(settings, SESSION_COOKIE))
    if secret:
        identity.end_session(secret)
    response = RedirectResponse("/auth/sign-in", status_code=303)
    response.delete_cookie(
        cookie_name(settings, SESSION_COOKIE), path="/", secure=settings.cookie_secure, httponly=True
    )
    return response
