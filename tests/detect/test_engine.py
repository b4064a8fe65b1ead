"""Sigma semantics of the compiled matcher, the literal prefilter, log-source indexing and correlations."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tianmu.core.models import Asset, AssetKind, Event, FindingKind, Location, Severity
from tianmu.detect.compiler import required_literals
from tianmu.detect.correlation import correlate
from tianmu.detect.engine import Detector, detect_paths, event_entities
from tianmu.detect.kb import STARTER_RULES, load_rule_base

from .conftest import RuleLoader, evtx_event, matches

HEADER = """
title: {title}
id: {id}
status: test
logsource:
    product: windows
    category: process_creation
level: high
tags:
    - attack.execution
    - attack.t1059.001
detection:
"""


def rule(title: str, detection: str, number: int = 1) -> str:
    return HEADER.format(title=title, id=f"00000000-0000-4000-8000-{number:012d}") + detection


PROC = {"EventID": 1}


def test_string_matching_is_case_insensitive_with_wildcards(load_rules: RuleLoader) -> None:
    base = load_rules(
        rule(
            "wildcards",
            """
    selection:
        Image|endswith: '\\powershell.exe'
        CommandLine: '*-enc* *'
        ParentImage: 'C:\\Windows?explorer.exe'
    condition: selection
""",
        )
    )
    good = {**PROC, "Image": "C:\\WINDOWS\\System32\\PowerShell.EXE", "CommandLine": "powershell -ENC aGk=",
            "ParentImage": "c:\\windows\\explorer.exe"}  # fmt: skip
    assert matches(base, evtx_event(good)) == ["wildcards"]
    assert matches(base, evtx_event({**good, "CommandLine": "powershell -enc"})) == []
    assert matches(base, evtx_event({**good, "ParentImage": "C:\\Windows\\xplorer.exe"})) == []
    assert matches(base, evtx_event({**good, "EventID": 3})) == []  # another log source


def test_modifiers(load_rules: RuleLoader) -> None:
    encoded = base64.b64encode(b"\x00\x00IEX (New-Object Net.WebClient)").decode()
    base = load_rules(
        "\n---\n".join(
            [
                rule(
                    "all",
                    "    sel:\n        CommandLine|contains|all: [' -w hidden', ' -nop']\n    condition: sel",
                    1,
                ),
                rule(
                    "regex",
                    "    sel:\n        CommandLine|re|i: 'invoke-\\w*expression'\n    condition: sel",
                    2,
                ),
                rule("regex cased", "    sel:\n        CommandLine|re: 'Mimikatz'\n    condition: sel", 3),
                rule(
                    "b64off",
                    "    sel:\n        CommandLine|base64offset|contains: 'IEX (New-Object'\n"
                    "    condition: sel",
                    4,
                ),
                rule(
                    "windash",
                    "    sel:\n        CommandLine|windash|contains: ' -exec bypass'\n    condition: sel",
                    5,
                ),
                rule(
                    "wide", "    sel:\n        Data|wide|base64offset|contains: 'ping'\n    condition: sel", 6
                ),
                rule("cidr", "    sel:\n        SourceIp|cidr: '10.0.0.0/8'\n    condition: sel", 7),
                rule(
                    "exists",
                    "    sel:\n        OriginalFileName|exists: false\n    condition: sel and 1 of x*\n"
                    "    x1:\n        Image: 'a.exe'",
                    8,
                ),
                rule("fieldref", "    sel:\n        Image|fieldref: ParentImage\n    condition: sel", 9),
                rule("gt", "    sel:\n        IntegrityLevelNum|gt: 3\n    condition: sel", 10),
                rule(
                    "startswith list",
                    "    sel:\n        Image|startswith: ['C:\\Users\\', 'C:\\Temp\\']\n    condition: sel",
                    11,
                ),
                rule(
                    "cased",
                    "    sel:\n        CommandLine|cased|contains: 'MiniDump'\n    condition: sel",
                    12,
                ),
            ]
        )
    )
    assert not base.unusable

    def hit(**fields: object) -> set[str]:
        return set(matches(base, evtx_event({**PROC, **fields})))

    assert "all" in hit(CommandLine="powershell -nop -w hidden x")
    assert "all" not in hit(CommandLine="powershell -w hidden")
    assert "regex" in hit(CommandLine="Invoke-Expression $x") and "regex" in hit(
        CommandLine="INVOKE-WEBEXPRESSION"
    )
    assert "regex cased" in hit(CommandLine="Mimikatz") and "regex cased" not in hit(CommandLine="mimikatz")
    assert "b64off" in hit(CommandLine=f"powershell -e {encoded}")
    assert "windash" in hit(CommandLine="powershell /exec bypass") and "windash" in hit(
        CommandLine="x -exec bypass"
    )
    assert "windash" in hit(CommandLine="x \u2013exec bypass")  # en dash
    wide = base64.b64encode("cmd /c ping 8.8.8.8".encode("utf-16-le")).decode()
    assert "wide" in hit(Data=wide)
    assert "cidr" in hit(SourceIp="10.20.30.40") and "cidr" not in hit(SourceIp="11.0.0.1")
    assert "exists" in hit(Image="a.exe") and "exists" not in hit(Image="a.exe", OriginalFileName="a.exe")
    assert "fieldref" in hit(Image="x.exe", ParentImage="X.EXE") and "fieldref" not in hit(
        Image="x", ParentImage="y"
    )
    assert "gt" in hit(IntegrityLevelNum="4") and "gt" not in hit(IntegrityLevelNum="3")
    assert "startswith list" in hit(Image="c:\\temp\\a.exe") and "startswith list" not in hit(
        Image="D:\\a.exe"
    )
    assert "cased" in hit(CommandLine="rundll32 comsvcs MiniDump") and "cased" not in hit(
        CommandLine="minidump"
    )


def test_conditions_and_keywords(load_rules: RuleLoader) -> None:
    base = load_rules(
        rule(
            "conditions",
            """
    sel_img:
        Image|endswith: '\\rundll32.exe'
    sel_cli_1:
        CommandLine|contains: 'javascript:'
    sel_cli_2:
        CommandLine|contains: 'mshtml'
    filter_main:
        ParentImage|endswith: '\\msiexec.exe'
    condition: sel_img and 1 of sel_cli_* and not filter_main
""",
        )
        + "\n---\n"
        + rule(
            "all of them",
            "    a:\n        Image: x.exe\n    b:\n        User: bob\n    condition: all of them",
            2,
        )
        + "\n---\n"
        + rule(
            "keywords", "    keywords:\n        - 'evil.example'\n        - 4444\n    condition: keywords", 3
        )
    )

    def hit(**fields: object) -> set[str]:
        return set(matches(base, evtx_event({**PROC, **fields})))

    assert "conditions" in hit(Image="C:\\x\\rundll32.exe", CommandLine="rundll32 javascript:alert")
    # `not filter` with the filter's field absent is true (a missing field matches nothing).
    assert "conditions" in hit(Image="C:\\x\\rundll32.exe", CommandLine="a mshtml b")
    assert "conditions" not in hit(
        Image="C:\\x\\rundll32.exe", CommandLine="mshtml", ParentImage="C:\\msiexec.exe"
    )
    assert "conditions" not in hit(Image="C:\\x\\rundll32.exe", CommandLine="nothing")
    assert "all of them" in hit(Image="X.exe", User="BOB") and "all of them" not in hit(Image="x.exe")
    assert "keywords" in hit(CommandLine="curl http://EVIL.example/x") and "keywords" in hit(
        DestinationPort=4444
    )
    assert "keywords" not in hit(CommandLine="curl http://good.example/")


def test_unusable_rules_are_reported_not_fatal(load_rules: RuleLoader) -> None:
    base = load_rules(
        rule("placeholder", "    sel:\n        Image|expand: '%admin_tools%'\n    condition: sel", 1)
        + "\n---\n"
        + rule("broken condition", "    sel:\n        Image: x\n    condition: sel and", 2)
        + "\n---\n"
        + "title: cloud\nid: 00000000-0000-4000-8000-000000000003\nlogsource:\n    product: aws\n"
        "    service: cloudtrail\ndetection:\n    sel:\n        eventName: x\n    condition: sel\n"
        + "\n---\n"
        + rule("fine", "    sel:\n        Image: x\n    condition: sel", 4)
    )
    assert [r.title for r in base.rules] == ["fine"]
    reasons = {u.rule: u.reason for u in base.unusable}
    assert "placeholder %admin_tools% is not expanded" in reasons["00000000-0000-4000-8000-000000000001"]
    assert "00000000-0000-4000-8000-000000000002" in reasons
    assert "no field mapping for log source aws/cloudtrail" in reasons["00000000-0000-4000-8000-000000000003"]


def test_required_literals_pick_selective_strings(load_rules: RuleLoader) -> None:
    base = load_rules(
        rule(
            "lits",
            "    a:\n        Image|endswith: ['\\certutil.exe', '\\bitsadmin.exe']\n    b:\n"
            "        CommandLine|contains: 'urlcache'\n    condition: a and b",
        )
        + "\n---\n"
        + rule("no lits", "    a:\n        Image: x\n    f:\n        User: y\n    condition: not f", 2)
    )
    by_title = {r.title: r for r in base.rules}
    assert by_title["lits"].literals == frozenset({"\\certutil.exe", "\\bitsadmin.exe"})
    assert by_title["no lits"].literals is None
    assert required_literals(("or", (("str", "a", "eq", ("abcd",)), ("not", ("exists", "b", True))))) is None


def test_prefilter_skips_most_rules_on_real_rules(shared_data: Path) -> None:
    base = load_rule_base([shared_data / "sigma" / "rules" / "windows" / "process_creation"])
    detector = Detector(base)
    event = evtx_event(
        {**PROC, "Image": "C:\\Windows\\System32\\notepad.exe", "CommandLine": "notepad a.txt"}
    )
    detector.match(event)
    assert len(base.rules) > 1000 and detector.evaluations < 60


def _event(fields: dict[str, str], seconds: int, line: int) -> Event:
    return Event(
        fields={"program": "sshd", "host": "web01", **fields},
        raw="",
        origin=Location("auth.log", line),
        timestamp=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds),
        source_type="syslog",
    )


CORRELATION_BASE = """
title: failure
id: 00000000-0000-4000-8000-0000000000a1
name: failure
logsource: {product: linux, service: sshd}
detection:
    sel:
        event_action: ssh_login_failed
    condition: sel
level: low
---
title: success
id: 00000000-0000-4000-8000-0000000000a2
name: success
logsource: {product: linux, service: sshd}
detection:
    sel:
        event_action: ssh_login_accepted
    condition: sel
level: low
---
"""


_SSH = "    rules: [failure]\n    group-by: [src_ip]\n"
_BOTH = "    group-by: [src_ip]\n    timespan: 5m"
CORRELATIONS = [
    ("type: event_count\n" + _SSH + "    timespan: 1m\n    condition: {gte: 3}", [("1.1.1.1",)]),
    ("type: value_count\n" + _SSH + "    timespan: 1h\n    condition: {gte: 3, field: user}", [("1.1.1.1",)]),
    ("type: temporal\n    rules: [success, failure]\n" + _BOTH, [("2.2.2.2",)]),
    ("type: temporal_ordered\n    rules: [success, failure]\n" + _BOTH, []),
]


@pytest.mark.parametrize(("correlation", "expected"), CORRELATIONS)
def test_correlation_types(
    load_rules: RuleLoader, tmp_path: Path, correlation: str, expected: list[tuple[str]]
) -> None:
    text = CORRELATION_BASE + (
        "title: corr\nid: 00000000-0000-4000-8000-0000000000a3\ncorrelation:\n    "
        + correlation
        + "\nlevel: high\n"
    )
    base = load_rules(text)
    assert not base.unusable, base.unusable
    detector = Detector(base)
    events = [
        # 1.1.1.1: three failures within a minute, three distinct users
        _event({"event_action": "ssh_login_failed", "src_ip": "1.1.1.1", "user": "a"}, 0, 1),
        _event({"event_action": "ssh_login_failed", "src_ip": "1.1.1.1", "user": "b"}, 20, 2),
        _event({"event_action": "ssh_login_failed", "src_ip": "1.1.1.1", "user": "c"}, 50, 3),
        # 2.2.2.2: two failures far apart, then a success after the second failure
        _event({"event_action": "ssh_login_failed", "src_ip": "2.2.2.2", "user": "a"}, 0, 4),
        _event({"event_action": "ssh_login_failed", "src_ip": "2.2.2.2", "user": "a"}, 600, 5),
        _event({"event_action": "ssh_login_accepted", "src_ip": "2.2.2.2", "user": "a"}, 700, 6),
    ]
    log = tmp_path / "events"
    from tianmu.detect import engine

    result = engine.DetectResult()
    engine.scan_events(detector, events, Asset("h", AssetKind.HOST), None, result)
    hits = correlate(detector.correlations, result.sightings)
    assert [tuple(h.group.values()) for h in hits] == expected
    assert not log.exists()
    assert all(
        f.rule_id != "00000000-0000-4000-8000-0000000000a1" for f in result.findings
    )  # generate: false


def test_starter_pack_over_demo_logs() -> None:
    repo = Path(__file__).resolve().parents[2]
    detector = Detector(load_rule_base([STARTER_RULES]))
    result = detect_paths(detector, [repo / "demo" / "target" / "logs"], Asset("demo", AssetKind.DIRECTORY),
                          root=repo / "demo" / "target", workers=2)  # fmt: skip
    titles = [f.title for f in result.findings]
    for expected in (
        "SSH Brute Force",
        "SSH Brute Force Followed By Successful Login",
        "SQL Injection Attempt In Access Log",
        "Path Traversal Attempt In Access Log",
        "Known Web Scanner User Agent",
        "Sudo To A Shell Or Credential Files",
        "Sudo Refused",
        "Failed Su",
        "New Local User",
        "User Added To A Privileged Group",
        "Suricata High-Severity Alert",
    ):
        assert expected in titles, expected
    assert titles.count("Suricata High-Severity Alert") == 2  # the severity-3 alert does not fire
    chained = next(f for f in result.findings if f.title == "SSH Brute Force Followed By Successful Login")
    assert chained.severity is Severity.CRITICAL and chained.kind is FindingKind.DETECTION
    assert chained.evidence["path"] == "logs/auth.log" and chained.evidence["entities"]["ip"] == [
        "203.0.113.45"
    ]
    assert chained.evidence["fingerprint_extra"] == {"group": {"src_ip": "203.0.113.45"}}
    sqli = next(f for f in result.findings if f.title == "SQL Injection Attempt In Access Log")
    assert sqli.data["event"] == {"path": "logs/access.log", "record": 5, "time": "2026-11-20T03:06:02+00:00"}
    assert sqli.data["fields"] == {"cs-uri": "/products?id=1%27%20or%20%271%27%3D%271"}
    assert sqli.data["attack"] == ["T1190"] and sqli.data["rule"]["level"] == "high"
    # Ordinary traffic stays quiet: the deploy key login, cron, the shop's own requests.
    quiet = {f.evidence.get("line") for f in result.findings if f.evidence["path"] == "logs/access.log"}
    assert not quiet & {1, 2, 10}


def test_entities_are_normalised() -> None:
    entities = event_entities(
        {
            "sourceip": "::ffff:10.1.2.3",
            "hashes": "MD5=AB" + "0" * 30 + ",SHA256=" + "F" * 64,
            "queryname": "Evil.Example.",
            "user": "-",
            "image": "C:\\x.exe",
        }
    )
    assert entities == {
        "ip": ["10.1.2.3"],
        "domain": ["evil.example"],
        "process": ["C:\\x.exe"],
        "hash": ["ab" + "0" * 30, "f" * 64],
    }


def test_global_action_and_filters(load_rules: RuleLoader) -> None:
    base = load_rules(
        """
action: global
title: Office spawning a shell
status: test
logsource:
    product: windows
    category: process_creation
level: high
detection:
    parent:
        ParentImage|endswith: '\\winword.exe'
    condition: parent and child
---
id: 00000000-0000-4000-8000-0000000000c1
name: office_cmd
detection:
    child:
        Image|endswith: '\\cmd.exe'
---
id: 00000000-0000-4000-8000-0000000000c2
detection:
    child:
        Image|endswith: '\\powershell.exe'
---
title: Known macro host
id: 00000000-0000-4000-8000-0000000000c3
logsource:
    product: windows
    category: process_creation
filter:
    rules:
        - office_cmd
    selection:
        Computer: BUILD01
    condition: not selection
"""
    )
    assert len(base.rules) == 2 and not base.unusable, base.unusable
    word = "C:\\Program Files\\Office\\WINWORD.EXE"
    assert matches(base, evtx_event({**PROC, "ParentImage": word, "Image": "C:\\Windows\\cmd.exe"})) == [
        "Office spawning a shell"
    ]
    assert (
        len(matches(base, evtx_event({**PROC, "ParentImage": word, "Image": "C:\\x\\powershell.exe"}))) == 1
    )
    filtered = {**PROC, "ParentImage": word, "Image": "C:\\Windows\\cmd.exe", "Computer": "build01"}
    assert matches(base, evtx_event(filtered)) == []
    assert len(matches(base, evtx_event({**filtered, "Image": "C:\\x\\powershell.exe"}))) == 1


def test_correlation_aliases_join_different_field_names(load_rules: RuleLoader) -> None:
    base = load_rules(
        CORRELATION_BASE
        + """title: web then ssh
id: 00000000-0000-4000-8000-0000000000b3
correlation:
    type: temporal
    rules: [web_scan, failure]
    group-by: [attacker]
    timespan: 10m
    aliases:
        attacker:
            web_scan: c-ip
            failure: src_ip
level: high
---
title: web scan
id: 00000000-0000-4000-8000-0000000000b4
name: web_scan
logsource: {category: webserver}
detection:
    sel:
        cs-user-agent|contains: nikto
    condition: sel
level: low
"""
    )
    assert not base.unusable, base.unusable
    web = Event(
        fields={"c-ip": "9.9.9.9", "cs-user-agent": "Mozilla/5.00 (Nikto/2.5.0)"},
        raw="",
        origin=Location("access.log", 1),
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        source_type="webserver",
    )
    ssh = _event({"event_action": "ssh_login_failed", "src_ip": "9.9.9.9", "user": "root"}, 120, 7)
    other = _event({"event_action": "ssh_login_failed", "src_ip": "8.8.8.8", "user": "root"}, 130, 8)
    detector = Detector(base)
    from tianmu.detect import engine

    result = engine.DetectResult()
    engine.scan_events(detector, [web, ssh, other], Asset("h", AssetKind.HOST), None, result)
    hits = correlate(detector.correlations, result.sightings)
    assert [h.group for h in hits] == [{"attacker": "9.9.9.9"}]
    assert [e["path"] for s in hits[0].sightings for e in s.evidence] == ["access.log", "auth.log"]
