"""Finish in one place: every job's results end here — annotate, save, situation.

`tianmu assess`, `discover`, `web`, `domain`, `malware scan`, `detect`, `intel match` and the jobs the
workers run all end with `finish()`:

1. **annotate** — ATT&CK names and tactics into `finding.data["attack"]`, once, for every finding;
2. **save** — each assessment and its findings in one transaction (`store.repository.save_assessment`,
   the only caller of it), so the findings carry the stored first/last seen and triage status;
3. **situation** — the findings join the tenant's incidents, the tenant's risk and posture are
   recomputed, and the alert rules of `$TIANMU_HOME/alerts.toml` run.

The situation step comes after the save on purpose: incidents and risk are computed over the stored
findings, whose triage status (an acknowledged finding weighs less) is only known once they are merged.
A run that does not save (`tianmu inventory`, `--no-save`) still gets incidents and risk for its own
findings, computed without writing anything.

The save is what must not be lost: a failing annotation (the ATT&CK base) is recorded in each
assessment's errors and the findings are saved without it; a failing situation step (an alert rule, a
risk computation) comes after the commit, so the stored results stand and the failure is added to the
returned assessment's errors. Only the save itself may fail the job — then nothing was stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tianmu.core.models import Assessment
from tianmu.identity.audittip import exported_tip
from tianmu.road.isolation import describe
from tianmu.situation import update_situation
from tianmu.situation.alerts import AlertTransports
from tianmu.store.attack import annotate_findings
from tianmu.store.database import Store
from tianmu.store.repository import SaveHook, SaveResult, save_assessment

__all__ = ["FinishOptions", "finish"]


@dataclass(frozen=True, slots=True)
class FinishOptions:
    save: bool = True
    """False for read-only runs: nothing is written, the situation is computed for these findings alone."""
    home: Path | None = None
    """The data directory, where `alerts.toml` is looked for."""
    save_hook: SaveHook | None = None
    """Runs inside the transaction that stores the (last) assessment: a job marks itself done there."""
    situation: bool = True
    """False where the caller only wants the findings stored (a knowledge-base import has none)."""


def finish(
    store: Store, assessments: Sequence[Assessment], options: FinishOptions | None = None
) -> list[SaveResult | None]:
    """Annotate, save and put into the situation every assessment of one job, in order."""
    options = options or FinishOptions()
    try:
        annotate_findings(store, [f for a in assessments for f in a.findings])
    except Exception as exc:
        for assessment in assessments:
            assessment.errors.append(f"ATT&CK annotation failed: {describe(exc)}")
    saved: list[SaveResult | None] = []
    last = len(assessments) - 1
    for index, assessment in enumerate(assessments):
        hook = options.save_hook if index == last else None
        saved.append(save_assessment(store, assessment, also=hook) if options.save else None)
    # Alerts carry the audit chain's tip; the situation floor cannot read it from identity itself.
    world = AlertTransports(audit_tip=partial(exported_tip, options.home)) if options.home else None
    if options.situation:
        for assessment, result in zip(assessments, saved, strict=True):
            try:
                update_situation(
                    store,
                    assessment,
                    assessment_id=result.assessment_id if result is not None else None,
                    home=options.home,
                    alert_transports=world,
                )
            except Exception as exc:
                # After the commit: what was stored stands; the user is told what was not updated.
                assessment.errors.append(f"the situation step failed (results saved): {describe(exc)}")
    return saved
