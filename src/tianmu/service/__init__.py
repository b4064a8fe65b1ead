"""Tianmu's web service: the FastAPI application factory, its settings, the auth API and sign-in pages."""

from __future__ import annotations

from tianmu.service.app import create_app, include_routers
from tianmu.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app", "include_routers"]
