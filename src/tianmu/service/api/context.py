"""Dependencies that hand routes the application's shared resources (made once by `create_app`).

Nothing here is a module-level global: the store, settings and job runner live on `app.state`, so two
applications (two tests, two tenants' deployments in one process) never share them by accident.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tianmu.core.config import Settings
from tianmu.jobs.runner import Runner
from tianmu.store.database import Store

__all__ = ["RunnerDep", "SettingsDep", "StoreDep", "get_runner", "get_settings", "get_store"]


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RunnerDep = Annotated[Runner, Depends(get_runner)]
