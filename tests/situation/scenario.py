"""A realistic intrusion on one internet-facing host, as the engines report it (evidence conventions).

03:12 an intel hit: 203.0.113.45 (listed as an SSH scanner) connects to web01's sshd
03:12–03:14 Sigma: SSH brute force from 203.0.113.45 against root and admin (credential access, T1110)
03:15 Sigma: successful login as deploy from 203.0.113.45 after the failures (initial access, T1078)
03:18 Sigma: local user backup2 created with useradd (persistence, T1136.001)
03:21 YARA: a Mirai-family ELF dropped at /tmp/.x/kworker (malware, no tactic tag)

and, as noise that must stay apart:
- three days later on web01, a web scanner 198.51.100.23 probing (discovery): outside the window;
- the same night on db01, a brute force from 192.0.2.77 (other host, other IP).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Severity

WEB01 = Asset("web01", AssetKind.HOST, criticality=4, tags=("internet-facing", "prod"))
DB01 = Asset("db01", AssetKind.HOST, criticality=5, tags=("internal", "prod"))
ATTACKER = "203.0.113.45"
MALWARE_SHA256 = "f8f6324039152b0911637ad0c256cf9c58293f70ae3c60e67d508110f27ca6b4"
T0 = datetime(2026, 11, 20, 3, 12, 5, tzinfo=UTC)

AUTH_LOG = """\
Nov 20 03:12:05 web01 sshd[2211]: Failed password for root from 203.0.113.45 port 50122 ssh2
Nov 20 03:12:09 web01 sshd[2211]: Failed password for root from 203.0.113.45 port 50122 ssh2
Nov 20 03:13:41 web01 sshd[2230]: Failed password for admin from 203.0.113.45 port 50388 ssh2
Nov 20 03:14:02 web01 sshd[2230]: Failed password for admin from 203.0.113.45 port 50388 ssh2
Nov 20 03:15:40 web01 sshd[2242]: Accepted password for deploy from 203.0.113.45 port 50412 ssh2
Nov 20 03:18:02 web01 useradd[2275]: new user: name=backup2, UID=1002, GID=1002, home=/home/backup2
"""


def _iso(hour: int, minute: int, second: int, day: int = 20) -> str:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC).isoformat()


def scenario_findings(log_path: str = "var/log/auth.log") -> list[Finding]:
    return [
        Finding(
            FindingKind.INTEL,
            "intel:ip:203.0.113.45",
            "Connection from 203.0.113.45, listed as an SSH scanner",
            Severity.HIGH,
            WEB01,
            evidence={
                "path": log_path,
                "line": 1,
                "time": _iso(3, 12, 5),
                "entities": {"ip": [ATTACKER]},
                "fingerprint_extra": ATTACKER,
            },
            data={"indicator": {"type": "ip", "value": ATTACKER, "sources": ["demo-feed"]}},
        ),
        Finding(
            FindingKind.DETECTION,
            "sigma:ssh-brute-force",
            "SSH brute force",
            Severity.MEDIUM,
            WEB01,
            evidence={
                "path": log_path,
                "line": 4,
                "time": _iso(3, 14, 2),
                "entities": {"ip": [ATTACKER], "user": ["root", "admin"]},
                "fingerprint_extra": ATTACKER,
            },
            techniques=("T1110",),
            data={"tags": ["attack.credential_access", "attack.t1110"]},
        ),
        Finding(
            FindingKind.DETECTION,
            "sigma:ssh-login-after-failures",
            "Successful SSH login after repeated failures",
            Severity.HIGH,
            WEB01,
            evidence={
                "path": log_path,
                "line": 5,
                "time": _iso(3, 15, 40),
                "entities": {"ip": [ATTACKER], "user": ["deploy"]},
                "fingerprint_extra": ATTACKER,
            },
            techniques=("T1078",),
            data={"tags": ["attack.initial_access", "attack.t1078"], "raw": "Accepted password for deploy"},
        ),
        Finding(
            FindingKind.DETECTION,
            "sigma:linux-useradd",
            "Local user account created",
            Severity.MEDIUM,
            WEB01,
            evidence={
                "path": log_path,
                "line": 6,
                "time": _iso(3, 18, 2),
                "entities": {"user": ["backup2"], "process": ["/usr/sbin/useradd"]},
                "fingerprint_extra": "backup2",
            },
            techniques=("T1136.001",),
            data={"tags": ["attack.persistence", "attack.t1136.001"]},
        ),
        Finding(
            FindingKind.MALWARE,
            "yara:Linux_Trojan_Mirai",
            "Mirai-family ELF in /tmp/.x/kworker",
            Severity.CRITICAL,
            WEB01,
            evidence={
                "path": "tmp/.x/kworker",
                "sha256": MALWARE_SHA256,
                "time": _iso(3, 21, 30),
                "entities": {"hash": [MALWARE_SHA256], "file": ["/tmp/.x/kworker"]},
                "fingerprint_extra": "/tmp/.x/kworker",
            },
        ),
        # Noise 1: same host, three days later, a different source: outside the 24 h window.
        Finding(
            FindingKind.DETECTION,
            "sigma:web-scanner",
            "Web vulnerability scanner user agent",
            Severity.LOW,
            WEB01,
            evidence={
                "path": "var/log/nginx/access.log",
                "line": 88,
                "time": _iso(14, 2, 0, day=23),
                "entities": {"ip": ["198.51.100.23"], "url": ["/.env"]},
                "fingerprint_extra": "198.51.100.23",
            },
            data={"tags": ["attack.discovery"]},
        ),
        # Noise 2: same night, another host and another source.
        Finding(
            FindingKind.DETECTION,
            "sigma:ssh-brute-force",
            "SSH brute force",
            Severity.MEDIUM,
            DB01,
            evidence={
                "path": "var/log/auth.log",
                "line": 17,
                "time": _iso(3, 40, 11),
                "entities": {"ip": ["192.0.2.77"], "user": ["postgres"]},
                "fingerprint_extra": "192.0.2.77",
            },
            techniques=("T1110",),
            data={"tags": ["attack.credential_access", "attack.t1110"]},
        ),
    ]


def write_scenario_files(root: Path) -> None:
    """The raw evidence on disk, where the findings' relative paths point."""
    (root / "var" / "log").mkdir(parents=True)
    (root / "var" / "log" / "auth.log").write_text(AUTH_LOG)
    (root / "tmp" / ".x").mkdir(parents=True)
    (root / "tmp" / ".x" / "kworker").write_bytes(b"\x7fELF" + b"\x00" * 60 + b"mirai-like test payload")
