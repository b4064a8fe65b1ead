"""One invocation of `tianmu`: the environment it started with, its settings, how it opens the store,
and who is acting — for the audit chain.

The root callback (`tianmu.cli.main`) puts a `CliSession` on the Click context once per invocation, and
every command takes it from there (`CliSession.of(ctx)`): the settings are read once, at the edge, and
passed down, never read again deep in a command nor kept in a module. They are parsed on first use, so
`tianmu version` and `--help` work whatever the environment holds; a bad value (ConfigError) is then
reported by `cli_errors` as one line with exit code 2, like any other TianmuError.

Every command that changes state — triage, incidents, knowledge-base imports, quarantine, jobs, saved
results — ends with `CliSession.record`, one audit entry by the actor ``cli:<OS user>``, as a route of
the service does through its `Auditor`; `tests/cli/test_cli_audit_trail.py` walks every command and fails
for a state-changing one that does not record.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import typer

from tianmu.core.config import Settings
from tianmu.gmcrypto import master_key
from tianmu.identity import IdentityService, Principal, RelyingParty, cli_principal
from tianmu.store.database import Store, open_store

__all__ = ["CliSession", "os_user"]


def _environment() -> dict[str, str]:
    return dict(os.environ)


def os_user() -> str:
    """The name of the effective OS user (not `$USER`, which anyone sets); `uid:N` without a name."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container user with no passwd entry
        return f"uid:{uid}"


@dataclass(slots=True)
class CliSession:
    """What the commands of one invocation share (owned by its Click context)."""

    environ: Mapping[str, str] = field(default_factory=_environment)
    """The environment as the invocation found it (a copy: later changes do not leak in)."""
    _settings: Settings | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, ctx: typer.Context) -> CliSession:
        """The session of the invocation `ctx` belongs to (made here if the root callback did not run,
        as when an area's commands are registered on another app)."""
        return ctx.ensure_object(cls)

    @property
    def settings(self) -> Settings:
        """`Settings.from_env` of this invocation's environment, read once."""
        if self._settings is None:
            self._settings = Settings.from_env(self.environ)
        return self._settings

    @property
    def tenant(self) -> str:
        return self.settings.tenant

    @property
    def actor(self) -> str:
        """Who acts at this command line, as the audit chain names them: ``cli:<OS user>``."""
        return f"cli:{os_user()}"

    def principal(self, tenant: str | None = None) -> Principal:
        """The local administrator of `tenant` (default: this session's), named by `actor`."""
        return cli_principal(tenant or self.tenant, os_user())

    def store(self) -> Store:
        """Open (and migrate) the store of these settings; the caller closes it (`with`)."""
        return open_store(self.settings)

    def identity(self, store: Store) -> IdentityService:
        """The identity service over `store` (its audit chain, keys and tip file in the data directory)."""
        origin = self.environ.get("TIANMU_ORIGIN", "http://localhost:8000").rstrip("/")
        rp_id = self.environ.get("TIANMU_RP_ID") or urlsplit(origin).hostname or "localhost"
        home = self.settings.home
        rp = RelyingParty(id=rp_id, origin=origin)
        # The key-encryption key of this invocation's environment (TIANMU_MASTER_KEY) or data directory.
        return IdentityService(store, home=home, kek=master_key(home, self.environ), rp=rp)

    @contextmanager
    def identity_service(self) -> Iterator[IdentityService]:
        """`identity` over a store opened for the purpose and closed afterwards."""
        with self.store() as store:
            yield self.identity(store)

    def record(
        self,
        action: str,
        target: str = "",
        *,
        store: Store | None = None,
        tenant: str | None = None,
        outcome: str = "success",
        **details: Any,
    ) -> None:
        """Append `action` on `target` to the audit chain, by `actor`, once the change is made.

        `store`: the command's own open store (one is opened for the entry otherwise, as for a
        quarantine that needs none)."""
        if store is None:
            with self.store() as opened:
                self.record(action, target, store=opened, tenant=tenant, outcome=outcome, **details)
            return
        identity = self.identity(store)
        with store.begin() as conn:
            identity.audit.append(
                conn,
                tenant=tenant or self.tenant,
                actor=self.actor,
                action=action,
                target=target,
                outcome=outcome,
                details={**details, "via": "cli"},
            )

    def record_run(
        self, store: Store, action: str, targets: Iterable[object], *, saved: bool = True, **details: Any
    ) -> None:
        """A run whose results were stored (`saved`) changed the situation: one entry naming its targets.
        A run that stored nothing (`--no-save`) is not recorded."""
        if saved:
            self.record(action, ", ".join(str(t) for t in targets), store=store, **details)
