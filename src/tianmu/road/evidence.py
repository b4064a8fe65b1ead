"""Evidence bundles with the samples of Tianmu's own quarantine: the situation meets the malware capability.

An evidence bundle (`tianmu.situation.evidence`) carries a malware sample as its quarantined copy —
still SM4-sealed, with its index entry — when there is one. The quarantine is the malware capability's
(`tianmu.malware.quarantine`), which the situation step may not import, so the composition root joins
them: `quarantine_lookup(home)` answers, for a SHA-256, the sealed copy and its entry.
"""

from __future__ import annotations

from pathlib import Path

from tianmu.core.errors import TianmuError
from tianmu.malware.quarantine import list_items
from tianmu.situation.evidence import QuarantineLookup, folder_quarantine

__all__ = ["quarantine_lookup"]


def quarantine_lookup(home: Path) -> QuarantineLookup:
    """The quarantined copies under `home/quarantine/`: Tianmu's sealed `<id>.tmq` with its `<id>.json`
    index entry, else (another tool's quarantine folder) a file named after the hash.

    The index is read when a sample is asked for, so a lookup made before a quarantine sees it; with an
    unreadable index the hash-named file is looked for instead.
    """
    folder = home / "quarantine"
    loose = folder_quarantine(folder)

    def lookup(sha256: str) -> list[tuple[str, Path]]:
        try:
            items = list_items(home)
        except TianmuError:
            items = []
        for item in items:
            sealed = folder / f"{item.id}.tmq"
            if item.sha256 == sha256 and sealed.is_file():
                return [
                    (f"samples/{sha256}.tmq", sealed),
                    (f"samples/{sha256}.quarantine.json", folder / f"{item.id}.json"),
                ]
        return list(loose(sha256))

    return lookup
