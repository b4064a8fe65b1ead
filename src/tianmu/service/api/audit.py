"""Every change a person or token makes through the service is an entry of the audit chain.

Identity audits its own changes (sign-ins, users, tokens, tenants, policies) inside `tianmu.identity`.
Everything else the service changes — triage, incidents, assets, jobs submitted and cancelled, uploads,
knowledge-base imports — is recorded here, with who (user name, and whether by session or token), from
where, what and the outcome. A route that changes state takes `AuditDep` and calls `record` once the
change is made; `tests/service/test_hostile_audit_trail.py` fails for any state-changing route that does
not, so a new route cannot quietly skip the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from tianmu.identity import IdentityService, Principal
from tianmu.service.api.deps import IdentityDep, PrincipalDep, client_address

__all__ = ["AuditDep", "Auditor", "auditor"]


@dataclass(frozen=True, slots=True)
class Auditor:
    """The audit chain, bound to one request's principal and client address."""

    identity: IdentityService
    principal: Principal
    client: str

    def record(self, action: str, target: str = "", *, outcome: str = "success", **details: Any) -> None:
        """Append `action` on `target` (its own transaction, right after the change it records)."""
        who = self.principal
        with self.identity.store.begin() as conn:
            self.identity.audit.append(
                conn,
                tenant=who.tenant,
                actor=who.username,
                action=action,
                target=target,
                outcome=outcome,
                details={**details, "via": who.via, "client": self.client},
            )


def auditor(request: Request, identity: IdentityDep, principal: PrincipalDep) -> Auditor:
    return Auditor(identity, principal, client_address(request))


AuditDep = Annotated[Auditor, Depends(auditor)]
