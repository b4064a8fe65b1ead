"""`assess`: the one function that chains the roles — inventory → engines → store.

The CLI, the API and the job runners call this; none of them holds assessment logic of its own.
Engines are listed in `ENGINES`; each takes the inventory and returns findings, so a capability added
later (malware, intel...) plugs in here without touching the callers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.assets.interface import InventoryResult
from tianmu.assets.inventory import scan_inventory
from tianmu.core.errors import InputError
from tianmu.core.models import Assessment, Asset, AssetKind, Finding, utcnow
from tianmu.knowledge import kb_status
from tianmu.situation import update_situation
from tianmu.store.database import Store
from tianmu.store.repository import SaveHook, save_assessment
from tianmu.vulns.engine import VulnMatcher, sort_findings

__all__ = ["ENGINES", "AssessOptions", "assess", "asset_for_path"]

ProgressCallback = Callable[[str], None]


@dataclass(slots=True)
class EngineContext:
    """What an engine gets. Engines run in `ENGINES` order; `earlier` holds the findings of those before.

    An engine that cannot run (its knowledge base was never imported) returns no findings and says why
    in `notes`, which the summary shows; it does not fail the assessment.
    """

    store: Store
    root: Path
    asset: Asset
    inventory: InventoryResult
    home: Path | None = None
    """The data directory (compiled rule caches, quarantine); None when the caller has none."""
    earlier: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Inputs an engine could not read, as `path:line: message` (merged into the assessment's errors)."""
    notes: list[str] = field(default_factory=list)
    progress: ProgressCallback | None = None


def _vulnerability_engine(ctx: EngineContext) -> list[Finding]:
    return VulnMatcher(ctx.store).match(ctx.inventory.components, ctx.asset)


def _malware_engine(ctx: EngineContext) -> list[Finding]:
    from tianmu.malware.engine import assess_malware

    return assess_malware(
        ctx.store,
        ctx.root,
        ctx.asset,
        home=ctx.home,
        errors=ctx.errors,
        notes=ctx.notes,
        progress=ctx.progress,
    )


def _intel_engine(ctx: EngineContext) -> list[Finding]:
    from tianmu.intel.assessment import assess_engine

    return assess_engine(ctx)


def _detection_engine(ctx: EngineContext) -> list[Finding]:
    from tianmu.detect.engine import assess_detection

    return assess_detection(
        ctx.store,
        ctx.root,
        ctx.asset,
        home=ctx.home,
        errors=ctx.errors,
        notes=ctx.notes,
        progress=ctx.progress,
    )


def annotate_techniques(store: Store, findings: list[Finding]) -> None:
    """ATT&CK names and tactics into `data["attack"]` of findings with technique ids (ATT&CK imported)."""
    from tianmu.intel.attack import annotate_findings

    annotate_findings(store, findings)


ENGINES: dict[str, Callable[[EngineContext], list[Finding]]] = {
    "vulnerability": _vulnerability_engine,
    "malware": _malware_engine,
    "intel": _intel_engine,
    "detection": _detection_engine,
}


@dataclass(frozen=True, slots=True)
class AssessOptions:
    tenant: str = "default"
    engines: tuple[str, ...] = field(default_factory=lambda: tuple(ENGINES))
    save: bool = True
    """False for read-only runs (`tianmu inventory`/`vulns` as pure queries)."""
    home: Path | None = None
    """The data directory (`Settings.home`), for engines that keep files there."""
    save_hook: SaveHook | None = None
    """Runs inside the transaction that stores the assessment (see `save_assessment`)."""


def asset_for_path(path: Path, tenant: str) -> Asset:
    resolved = path.resolve()
    kind = AssetKind.REPOSITORY if (resolved / ".git").exists() else AssetKind.DIRECTORY
    return Asset(name=str(resolved), kind=kind, tenant=tenant)


def assess(
    store: Store,
    path: Path,
    options: AssessOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> Assessment:
    """Inventory `path`, run the engines, store the results, and return what was found.

    Raises InputError when the path does not exist. Unreadable or malformed files inside it are not
    errors of the assessment: they are listed in `Assessment.errors` and the rest is assessed.
    """
    options = options or AssessOptions()
    if not path.exists():
        raise InputError("no such file or directory", str(path))
    started = utcnow()
    asset = asset_for_path(path, options.tenant)
    inventory = scan_inventory(path, progress=progress)
    ctx = EngineContext(
        store=store, root=path, asset=asset, inventory=inventory, home=options.home, progress=progress
    )
    findings: list[Finding] = []
    for name in options.engines:
        ctx.earlier = list(findings)
        findings.extend(ENGINES[name](ctx))
    annotate_techniques(store, findings)
    result = Assessment(
        target=str(path),
        asset=asset,
        started=started,
        components=inventory.components,
        unresolved=inventory.unresolved,
        findings=sort_findings(findings),
        errors=[str(error) for error in inventory.errors] + ctx.errors,
        notes=ctx.notes,
        files_read=inventory.files_read,
        knowledge_bases=[status.as_dict() for status in kb_status(store)],
        engines=list(options.engines),
    )
    result.finished = utcnow()
    saved = save_assessment(store, result, also=options.save_hook) if options.save else None
    # Situation after the engines and the store, so incidents and risk see the stored triage state.
    update_situation(store, result, assessment_id=saved.assessment_id if saved else None, home=options.home)
    return result
