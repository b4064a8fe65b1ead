"""`tianmu tenant|user|audit|login|serve`: identity administration at the command line, certificate
login to a server, the audit chain check, and the web service.

Whoever runs these commands holds the data directory and acts as the owner of every tenant
(`CliSession.principal`); every change is audited with the actor "cli:<OS user>".
"""

from __future__ import annotations

import contextlib
import getpass
import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tianmu.cli.console import ExitCode, err_console, out_console, progress_reporter
from tianmu.cli.login import register_login_and_serve
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.gmcrypto.x509 import read_public_key
from tianmu.identity import IdentityService, Policy, Principal, Role

__all__ = ["register"]


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def _identity(session: CliSession) -> contextlib.AbstractContextManager[IdentityService]:
    return session.identity_service()


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise InputError(f"role must be one of {', '.join(r.value for r in Role)}, not {value!r}") from exc


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Again: "):
        raise InputError("the two passwords differ")
    return first


def _as_user(identity: IdentityService, tenant: str, username: str) -> Principal:
    user = identity.get_user(tenant, username)
    return Principal(user_id=user.id, tenant=tenant, username=username, role=user.role, via="cli")


def _register_tenant(app: typer.Typer) -> None:
    tenant = typer.Typer(
        help="Tenants: policies and the CA trusted for certificate login.", no_args_is_help=True
    )
    app.add_typer(tenant, name="tenant")

    @tenant.command("add")
    @cli_errors
    def add(
        ctx: typer.Context, tenant_id: str, name: Annotated[str, typer.Option(help="Display name.")] = ""
    ) -> None:
        """Create a tenant."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            created = identity.create_tenant(tenant_id, name, actor=session.actor)
        out_console.print(f"tenant {created.id} created")

    @tenant.command("list")
    @cli_errors
    def list_(ctx: typer.Context, json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List tenants."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            tenants = identity.list_tenants()
        if json:
            rows = [
                {"id": t.id, "name": t.name, "policy": t.policy.to_json(), "ca": bool(t.ca_certs_pem)}
                for t in tenants
            ]
            out_console.file.write(jsonlib.dumps(rows, indent=2) + "\n")
            return
        table = Table("Tenant", "Name", "Sign-in requires", "Certificate CA")
        for t in tenants:
            factors = " or ".join("+".join(alt) for alt in t.policy.required_factors)
            table.add_row(t.id, t.name, factors, "yes" if t.ca_certs_pem else "no")
        out_console.print(table)

    @tenant.command("policy")
    @cli_errors
    def policy(
        ctx: typer.Context,
        tenant_id: str,
        require: Annotated[
            list[str] | None,
            typer.Option(
                "--require",
                help="An alternative such as 'password+totp'; repeat for more (any one suffices).",
            ),
        ] = None,
        max_failures: Annotated[int | None, typer.Option(help="Failures before lockout (0: never).")] = None,
        lockout_minutes: Annotated[int | None, typer.Option()] = None,
        rate_limit: Annotated[int | None, typer.Option(help="Attempts per client per window.")] = None,
        session_minutes: Annotated[int | None, typer.Option()] = None,
        idle_minutes: Annotated[int | None, typer.Option()] = None,
        password_scheme: Annotated[str | None, typer.Option(help="argon2id or sm3-pbkdf2.")] = None,
    ) -> None:
        """Show a tenant's sign-in policy, or change parts of it."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            current = identity.get_tenant(tenant_id).policy.to_json()
            changes = {
                "required_factors": [alt.split("+") for alt in require] if require else None,
                "max_failures": max_failures,
                "lockout_minutes": lockout_minutes,
                "rate_limit_attempts": rate_limit,
                "session_minutes": session_minutes,
                "idle_minutes": idle_minutes,
                "password_scheme": password_scheme,
            }
            changes = {k: v for k, v in changes.items() if v is not None}
            if changes:
                try:
                    new = Policy.from_json({**current, **changes})
                except ValueError as exc:
                    raise InputError(str(exc)) from exc
                current = identity.set_policy(session.principal(tenant_id), tenant_id, new).policy.to_json()
        out_console.file.write(jsonlib.dumps(current, indent=2) + "\n")

    @tenant.command("ca-init")
    @cli_errors
    def ca_init(
        ctx: typer.Context,
        tenant_id: str,
        out: Annotated[Path | None, typer.Option(help="Also write the CA certificate.")] = None,
        days: int = 3650,
    ) -> None:
        """Create the tenant's own SM2 CA for certificate login (its key sealed in the database)."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            cert = identity.init_tenant_ca(session.principal(tenant_id), tenant_id, days=days)
        if out:
            out.write_bytes(cert.to_pem())
        out_console.print(f"CA {cert.subject} (SM3 fingerprint {cert.fingerprint()})")

    @tenant.command("ca-trust")
    @cli_errors
    def ca_trust(
        ctx: typer.Context,
        tenant_id: str,
        pem: Annotated[Path, typer.Argument(help="CA certificate(s), PEM.")],
    ) -> None:
        """Trust an external SM2 CA (e.g. the organisation's USB-key CA) for certificate login."""
        session = CliSession.of(ctx)
        try:
            data = pem.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", str(pem)) from exc
        with _identity(session) as identity:
            for cert in identity.trust_ca(session.principal(tenant_id), tenant_id, data):
                out_console.print(f"trusted {cert.subject} ({cert.fingerprint()})")


def _register_user(app: typer.Typer) -> None:
    user = typer.Typer(help="Users: roles, passwords, TOTP, certificates, tokens.", no_args_is_help=True)
    app.add_typer(user, name="user")

    @user.command("add")
    @cli_errors
    def add(
        ctx: typer.Context,
        tenant: str,
        username: str,
        role: Annotated[str, typer.Option(help="owner, admin, analyst or viewer")],
        display_name: str = "",
        no_password: Annotated[bool, typer.Option("--no-password")] = False,
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Create a user (asks for a password unless --no-password: passkey- or certificate-only users)."""
        session = CliSession.of(ctx)
        password = None if no_password else _new_password(password_stdin)
        with _identity(session) as identity:
            identity.create_user(
                session.principal(tenant),
                tenant,
                username,
                _role(role),
                password=password,
                display_name=display_name,
            )
        out_console.print(f"user {username} created in {tenant} as {role}")

    @user.command("list")
    @cli_errors
    def list_(ctx: typer.Context, tenant: str, json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List a tenant's users."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            users = identity.list_users(session.principal(tenant), tenant)
        if json:
            rows = [
                {
                    "username": u.username,
                    "role": u.role.value,
                    "password": u.has_password,
                    "totp": u.has_totp,
                    "disabled": u.disabled,
                    "locked_until": u.locked_until.isoformat() if u.locked_until else None,
                }
                for u in users
            ]
            out_console.file.write(jsonlib.dumps(rows, indent=2) + "\n")
            return
        table = Table("User", "Role", "Password", "TOTP", "State")
        for u in users:
            state = (
                "disabled"
                if u.disabled
                else f"locked until {u.locked_until:%H:%M}"
                if u.locked_until
                else "active"
            )
            table.add_row(
                u.username,
                u.role.value,
                "yes" if u.has_password else "no",
                "yes" if u.has_totp else "no",
                state,
            )
        out_console.print(table)

    @user.command("passwd")
    @cli_errors
    def passwd(ctx: typer.Context, tenant: str, username: str, password_stdin: PasswordStdin = False) -> None:
        """Set a user's password."""
        session = CliSession.of(ctx)
        password = _new_password(password_stdin)
        with _identity(session) as identity:
            identity.set_password(session.principal(tenant), tenant, username, password)

    @user.command("role")
    @cli_errors
    def role(ctx: typer.Context, tenant: str, username: str, new_role: str) -> None:
        """Change a user's role."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            identity.set_role(session.principal(tenant), tenant, username, _role(new_role))

    @user.command("disable")
    @cli_errors
    def disable(
        ctx: typer.Context,
        tenant: str,
        username: str,
        enable: Annotated[bool, typer.Option("--enable")] = False,
    ) -> None:
        """Disable a user (or enable again with --enable); their sessions and tokens stop working."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            identity.set_disabled(session.principal(tenant), tenant, username, not enable)

    @user.command("unlock")
    @cli_errors
    def unlock(ctx: typer.Context, tenant: str, username: str) -> None:
        """Lift a lockout after failed sign-ins."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            identity.unlock(session.principal(tenant), tenant, username)

    @user.command("delete")
    @cli_errors
    def delete(ctx: typer.Context, tenant: str, username: str) -> None:
        """Delete a user with their passkeys, tokens and sessions."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            identity.delete_user(session.principal(tenant), tenant, username)

    @user.command("totp")
    @cli_errors
    def totp(ctx: typer.Context, tenant: str, username: str) -> None:
        """Give a user a new TOTP seed; prints the otpauth URI for their authenticator app (once)."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            seed, uri = identity.enable_totp(session.principal(tenant), tenant, username)
        out_console.print(f"seed: {seed}\nuri:  {uri}")

    @user.command("cert")
    @cli_errors
    def cert(
        ctx: typer.Context,
        tenant: str,
        username: str,
        pub: Annotated[Path, typer.Option("--pub", help="The user's SM2 public key (PEM).")],
        out: Annotated[Path, typer.Option("--out", help="Certificate to write (PEM).")],
        days: int = 365,
    ) -> None:
        """Issue a login certificate from the tenant CA for the user's SM2 public key."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            issued = identity.issue_user_certificate(
                session.principal(tenant), tenant, username, read_public_key(pub), days=days
            )
        out.write_bytes(issued.to_pem())
        out_console.print(f"issued serial {issued.serial_number:x}, valid until {issued.not_after:%Y-%m-%d}")

    @user.command("passkeys")
    @cli_errors
    def passkeys_(
        ctx: typer.Context,
        tenant: str,
        username: str,
        remove: Annotated[str | None, typer.Option("--remove", help="Credential id to remove.")] = None,
    ) -> None:
        """List a user's passkeys, or remove one (a lost device)."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            admin = session.principal(tenant)
            if remove:
                identity.remove_passkey(admin, remove)
                out_console.print("passkey removed")
                return
            keys = identity.list_passkeys(admin, identity.get_user(tenant, username).id)
        table = Table("Credential", "Name", "Uses", "Added", "Last used")
        for k in keys:
            last = k["last_used_at"].strftime("%Y-%m-%d %H:%M") if k["last_used_at"] else "never"
            table.add_row(k["id"], k["name"], str(k["sign_count"]), f"{k['created_at']:%Y-%m-%d}", last)
        out_console.print(table)

    @user.command("revoke-cert")
    @cli_errors
    def revoke_cert(ctx: typer.Context, tenant: str, serial: str, reason: str = "") -> None:
        """Revoke a login certificate by its hex serial number."""
        session = CliSession.of(ctx)
        try:
            int(serial, 16)
        except ValueError as exc:
            raise InputError(f"serial must be hexadecimal, not {serial!r}") from exc
        with _identity(session) as identity:
            identity.revoke_certificate(session.principal(tenant), tenant, serial, reason)

    @user.command("token")
    @cli_errors
    def token(
        ctx: typer.Context,
        tenant: str,
        username: str,
        name: Annotated[str, typer.Option()],
        scope: Annotated[list[str] | None, typer.Option("--scope", help="Permission; repeat.")] = None,
        days: int | None = None,
    ) -> None:
        """Create an API token acting for the user; the token is printed once."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            text, record = identity.create_token(_as_user(identity, tenant, username), name, scope, days)
            # Identity records it as the user's own; who at this command line made it is said here.
            session.record(
                "token.issue", record.id, store=identity.store, tenant=tenant, user=username, name=name
            )
        out_console.print(text)
        err_console.print(
            f"token {record.id} expires {record.expires_at:%Y-%m-%d}; scopes: {', '.join(record.scopes)}"
        )


def _register_audit(app: typer.Typer) -> None:
    audit = typer.Typer(
        help="The audit log: an SM3 hash chain with SM2-signed checkpoints.", no_args_is_help=True
    )
    app.add_typer(audit, name="audit")

    @audit.command("verify")
    @cli_errors
    def verify(ctx: typer.Context, json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Check every entry and checkpoint; exit 1 if anything was edited, deleted or reordered."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            total = identity.audit.count()
            with progress_reporter("Verifying the audit chain", total=total) as advance:
                report = identity.audit.verify(
                    identity.platform_key().public_key, progress=lambda _n: advance("")
                )
        if json:
            out_console.file.write(
                jsonlib.dumps(
                    {
                        "ok": report.ok,
                        "entries": report.entries,
                        "checkpoints": report.checkpoints,
                        "tip": report.tip,
                        "signed_tip": report.signed_tip,
                        "problems": report.problems,
                    },
                    indent=2,
                )
                + "\n"
            )
        else:
            for problem in report.problems:
                err_console.print(f"[bold red]tampered:[/] {problem}", markup=True, highlight=False)
            state = "[green]intact[/]" if report.ok else "[bold red]NOT intact[/]"
            out_console.print(
                f"audit chain {state}: {report.entries} entries, {report.checkpoints} signed "
                f"checkpoints (last at {report.last_checkpoint}); tip {report.tip}",
                markup=True,
            )
        if not report.ok:
            raise typer.Exit(ExitCode.FINDINGS)

    @audit.command("checkpoint")
    @cli_errors
    def checkpoint(ctx: typer.Context) -> None:
        """Sign the current end of the chain with the platform's SM2 key."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            seq = identity.audit.checkpoint()
        out_console.print(f"checkpoint at entry {seq}" if seq else "the audit log is empty")

    @audit.command("list")
    @cli_errors
    def list_(
        ctx: typer.Context,
        tenant: Annotated[str | None, typer.Option()] = None,
        limit: int = 50,
        json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """The most recent audit entries, newest first."""
        session = CliSession.of(ctx)
        with _identity(session) as identity:
            entries = identity.audit.entries(tenant=tenant, limit=limit)
        if json:
            rows = [
                {
                    "seq": e.seq,
                    "at": e.at,
                    "tenant": e.tenant,
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "outcome": e.outcome,
                    "details": e.details,
                }
                for e in entries
            ]
            out_console.file.write(jsonlib.dumps(rows, indent=2) + "\n")
            return
        table = Table("#", "Time", "Tenant", "Actor", "Action", "Target", "Outcome")
        for e in entries:
            table.add_row(str(e.seq), e.at[:19], e.tenant, e.actor, e.action, e.target, e.outcome)
        out_console.print(table)


def register(app: typer.Typer) -> None:
    _register_tenant(app)
    _register_user(app)
    _register_audit(app)
    register_login_and_serve(app)
