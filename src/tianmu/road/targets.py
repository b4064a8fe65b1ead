"""What a path target is as an asset: a repository checkout (it has `.git`) or a directory."""

from __future__ import annotations

from pathlib import Path

from tianmu.core.models import Asset, AssetKind

__all__ = ["asset_for_path"]


def asset_for_path(path: Path, tenant: str) -> Asset:
    resolved = path.resolve()
    kind = AssetKind.REPOSITORY if (resolved / ".git").exists() else AssetKind.DIRECTORY
    return Asset(name=str(resolved), kind=kind, tenant=tenant)
