"""The audit chain's tip kept outside the database: a small file in the data directory, signed with the
platform's SM2 key and rewritten with every append.

Whoever can write to the database can delete the last entries and their checkpoint, or wipe the table,
and what is left is a consistent chain. The tip file remembers where the chain ended (seq and hash), so
`verify` can tell a log that is shorter than it was, or whose end was rewritten, from an intact one.

The file is written when the appending transaction commits (a SQLAlchemy `commit` hook on the engine,
which runs while the transaction still holds the audit lock, so tips are written in chain order); a
transaction that rolls back leaves it alone. If the database's own commit then fails, the file is one
entry ahead until the next append, and `verify` says so rather than hide it.

The same tip goes out with every alert (`exported_tip`, read just before each delivery): a receiver
that keeps the tips it was sent holds a copy of the chain's progress beyond the reach of whoever holds
the data directory, and sees a wiped or shortened log as a tip that went back.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event

from tianmu.gmcrypto import sm2

__all__ = [
    "GENESIS",
    "TIP_FILE",
    "SignedTip",
    "arm_tip",
    "exported_tip",
    "install_tip_hooks",
    "read_tip",
]

GENESIS = "0" * 64
"""The hash before the first entry: the tip of an empty chain."""
TIP_FILE = "audit-tip.json"
_PENDING = "tianmu_audit_pending_tip"
"""Key in the DB connection's `info` under which an uncommitted append leaves its tip."""


def _message(seq: int, entry_hash: str, at: str) -> bytes:
    return f"tianmu-audit-tip|{seq}|{entry_hash}|{at}".encode()


@dataclass(frozen=True, slots=True)
class SignedTip:
    """What the tip file says: the last entry's seq and hash, when it was written, and by which key."""

    seq: int
    entry_hash: str
    at: str
    signature: str
    public_key: str

    def problems(self, trusted_key: sm2.Sm2PublicKey | None) -> list[str]:
        """What is wrong with the file itself (its key or its signature); empty when it is sound."""
        try:
            key = sm2.load_public_key(self.public_key.encode("ascii"), source="audit tip")
        except Exception:  # a mangled key in the file is a finding, not a crash
            return ["the signed tip file carries an unreadable public key"]
        found = []
        if trusted_key is not None and key != trusted_key:
            found.append("the signed tip file was signed by a key other than the platform key")
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return [*found, "the signed tip file's signature is not valid base64"]
        if not sm2.verify(key, _message(self.seq, self.entry_hash, self.at), signature):
            found.append("the signed tip file has an invalid SM2 signature (edited)")
        return found


def read_tip(path: Path) -> SignedTip | str | None:
    """The tip in `path`, None when there is no file, or a sentence saying why it cannot be read."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"the signed tip file {path} cannot be read ({exc.__class__.__name__})"
    try:
        return SignedTip(
            seq=int(raw["seq"]),
            entry_hash=str(raw["hash"]),
            at=str(raw["at"]),
            signature=str(raw["signature"]),
            public_key=str(raw["public_key"]),
        )
    except (KeyError, TypeError, ValueError):
        return f"the signed tip file {path} is not a tip record"


def exported_tip(home: Path) -> tuple[int, str]:
    """(seq, hash) of the tip file in the data directory `home`, to send out with alerts.

    Without a readable file this is the empty chain's tip, (0, GENESIS): to a receiver that was sent a
    later tip before, the chain went back, which is what a deleted tip file beside a wiped log means. A
    hash that is not 64 hex digits is sent as "invalid".
    """
    tip = read_tip(home / TIP_FILE)
    if not isinstance(tip, SignedTip):
        return (0, GENESIS)
    # The file is anyone's with the data directory: what goes into a header or a syslog line is hex.
    sound = len(tip.entry_hash) == 64 and all(c in "0123456789abcdef" for c in tip.entry_hash)
    return (tip.seq, tip.entry_hash if sound else "invalid")


def _write(path: Path, record: dict[str, Any]) -> None:
    # Write beside and rename: a reader never sees half a file, a crash never leaves one.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(temporary, path)


def arm_tip(
    conn: Connection, path: Path, key: sm2.Sm2PrivateKey, *, seq: int, entry_hash: str, at: str
) -> None:
    """Sign the tip now and leave it on the connection; it is written when the transaction commits.

    The hooks are made sure of on the connection's own engine: an append through a connection of
    another Store object (same database) must move the tip all the same."""
    install_tip_hooks(conn.engine)
    record = {
        "seq": seq,
        "hash": entry_hash,
        "at": at,
        "signature": base64.b64encode(sm2.sign(key, _message(seq, entry_hash, at))).decode("ascii"),
        "public_key": key.public_key.to_pem().decode("ascii"),
    }
    conn.info[_PENDING] = (path, record)


def _on_commit(conn: Connection) -> None:
    pending = conn.info.pop(_PENDING, None)
    if pending is not None:
        _write(*pending)


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)


def install_tip_hooks(engine: Engine) -> None:
    """Write armed tips on commit and drop them on rollback (once per engine, however many logs)."""
    for name, hook in (("commit", _on_commit), ("rollback", _on_rollback)):
        if not event.contains(engine, name, hook):
            event.listen(engine, name, hook)
