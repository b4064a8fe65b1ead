"""/api/auth: sign-in factors, sessions, passkey enrolment, API tokens and the tenant's audit trail.

Handlers translate HTTP to `IdentityService` calls and back; the rules live in `tianmu.identity`.
Each sign-in step answers `{done, factors, remaining}`; an unfinished sign-in travels in an HttpOnly
"pending" cookie, a finished one becomes the session cookie.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from tianmu.identity import LoginStep, Permission, Policy, Principal, Role, User
from tianmu.service.api.deps import (
    PENDING_COOKIE,
    SESSION_COOKIE,
    CsrfChecked,
    IdentityDep,
    PrincipalDep,
    ServiceSettingsDep,
    client_address,
    cookie_name,
    csrf_token_for,
    require,
)
from tianmu.service.settings import ServiceSettings

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["auth"])


class PasswordLogin(BaseModel):
    tenant: str | None = None
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class TotpLogin(BaseModel):
    code: str = Field(min_length=6, max_length=10)


class TenantOnly(BaseModel):
    tenant: str | None = None


class PasskeyLogin(BaseModel):
    tenant: str | None = None
    handle: str
    credential: dict[str, Any]


class CertificateLogin(BaseModel):
    tenant: str | None = None
    handle: str
    certificate: str = Field(description="PEM: the login certificate, then any intermediate CA certificates")
    signature: str = Field(description="base64 DER SM2 signature over the challenge message")


class LoginResult(BaseModel):
    done: bool
    factors: list[str]
    remaining: list[str]
    redirect: str | None = None
    csrf_token: str | None = None
    """When done: the CSRF token for the new session (tokens are bound to their session, so the one
    used to sign in no longer serves)."""


class PasskeyEnrol(BaseModel):
    handle: str
    credential: dict[str, Any]
    name: str = Field(default="passkey", max_length=128)


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] | None = None
    days: int | None = Field(default=None, ge=1)


class TokenPublic(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class TokenCreated(TokenPublic):
    token: str = Field(description="Shown once; Tianmu keeps only its SM3 digest")


class Me(BaseModel):
    username: str
    tenant: str
    role: str
    via: str
    factors: list[str]
    csrf_token: str


def _tenant(settings: ServiceSettings, tenant: str | None) -> str:
    return tenant or settings.core.tenant


def _finish(request: Request, response: Response, settings: ServiceSettings, step: LoginStep) -> LoginResult:
    secure = settings.cookie_secure
    if step.done:
        assert step.session_secret is not None
        response.set_cookie(
            cookie_name(settings, SESSION_COOKIE),
            step.session_secret,
            httponly=True,
            secure=secure,
            samesite="lax",
            path="/",
        )
        response.delete_cookie(cookie_name(settings, PENDING_COOKIE), path="/", secure=secure, httponly=True)
        return LoginResult(
            done=True,
            factors=list(step.factors),
            remaining=[],
            redirect=request.app.state.after_sign_in,
            csrf_token=csrf_token_for(request, session_secret=step.session_secret),
        )
    assert step.pending is not None
    response.set_cookie(
        cookie_name(settings, PENDING_COOKIE),
        step.pending,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
        max_age=600,
    )
    return LoginResult(done=False, factors=list(step.factors), remaining=list(step.remaining))


def _pending(request: Request, settings: ServiceSettings) -> str | None:
    return request.cookies.get(cookie_name(settings, PENDING_COOKIE))


@router.get("/csrf", summary="A CSRF token (and its cookie) for clients that are not our pages")
def csrf(request: Request) -> dict[str, str]:
    return {"csrf_token": csrf_token_for(request)}


@router.post("/login/password", response_model=LoginResult, dependencies=[CsrfChecked])
def login_password(
    body: PasswordLogin,
    request: Request,
    response: Response,
    identity: IdentityDep,
    settings: ServiceSettingsDep,
) -> LoginResult:
    step = identity.password_login(
        _tenant(settings, body.tenant),
        body.username,
        body.password,
        client=client_address(request),
        pending=_pending(request, settings),
    )
    return _finish(request, response, settings, step)


@router.post("/login/totp", response_model=LoginResult, dependencies=[CsrfChecked])
def login_totp(
    body: TotpLogin, request: Request, response: Response, identity: IdentityDep, settings: ServiceSettingsDep
) -> LoginResult:
    pending = _pending(request, settings)
    if not pending:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "start with your password, passkey or certificate")
    step = identity.totp_login(pending, body.code, client=client_address(request))
    return _finish(request, response, settings, step)


@router.post("/login/passkey/options", dependencies=[CsrfChecked])
def login_passkey_options(
    body: TenantOnly, request: Request, identity: IdentityDep, settings: ServiceSettingsDep
) -> dict[str, Any]:
    handle, options = identity.passkey_login_options(
        _tenant(settings, body.tenant), pending=_pending(request, settings)
    )
    return {"handle": handle, "options": json.loads(options)}


@router.post("/login/passkey/verify", response_model=LoginResult, dependencies=[CsrfChecked])
def login_passkey_verify(
    body: PasskeyLogin,
    request: Request,
    response: Response,
    identity: IdentityDep,
    settings: ServiceSettingsDep,
) -> LoginResult:
    step = identity.passkey_login_verify(
        _tenant(settings, body.tenant),
        body.handle,
        body.credential,
        client=client_address(request),
        pending=_pending(request, settings),
    )
    return _finish(request, response, settings, step)


@router.post("/login/certificate/challenge", dependencies=[CsrfChecked])
def login_certificate_challenge(
    body: TenantOnly, identity: IdentityDep, settings: ServiceSettingsDep
) -> dict[str, str]:
    tenant = _tenant(settings, body.tenant)
    handle, challenge, message = identity.cert_login_challenge(tenant)
    return {
        "handle": handle,
        "challenge": challenge,
        "tenant": tenant,
        "audience": identity.rp.origin,
        "message": message.decode("utf-8"),
    }


@router.post("/login/certificate/verify", response_model=LoginResult, dependencies=[CsrfChecked])
def login_certificate_verify(
    body: CertificateLogin,
    request: Request,
    response: Response,
    identity: IdentityDep,
    settings: ServiceSettingsDep,
) -> LoginResult:
    step = identity.cert_login_verify(
        _tenant(settings, body.tenant),
        body.handle,
        body.certificate.encode("utf-8"),
        body.signature,
        client=client_address(request),
        pending=_pending(request, settings),
    )
    return _finish(request, response, settings, step)


@router.post("/logout", status_code=204, dependencies=[CsrfChecked])
def logout(request: Request, response: Response, identity: IdentityDep, settings: ServiceSettingsDep) -> None:
    secret = request.cookies.get(cookie_name(settings, SESSION_COOKIE))
    if secret:
        identity.end_session(secret)
    response.delete_cookie(
        cookie_name(settings, SESSION_COOKIE), path="/", secure=settings.cookie_secure, httponly=True
    )


@router.get("/me", response_model=Me)
def me(request: Request, principal: PrincipalDep) -> Me:
    return Me(
        username=principal.username,
        tenant=principal.tenant,
        role=principal.role.value,
        via=principal.via,
        factors=list(principal.factors),
        csrf_token=csrf_token_for(request),
    )


Self = Annotated[Principal, Depends(require(Permission.SELF_MANAGE))]


@router.post("/passkeys/options", dependencies=[CsrfChecked])
def passkey_options(principal: Self, identity: IdentityDep) -> dict[str, Any]:
    handle, options = identity.passkey_register_options(principal)
    return {"handle": handle, "options": json.loads(options)}


@router.post("/passkeys", status_code=201, dependencies=[CsrfChecked])
def passkey_enrol(body: PasskeyEnrol, principal: Self, identity: IdentityDep) -> dict[str, str]:
    return {"id": identity.passkey_register_verify(principal, body.handle, body.credential, body.name)}


@router.get("/passkeys")
def passkey_list(principal: Self, identity: IdentityDep) -> list[dict[str, Any]]:
    return identity.list_passkeys(principal)


@router.delete("/passkeys/{credential_id}", status_code=204, dependencies=[CsrfChecked])
def passkey_remove(credential_id: str, principal: Self, identity: IdentityDep) -> None:
    identity.remove_passkey(principal, credential_id)


class TotpConfirm(BaseModel):
    handle: str
    code: str = Field(min_length=6, max_length=10)


class PasswordChange(BaseModel):
    current: str = Field(default="", max_length=1024)
    new: str = Field(min_length=1, max_length=1024)


@router.post("/totp/start", dependencies=[CsrfChecked])
def totp_start(principal: Self, identity: IdentityDep) -> dict[str, str]:
    """A new authenticator-app seed for the signed-in user; active once confirmed with a code."""
    handle, seed, uri = identity.totp_enrol_start(principal)
    return {"handle": handle, "seed": seed, "uri": uri}


@router.post("/totp/confirm", status_code=204, dependencies=[CsrfChecked])
def totp_confirm(body: TotpConfirm, principal: Self, identity: IdentityDep) -> None:
    identity.totp_enrol_confirm(principal, body.handle, body.code)


@router.post("/password", status_code=204, dependencies=[CsrfChecked])
def password_change(body: PasswordChange, request: Request, principal: Self, identity: IdentityDep) -> None:
    identity.change_own_password(principal, body.current, body.new, client=client_address(request))


TokenManager = Annotated[Principal, Depends(require(Permission.TOKENS_MANAGE))]


@router.get("/tokens", response_model=list[TokenPublic])
def token_list(principal: TokenManager, identity: IdentityDep) -> list[TokenPublic]:
    return [
        TokenPublic(
            id=t.id,
            name=t.name,
            scopes=list(t.scopes),
            created_at=t.created_at,
            expires_at=t.expires_at,
            last_used_at=t.last_used_at,
            revoked_at=t.revoked_at,
        )
        for t in identity.list_tokens(principal)
    ]


@router.post("/tokens", response_model=TokenCreated, status_code=201, dependencies=[CsrfChecked])
def token_create(body: TokenCreate, principal: TokenManager, identity: IdentityDep) -> TokenCreated:
    token, t = identity.create_token(principal, body.name, body.scopes, body.days)
    return TokenCreated(
        id=t.id,
        name=t.name,
        scopes=list(t.scopes),
        created_at=t.created_at,
        expires_at=t.expires_at,
        token=token,
    )


@router.delete("/tokens/{token_id}", status_code=204, dependencies=[CsrfChecked])
def token_revoke(token_id: str, principal: TokenManager, identity: IdentityDep) -> None:
    identity.revoke_token(principal, token_id)


@router.get("/audit")
def audit(
    principal: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
    identity: IdentityDep,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The tenant's most recent audit entries (newest first)."""
    return [
        {
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "outcome": e.outcome,
            "details": e.details,
            "hash": e.hash,
        }
        for e in identity.audit.entries(tenant=principal.tenant, limit=min(max(limit, 1), 1000))
    ]


# --- tenant administration: users and the sign-in policy -------------------------------------------------


class UserPublic(BaseModel):
    username: str
    display_name: str
    role: str
    has_password: bool
    has_totp: bool
    disabled: bool
    locked_until: dt.datetime | None = None


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    role: str
    password: str | None = Field(default=None, max_length=1024)
    display_name: str = Field(default="", max_length=256)


class UserUpdate(BaseModel):
    role: str | None = None
    disabled: bool | None = None


UserReader = Annotated[Principal, Depends(require(Permission.USERS_READ))]
UserManager = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
PolicyManager = Annotated[Principal, Depends(require(Permission.POLICY_MANAGE))]


def _user_public(user: User) -> UserPublic:
    return UserPublic(
        username=user.username,
        display_name=user.display_name,
        role=user.role.value,
        has_password=user.has_password,
        has_totp=user.has_totp,
        disabled=user.disabled,
        locked_until=user.locked_until,
    )


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown role {value!r}") from exc


@router.get("/users", response_model=list[UserPublic])
def users_list(principal: UserReader, identity: IdentityDep) -> list[UserPublic]:
    return [_user_public(u) for u in identity.list_users(principal, principal.tenant)]


@router.post("/users", response_model=UserPublic, status_code=201, dependencies=[CsrfChecked])
def users_create(body: UserCreate, principal: UserManager, identity: IdentityDep) -> UserPublic:
    user = identity.create_user(
        principal,
        principal.tenant,
        body.username,
        _role(body.role),
        password=body.password,
        display_name=body.display_name,
    )
    return _user_public(user)


@router.patch("/users/{username}", response_model=UserPublic, dependencies=[CsrfChecked])
def users_update(
    username: str, body: UserUpdate, principal: UserManager, identity: IdentityDep
) -> UserPublic:
    if body.role is not None:
        identity.set_role(principal, principal.tenant, username, _role(body.role))
    if body.disabled is not None:
        identity.set_disabled(principal, principal.tenant, username, body.disabled)
    return _user_public(identity.get_user(principal.tenant, username))


@router.post("/users/{username}/unlock", response_model=UserPublic, dependencies=[CsrfChecked])
def users_unlock(username: str, principal: UserManager, identity: IdentityDep) -> UserPublic:
    return _user_public(identity.unlock(principal, principal.tenant, username))


@router.get("/policy")
def policy_get(principal: PolicyManager, identity: IdentityDep) -> dict[str, Any]:
    return identity.get_tenant(principal.tenant).policy.to_json()


@router.put("/policy", dependencies=[CsrfChecked])
def policy_put(body: dict[str, Any], principal: PolicyManager, identity: IdentityDep) -> dict[str, Any]:
    """Replace the tenant's sign-in policy (keys left out keep their defaults)."""
    try:
        policy = Policy.from_json(body)
    except (ValueError, TypeError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return identity.set_policy(principal, principal.tenant, policy).policy.to_json()
