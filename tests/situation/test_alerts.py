"""Alert delivery to real local receivers, retries with backoff, deduplication, configuration errors."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest

from tianmu.core.errors import InputError
from tianmu.core.models import Finding, FindingKind, Severity, TriageStatus
from tianmu.situation import correlate
from tianmu.situation.alerts import (
    AlertConfig,
    AlertRule,
    EmailChannel,
    RetryPolicy,
    SyslogChannel,
    WebhookChannel,
    deliver,
    load_config,
    pending_alerts,
    run_alerts,
)
from tianmu.store import Store

from .conftest import HttpReceiver, SmtpReceiver, SyslogReceiver
from .scenario import DB01, WEB01, scenario_findings

SECRET = b"s3cret-shared-with-the-receiver"
RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<host>\S+) tianmu (?P<pid>\d+) "
    rb"(?P<msgid>\S+) \[tianmu@32473 (?P<sd>[^\]]*)\] \xef\xbb\xbf(?P<msg>.*)$",
    re.DOTALL,
)


def _incident_alert() -> object:
    incidents = correlate(scenario_findings())
    [alert] = pending_alerts(
        [AlertRule("intrusions", on=("incident",), min_severity=Severity.CRITICAL)], incidents
    )
    return alert


class _Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_webhook_is_json_signed_with_hmac(http_receiver: HttpReceiver) -> None:
    alert = _incident_alert()
    result = deliver(WebhookChannel("hook", http_receiver.url, SECRET), alert)  # type: ignore[arg-type]
    assert result.ok and result.attempts == 1
    [(headers, body)] = http_receiver.requests
    expected = hmac.new(
        SECRET, headers["x-tianmu-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["x-tianmu-signature"] == f"sha256={expected}"
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["type"] == "incident" and payload["stage"] == "persistence"
    assert payload["title"] == "Persistence on web01 from 203.0.113.45"
    assert payload["severity"] == "critical" and payload["findings"] == 5
    assert payload["state"] == "open|persistence|critical"


def test_webhook_retries_with_backoff_until_the_receiver_recovers(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_first = 2
    sleeps = _Sleeps()
    policy = RetryPolicy(attempts=4, backoff=0.5, factor=2.0)
    result = deliver(
        WebhookChannel("hook", http_receiver.url, SECRET), _incident_alert(), policy, sleep=sleeps
    )  # type: ignore[arg-type]
    assert result.ok and result.attempts == 3 and sleeps == [0.5, 1.0]
    assert len(http_receiver.requests) == 3
    ids = {headers["x-tianmu-delivery"] for headers, _ in http_receiver.requests}
    assert len(ids) == 1  # the receiver can tell a retry from a new alert


def test_webhook_gives_up_on_permanent_errors_and_after_the_last_attempt(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_first, http_receiver.fail_status = 10, 400
    sleeps = _Sleeps()
    result = deliver(WebhookChannel("hook", http_receiver.url, SECRET), _incident_alert(), sleep=sleeps)  # type: ignore[arg-type]
    assert not result.ok and result.attempts == 1 and sleeps == [] and "HTTP 400" in (result.error or "")
    http_receiver.fail_status = 503
    result = deliver(
        WebhookChannel("hook", http_receiver.url, SECRET),
        _incident_alert(),  # type: ignore[arg-type]
        RetryPolicy(attempts=3, backoff=0.01),
        sleep=sleeps,
    )
    assert not result.ok and result.attempts == 3 and sleeps == [0.01, 0.02]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_syslog_rfc5424(transport: str, udp_syslog: SyslogReceiver, tcp_syslog: SyslogReceiver) -> None:
    receiver = udp_syslog if transport == "udp" else tcp_syslog
    channel = SyslogChannel("siem", "127.0.0.1", receiver.port, transport, facility=4, hostname="tianmu-01")
    result = deliver(channel, _incident_alert())  # type: ignore[arg-type]
    assert result.ok
    assert receiver.arrived.wait(5)
    [message] = receiver.messages
    match = RFC5424.match(message)
    assert match is not None, message
    assert int(match["pri"]) == 4 * 8 + 2  # facility auth (4), severity critical (2)
    assert match["host"] == b"tianmu-01" and match["msgid"] == b"incident"
    sd = dict(re.findall(rb'(\w+)="((?:[^"\\]|\\.)*)"', match["sd"]))
    assert sd[b"severity"] == b"critical" and sd[b"state"] == b"open|persistence|critical"
    assert sd[b"subject"].startswith(b"INC-")
    assert match["msg"].decode() == "Persistence on web01 from 203.0.113.45"


def test_syslog_tcp_receiver_down_is_retried_then_reported() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = _Sleeps()
    result = deliver(
        SyslogChannel("siem", "127.0.0.1", port, "tcp"), _incident_alert(), RetryPolicy(3, 0.01), sleep=sleeps
    )  # type: ignore[arg-type]
    assert not result.ok and result.attempts == 3 and len(sleeps) == 2


def test_email_arrives_and_a_temporary_refusal_is_retried(smtp_receiver: SmtpReceiver) -> None:
    smtp_receiver.fail_first = 1
    channel = EmailChannel(
        "soc", "127.0.0.1", "tianmu@example.org", ("soc@example.org",), port=smtp_receiver.port
    )
    sleeps = _Sleeps()
    result = deliver(channel, _incident_alert(), RetryPolicy(3, 0.01), sleep=sleeps)  # type: ignore[arg-type]
    assert result.ok and result.attempts == 2 and sleeps == [0.01]
    [(sender, recipients, content)] = smtp_receiver.messages
    assert sender == "tianmu@example.org" and recipients == ["soc@example.org"]
    message = email.message_from_bytes(content)
    assert message["Subject"] == "[Tianmu] CRITICAL: Persistence on web01 from 203.0.113.45"
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "stage: persistence" in body and "sources: 203.0.113.45" in body


def test_rules_filter_by_severity_kind_asset_and_tag() -> None:
    incidents = correlate(scenario_findings())
    rules = [
        AlertRule("crit", on=("incident",), min_severity=Severity.CRITICAL),
        AlertRule("db", on=("incident",), min_severity=Severity.LOW, assets=("db*",)),
        AlertRule("internal", on=("incident",), min_severity=Severity.LOW, tags=("internal",)),
        AlertRule("malware", on=("incident",), min_severity=Severity.LOW, kinds=(FindingKind.MALWARE,)),
    ]
    alerts = pending_alerts(rules, incidents, assets=[WEB01, DB01])
    got = sorted((a.rule, a.title) for a in alerts)
    assert got == [
        ("crit", "Persistence on web01 from 203.0.113.45"),
        ("db", "Credential Access on db01 from 192.0.2.77"),
        ("internal", "Credential Access on db01 from 192.0.2.77"),
        ("malware", "Persistence on web01 from 203.0.113.45"),
    ]


def test_one_alert_per_state_change_and_kev_once(store: Store, http_receiver: HttpReceiver) -> None:
    findings = scenario_findings()
    kev = Finding(
        FindingKind.VULNERABILITY,
        "CVE-2024-6387",
        "OpenSSH regreSSHion",
        Severity.HIGH,
        WEB01,
        data={"kev": True},
    )
    config = AlertConfig(
        channels={"hook": WebhookChannel("hook", http_receiver.url, SECRET)},
        rules=[AlertRule("ops", on=("incident", "kev"), min_severity=Severity.HIGH)],
        retry=RetryPolicy(2, 0.01),
    )
    incidents = correlate(findings[:3])  # intel + brute force + login: initial access, high
    first = run_alerts(store, "default", config, incidents=incidents, findings=[kev])
    assert [r.ok for r in first] == [True, True]
    assert run_alerts(store, "default", config, incidents=incidents, findings=[kev]) == []
    # New findings move the incident to persistence: one more alert, for the incident only.
    incidents = correlate(findings[:4])
    again = run_alerts(store, "default", config, incidents=incidents, findings=[kev])
    assert [json.loads(body)["state"] for _, body in http_receiver.requests] == [
        "open|initial-access|high",
        "kev",
        "open|persistence|high",
    ]
    assert len(again) == 1
    incidents[0].status = TriageStatus.ACKNOWLEDGED
    assert len(run_alerts(store, "default", config, incidents=incidents)) == 1
    # A failed delivery is not recorded: the next run tries again.
    http_receiver.fail_first, http_receiver.fail_status = 100, 503
    incidents[0].status = TriageStatus.RESOLVED
    assert [
        r.ok for r in run_alerts(store, "default", config, incidents=incidents, sleep=lambda _s: None)
    ] == [False]
    http_receiver.fail_first = 0
    http_receiver.requests.clear()
    assert [r.ok for r in run_alerts(store, "default", config, incidents=incidents)] == [True]


def test_config_file_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(
        """
[channels.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret_env = "HOOK_SECRET"

[channels.siem]
type = "syslog"
host = "127.0.0.1"
port = 6514
transport = "tcp"

[channels.soc]
type = "email"
host = "127.0.0.1"
from = "tianmu@example.org"
to = ["soc@example.org"]

[retry]
attempts = 5
backoff = 2

[[rules]]
name = "critical incidents"
on = ["incident"]
min_severity = "critical"
channels = ["hook", "siem"]

[[rules]]
name = "kev"
on = ["kev"]
min_severity = "low"
tags = ["prod"]
"""
    )
    config = load_config(path, environ={"HOOK_SECRET": "abc"})
    assert set(config.channels) == {"hook", "siem", "soc"}
    assert config.retry.delays() == [2.0, 4.0, 8.0, 16.0]
    assert config.rules[0].channels == ("hook", "siem") and config.rules[1].tags == ("prod",)
    with pytest.raises(InputError, match="HOOK_SECRET is not set"):
        load_config(path, environ={})
    path.write_text('[channels.x]\ntype = "pager"\n')
    with pytest.raises(
        InputError, match=r"alerts.toml: \[channels.x\]: `type` must be webhook, syslog or email"
    ):
        load_config(path)
    path.write_text('[channels.x]\ntype = "syslog"\nhost = "h"\n[[rules]]\nname = "r"\nchannels = ["y"]\n')
    with pytest.raises(InputError, match=r"\[\[rules\]\] #1: unknown channel\(s\) y"):
        load_config(path)
    path.write_text("[channels\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(path)


def test_the_situation_step_of_assess_alerts_once(
    sqlite_store: Store, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from tianmu.core.models import Assessment
    from tianmu.situation import update_situation
    from tianmu.store.repository import save_assessment

    home = tmp_path / "home"
    home.mkdir()
    (home / "alerts.toml").write_text(
        f'[channels.hook]\ntype = "webhook"\nurl = "{http_receiver.url}"\nsecret = "k"\n'
        '[[rules]]\nname = "crit"\non = ["incident"]\nmin_severity = "critical"\n'
    )
    now = datetime(2026, 11, 24, tzinfo=UTC)
    for _ in range(2):  # the same assessment twice: the second one changes nothing, so no second alert
        findings = [f for f in scenario_findings() if f.asset.name == "web01"]
        assessment = Assessment("/srv/web01", WEB01, now, now, findings=findings)
        saved = save_assessment(sqlite_store, assessment)
        update_situation(sqlite_store, assessment, assessment_id=saved.assessment_id, home=home)
    assert [json.loads(body)["title"] for _, body in http_receiver.requests] == [
        "Persistence on web01 from 203.0.113.45"
    ]
    (home / "alerts.toml").write_text("[channels\n")
    update_situation(sqlite_store, assessment, assessment_id=saved.assessment_id, home=home)
    assert any(note.startswith("alerts: not sent:") and "not valid TOML" in note for note in assessment.notes)
