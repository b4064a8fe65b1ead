"""One invocation of `tianmu`: the environment it started with, its settings, and how it opens the store.

The root callback (`tianmu.cli.main`) puts a `CliSession` on the Click context once per invocation, and
every command takes it from there (`CliSession.of(ctx)`): the settings are read once, at the edge, and
passed down, never read again deep in a command nor kept in a module. They are parsed on first use, so
`tianmu version` and `--help` work whatever the environment holds; a bad value (ConfigError) is then
reported by `cli_errors` as one line with exit code 2, like any other TianmuError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import typer

from tianmu.core.config import Settings
from tianmu.store.database import Store, open_store

__all__ = ["CliSession"]


def _environment() -> dict[str, str]:
    return dict(os.environ)


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

    def store(self) -> Store:
        """Open (and migrate) the store of these settings; the caller closes it (`with`)."""
        return open_store(self.settings)
