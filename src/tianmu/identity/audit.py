"""The audit log: an append-only SM3 hash chain over every authentication and change, with checkpoints
signed by the platform's SM2 key.

Entry n stores ``hash_n = SM3(hash_{n-1} ‖ canonical JSON [seq, at, tenant, actor, action, target, outcome,
details])`` with hash_0 = 64 zeros. Editing an entry breaks its hash; deleting or reordering entries breaks
the sequence and the next entry's link; rewriting the whole tail to hide an edit no longer matches the hash
a signed checkpoint vouches for; cutting entries off the end leaves a checkpoint past the last entry. Only a
cut after the last checkpoint with the checkpoints cut too is invisible from inside the database, which is
why the tip is also kept outside it: a signed tip file in the data directory (`tianmu.identity.audittip`),
rewritten with every append, against which `verify` reports a missing, shorter or rewritten end of the log.
Checkpoints are written every `checkpoint_every` entries and, on a quiet log, at the first append after
`checkpoint_interval` has passed since the last one, so little of the chain rests on the tip file alone.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, text

from tianmu.core.clock import Clock, SystemClock
from tianmu.gmcrypto import sm2
from tianmu.gmcrypto.sm3 import digest
from tianmu.identity.audittip import GENESIS, SignedTip, arm_tip, install_tip_hooks, read_tip
from tianmu.identity.models import AuditEntry
from tianmu.store.database import Store
from tianmu.store.schema import identity_audit, identity_audit_checkpoints

__all__ = ["GENESIS", "AuditLog", "AuditReport", "entry_hash"]

_LOCK_ID = 0x7469616E6D75  # "tianmu": serialises appends on PostgreSQL


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    prev_hash: str,
    seq: int,
    at: str,
    tenant: str,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    details_text: str,
) -> str:
    body = _canonical([seq, at, tenant, actor, action, target, outcome, details_text])
    return digest(prev_hash.encode("ascii") + b"\n" + body.encode("utf-8")).hex()


def _checkpoint_message(seq: int, entry_hash_hex: str, at: str) -> bytes:
    return f"tianmu-audit-checkpoint|{seq}|{entry_hash_hex}|{at}".encode("ascii")


@dataclass
class AuditReport:
    entries: int = 0
    checkpoints: int = 0
    tip: str = GENESIS
    last_checkpoint: int = 0
    signed_tip: int | None = None
    """The seq the signed tip file vouches for (None without a readable file)."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """Appends to and verifies the chain. `signing_key` is called when a checkpoint or the tip file
    (`tip_path`; None keeps no tip outside the database) is signed."""

    def __init__(
        self,
        store: Store,
        signing_key: Callable[[], sm2.Sm2PrivateKey],
        *,
        checkpoint_every: int = 100,
        checkpoint_interval: dt.timedelta | None = dt.timedelta(hours=1),
        tip_path: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self._signing_key = signing_key
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.tip_path = tip_path
        self._clock: Clock = clock or SystemClock()
        if tip_path is not None:
            install_tip_hooks(store.engine)

    def _lock(self, conn: Connection) -> None:
        """Serialise appends: two writers must never read the same last entry and both extend it."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        elif conn.dialect.name == "sqlite":
            # A write that changes nothing still takes SQLite's write lock (waiting for other writers) before
            # the last entry is read; a plain SELECT would not, and would read outside the transaction.
            conn.execute(text("UPDATE identity_audit SET seq = seq WHERE seq < 0"))

    def append(
        self,
        conn: Connection,
        *,
        tenant: str,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "success",
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Add one entry inside the caller's transaction (so the change and its record commit together)."""
        self._lock(conn)
        last = conn.execute(
            select(identity_audit.c.seq, identity_audit.c.hash).order_by(identity_audit.c.seq.desc()).limit(1)
        ).first()
        seq = (last.seq + 1) if last else 1
        prev = last.hash if last else GENESIS
        at = self._clock.now().astimezone(dt.UTC).isoformat(timespec="microseconds")
        details = details or {}
        details_text = _canonical(details)
        h = entry_hash(prev, seq, at, tenant, actor, action, target, outcome, details_text)
        conn.execute(
            insert(identity_audit).values(
                seq=seq,
                at=at,
                tenant=tenant,
                actor=actor,
                action=action,
                target=target,
                outcome=outcome,
                details=details_text,
                prev_hash=prev,
                hash=h,
            )
        )
        if (self.checkpoint_every and seq % self.checkpoint_every == 0) or self._checkpoint_due(conn, at):
            self._write_checkpoint(conn, seq, h)
        self._arm_tip(conn, seq, h, at)
        return AuditEntry(seq, at, tenant, actor, action, target, outcome, details, prev, h)

    def _checkpoint_due(self, conn: Connection, now: str) -> bool:
        """True when the last checkpoint (before the first: the first entry) is older than the interval."""
        if self.checkpoint_interval is None:
            return False
        since = conn.execute(
            select(identity_audit_checkpoints.c.at).order_by(identity_audit_checkpoints.c.seq.desc()).limit(1)
        ).scalar()
        if since is None:
            since = conn.execute(select(identity_audit.c.at).where(identity_audit.c.seq == 1)).scalar()
        if since is None:
            return False
        return dt.datetime.fromisoformat(now) - dt.datetime.fromisoformat(since) >= self.checkpoint_interval

    def _arm_tip(self, conn: Connection, seq: int, h: str, at: str) -> None:
        if self.tip_path is not None:
            arm_tip(conn, self.tip_path, self._signing_key(), seq=seq, entry_hash=h, at=at)

    def _write_checkpoint(self, conn: Connection, seq: int, h: str) -> None:
        key = self._signing_key()
        at = self._clock.now().astimezone(dt.UTC).isoformat(timespec="microseconds")
        signature = sm2.sign(key, _checkpoint_message(seq, h, at))
        conn.execute(
            insert(identity_audit_checkpoints).values(
                seq=seq,
                at=at,
                entry_hash=h,
                signature=base64.b64encode(signature).decode("ascii"),
                public_key=key.public_key.to_pem().decode("ascii"),
            )
        )

    def checkpoint(self) -> int | None:
        """Sign the current tip now (e.g. at the end of `tianmu audit verify` or on a schedule)."""
        with self.store.begin() as conn:
            self._lock(conn)
            last = conn.execute(
                select(identity_audit.c.seq, identity_audit.c.hash, identity_audit.c.at)
                .order_by(identity_audit.c.seq.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            exists = conn.execute(
                select(identity_audit_checkpoints.c.seq).where(identity_audit_checkpoints.c.seq == last.seq)
            ).first()
            if exists is None:
                self._write_checkpoint(conn, last.seq, last.hash)
            # Re-anchor the tip too (a data directory from before tip files, or one restored from backup).
            self._arm_tip(conn, last.seq, last.hash, last.at)
            return int(last.seq)

    def entries(self, *, tenant: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest entries, newest first (for the dashboard and `tianmu audit list`)."""
        query = select(identity_audit).order_by(identity_audit.c.seq.desc()).limit(limit)
        if tenant is not None:
            query = query.where(identity_audit.c.tenant == tenant)
        with self.store.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(
                r.seq,
                r.at,
                r.tenant,
                r.actor,
                r.action,
                r.target,
                r.outcome,
                json.loads(r.details),
                r.prev_hash,
                r.hash,
            )
            for r in rows
        ]

    def count(self) -> int:
        with self.store.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(identity_audit)).scalar_one())

    def _rows(self, conn: Connection) -> Iterator[Any]:
        result = conn.execution_options(yield_per=2000).execute(
            select(identity_audit).order_by(identity_audit.c.seq)
        )
        yield from result

    def verify(
        self,
        trusted_key: sm2.Sm2PublicKey | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> AuditReport:
        """Walk the whole chain and every checkpoint; each problem found is described with its seq."""
        report = AuditReport()
        with self.store.connect() as conn:
            checkpoints = {r.seq: r for r in conn.execute(select(identity_audit_checkpoints))}
            hashes_at_checkpoints: dict[int, str] = {}
            expected_seq, prev = 1, GENESIS
            for row in self._rows(conn):
                report.entries += 1
                if row.seq != expected_seq:
                    if row.seq > expected_seq:
                        missing = (
                            f"{expected_seq}"
                            if row.seq == expected_seq + 1
                            else f"{expected_seq}-{row.seq - 1}"
                        )
                        report.problems.append(f"entries {missing} are missing (deleted)")
                    else:
                        report.problems.append(f"entry {row.seq} is out of order")
                if row.prev_hash != prev:
                    report.problems.append(
                        f"entry {row.seq} does not link to the entry before it (deleted or reordered)"
                    )
                recomputed = entry_hash(
                    row.prev_hash,
                    row.seq,
                    row.at,
                    row.tenant,
                    row.actor,
                    row.action,
                    row.target,
                    row.outcome,
                    row.details,
                )
                if recomputed != row.hash:
                    report.problems.append(
                        f"entry {row.seq} was altered: its content does not match its hash"
                    )
                if row.seq in checkpoints:
                    hashes_at_checkpoints[row.seq] = row.hash
                prev, expected_seq = row.hash, row.seq + 1
                if progress is not None:
                    progress(1)
            report.tip = prev
        last_seq = expected_seq - 1
        for seq in sorted(checkpoints):
            cp = checkpoints[seq]
            report.checkpoints += 1
            try:
                key = sm2.load_public_key(cp.public_key.encode("ascii"), source=f"checkpoint {seq}")
            except Exception:  # a mangled key in the row is a finding, not a crash
                report.problems.append(f"checkpoint {seq} carries an unreadable public key")
                continue
            if trusted_key is not None and key != trusted_key:
                report.problems.append(f"checkpoint {seq} was signed by a key other than the platform key")
            try:
                signature = base64.b64decode(cp.signature, validate=True)
            except (binascii.Error, ValueError, TypeError):
                report.problems.append(f"checkpoint {seq} has a signature that is not valid base64 (edited)")
                signature = b""
            if signature and not sm2.verify(key, _checkpoint_message(seq, cp.entry_hash, cp.at), signature):
                report.problems.append(f"checkpoint {seq} has an invalid SM2 signature")
            if seq > last_seq:
                report.problems.append(
                    f"checkpoint {seq} vouches for entries up to {seq}, but the log ends at "
                    f"{last_seq} (entries were cut off)"
                )
            elif hashes_at_checkpoints.get(seq) != cp.entry_hash:
                report.problems.append(
                    f"entry {seq} differs from what checkpoint {seq} signed (history rewritten)"
                )
            report.last_checkpoint = max(report.last_checkpoint, seq)
        self._verify_tip(report, last_seq, report.tip, trusted_key)
        return report

    def _verify_tip(
        self, report: AuditReport, last_seq: int, last_hash: str, trusted_key: sm2.Sm2PublicKey | None
    ) -> None:
        """Compare the log's end with the signed tip file: shorter, rewritten or unvouched is tampering."""
        if self.tip_path is None:
            return
        tip = read_tip(self.tip_path)
        if tip is None:
            if last_seq:
                report.problems.append(
                    f"the signed tip file {self.tip_path} is missing, so the end of the log cannot be "
                    "checked (deleted? after an upgrade, `tianmu audit checkpoint` writes it)"
                )
            return
        if isinstance(tip, str):
            report.problems.append(tip)
            return
        report.signed_tip = tip.seq
        report.problems.extend(tip.problems(trusted_key))
        if tip.seq > last_seq and not self._appended_meanwhile(tip):
            missing = f"{last_seq + 1}" if tip.seq == last_seq + 1 else f"{last_seq + 1}-{tip.seq}"
            report.problems.append(
                f"the log ends at entry {last_seq}, but the signed tip ({tip.at}) vouches for entries up "
                f"to {tip.seq}: entries {missing} are missing (deleted, or the log wiped)"
            )
        elif 0 < tip.seq <= last_seq:
            found = last_hash if tip.seq == last_seq else self._hash_at(tip.seq)
            if found != tip.entry_hash:
                report.problems.append(
                    f"entry {tip.seq} differs from what the signed tip file vouches for (history rewritten)"
                )
            if tip.seq < last_seq:
                report.problems.append(
                    f"entries {tip.seq + 1}-{last_seq} come after the signed tip ({tip.seq}): nothing "
                    "vouches for them (added behind the platform's back?)"
                )

    def _hash_at(self, seq: int) -> str | None:
        with self.store.connect() as conn:
            found = conn.execute(select(identity_audit.c.hash).where(identity_audit.c.seq == seq)).scalar()
        return None if found is None else str(found)

    def _appended_meanwhile(self, tip: SignedTip) -> bool:
        """True when the tip's entry exists after all: it was appended while the walk was running."""
        return self._hash_at(tip.seq) == tip.entry_hash
