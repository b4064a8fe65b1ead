"""Alerts: channels against in-memory twins (what is sent, what a failure means, retries on a manual
clock), deduplication, configuration errors; and each channel end to end against a real local receiver
on 127.0.0.1 (webhook, syslog over UDP and TCP, SMTP)."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import re
import smtplib
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tianmu.core.clock import ManualClock
from tianmu.core.errors import InputError
from tianmu.core.models import Assessment, Finding, FindingKind, Severity, TriageStatus
from tianmu.situation import correlate, posture_history, update_situation
from tianmu.situation.alerts import (
    Alert,
    AlertConfig,
    AlertRule,
    AlertTransports,
    EmailChannel,
    MemoryMailer,
    MemorySyslog,
    MemoryWebhook,
    RetryPolicy,
    SyslogChannel,
    WebhookChannel,
    deliver,
    load_config,
    pending_alerts,
    run_alerts,
)
from tianmu.store import Store
from tianmu.store.repository import save_assessment

from .conftest import HttpReceiver, SmtpReceiver, SyslogReceiver
from .scenario import DB01, WEB01, scenario_findings

SECRET = b"s3cret-shared-with-the-receiver"
RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<host>\S+) tianmu (?P<pid>\d+) "
    rb"(?P<msgid>\S+) \[tianmu@32473 (?P<sd>[^\]]*)\] \xef\xbb\xbf(?P<msg>.*)$",
    re.DOTALL,
)


def _incident_alert() -> Alert:
    incidents = correlate(scenario_findings())
    [alert] = pending_alerts(
        [AlertRule("intrusions", on=("incident",), min_severity=Severity.CRITICAL)], incidents
    )
    return alert


def _hook(transport: httpx.BaseTransport, clock: ManualClock | None = None) -> WebhookChannel:
    return WebhookChannel(
        "hook", "https://soc.example/hook", SECRET, transport=transport, clock=clock or ManualClock()
    )


# --- webhook --------------------------------------------------------------------------------------------


def test_webhook_is_json_signed_with_hmac_at_the_clocks_time() -> None:
    receiver, clock = MemoryWebhook(), ManualClock(datetime(2026, 11, 24, 8, 30, tzinfo=UTC))
    result = deliver(_hook(receiver, clock), _incident_alert())
    assert result.ok and result.attempts == 1
    [request] = receiver.requests
    assert request.method == "POST" and str(request.url) == "https://soc.example/hook"
    assert request.headers["x-tianmu-timestamp"] == str(int(clock.now().timestamp()))
    expected = hmac.new(
        SECRET, request.headers["x-tianmu-timestamp"].encode() + b"." + request.content, hashlib.sha256
    )
    assert request.headers["x-tianmu-signature"] == f"sha256={expected.hexdigest()}"
    payload = json.loads(request.content)
    assert payload["state"] == "open|persistence|critical" and payload["findings"] == 5


def test_webhook_retries_with_backoff_until_the_receiver_recovers() -> None:
    receiver, clock = MemoryWebhook([503, httpx.ConnectError("connection refused")]), ManualClock()
    policy = RetryPolicy(attempts=4, backoff=0.5, factor=2.0)
    result = deliver(_hook(receiver, clock), _incident_alert(), policy, clock=clock)
    assert result.ok and result.attempts == 3 and clock.slept == [0.5, 1.0]
    assert len(receiver.requests) == 3
    ids = {request.headers["x-tianmu-delivery"] for request in receiver.requests}
    assert len(ids) == 1  # the receiver can tell a retry from a new alert
    # The second attempt was signed 0.5 s later than the first: each attempt is stamped when it is made.
    stamps = [float(request.headers["x-tianmu-timestamp"]) for request in receiver.requests]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("status", "transient"), [(400, False), (404, False), (408, True), (429, True), (503, True)]
)
def test_webhook_gives_up_on_permanent_errors_and_after_the_last_attempt(
    status: int, transient: bool
) -> None:
    receiver, clock = MemoryWebhook([status] * 10), ManualClock()
    result = deliver(_hook(receiver), _incident_alert(), RetryPolicy(attempts=3, backoff=0.01), clock=clock)
    assert not result.ok and f"HTTP {status}" in (result.error or "")
    if transient:
        assert result.attempts == 3 and clock.slept == [0.01, 0.02]
    else:
        assert result.attempts == 1 and clock.slept == []


def test_webhook_end_to_end_to_a_local_receiver(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_first = 1
    clock = ManualClock()
    channel = WebhookChannel("hook", http_receiver.url, SECRET)  # the real transport: httpx's own pool
    result = deliver(channel, _incident_alert(), RetryPolicy(3, 0.5), clock=clock)
    assert result.ok and result.attempts == 2 and clock.slept == [0.5]
    headers, body = http_receiver.requests[-1]
    expected = hmac.new(SECRET, headers["x-tianmu-timestamp"].encode() + b"." + body, hashlib.sha256)
    assert headers["x-tianmu-signature"] == f"sha256={expected.hexdigest()}"
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["type"] == "incident" and payload["stage"] == "persistence"
    assert payload["title"] == "Persistence on web01 from 203.0.113.45"
    assert payload["severity"] == "critical" and payload["findings"] == 5


# --- syslog ---------------------------------------------------------------------------------------------


def _check_rfc5424(message: bytes, stamp: bytes | None = None) -> None:
    match = RFC5424.match(message)
    assert match is not None, message
    assert int(match["pri"]) == 4 * 8 + 2  # facility auth (4), severity critical (2)
    assert match["host"] == b"tianmu-01" and match["msgid"] == b"incident"
    if stamp is not None:
        assert match["ts"] == stamp
    sd = dict(re.findall(rb'(\w+)="((?:[^"\\]|\\.)*)"', match["sd"]))
    assert sd[b"severity"] == b"critical" and sd[b"state"] == b"open|persistence|critical"
    assert sd[b"subject"].startswith(b"INC-")
    assert match["msg"].decode() == "Persistence on web01 from 203.0.113.45"


def test_syslog_message_is_rfc5424_and_socket_errors_are_retried() -> None:
    sender = MemorySyslog(failures=[ConnectionRefusedError(111, "Connection refused")])
    clock = ManualClock(datetime(2026, 11, 24, 8, 30, 0, 250000, tzinfo=UTC))
    channel = SyslogChannel(
        "siem", "siem.example", 6514, "tcp", hostname="tianmu-01", sender=sender, clock=clock
    )
    result = deliver(channel, _incident_alert(), RetryPolicy(3, 1.0), clock=clock)
    assert result.ok and result.attempts == 2 and clock.slept == [1.0]
    [(host, port, protocol, message)] = sender.sent
    assert (host, port, protocol) == ("siem.example", 6514, "tcp")
    _check_rfc5424(message, b"2026-11-24T08:30:01.250Z")  # stamped when sent, after the 1 s wait
    sender.failures = [OSError("network unreachable")] * 3
    failed = deliver(channel, _incident_alert(), RetryPolicy(3, 1.0), clock=clock)
    assert not failed.ok and failed.attempts == 3 and "syslog tcp://siem.example:6514" in (failed.error or "")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_syslog_end_to_end_to_a_local_receiver(
    transport: str, udp_syslog: SyslogReceiver, tcp_syslog: SyslogReceiver
) -> None:
    receiver = udp_syslog if transport == "udp" else tcp_syslog
    channel = SyslogChannel("siem", "127.0.0.1", receiver.port, transport, facility=4, hostname="tianmu-01")
    result = deliver(channel, _incident_alert())
    assert result.ok
    assert receiver.arrived.wait(5)
    [message] = receiver.messages
    _check_rfc5424(message)


def test_syslog_tcp_receiver_down_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = ManualClock()
    result = deliver(
        SyslogChannel("siem", "127.0.0.1", port, "tcp"), _incident_alert(), RetryPolicy(3, 0.01), clock=clock
    )
    assert not result.ok and result.attempts == 3 and len(clock.slept) == 2


# --- email ----------------------------------------------------------------------------------------------


def _mail(mailer: MemoryMailer) -> EmailChannel:
    return EmailChannel(
        "soc",
        "mx.example",
        "tianmu@example.org",
        ("soc@example.org",),
        port=587,
        starttls=True,
        mailer=mailer,
    )


def test_email_message_and_what_smtp_refusals_mean() -> None:
    mailer, clock = (
        MemoryMailer(failures=[smtplib.SMTPResponseException(451, b"try again later")]),
        ManualClock(),
    )
    result = deliver(_mail(mailer), _incident_alert(), RetryPolicy(3, 0.01), clock=clock)
    assert result.ok and result.attempts == 2 and clock.slept == [0.01]
    [(server, message)] = mailer.sent
    assert (server.host, server.port, server.starttls, server.ssl) == ("mx.example", 587, True, False)
    assert message["Subject"] == "[Tianmu] CRITICAL: Persistence on web01 from 203.0.113.45"
    assert message["To"] == "soc@example.org" and len(message["X-Tianmu-Delivery"]) == 32
    body = message.get_content()
    assert "stage: persistence" in body and "sources: 203.0.113.45" in body
    mailer.failures = [smtplib.SMTPResponseException(550, b"mailbox unavailable")]
    refused = deliver(_mail(mailer), _incident_alert(), RetryPolicy(3, 0.01), clock=clock)
    assert not refused.ok and refused.attempts == 1 and "550" in (refused.error or "")
    mailer.failures = [smtplib.SMTPRecipientsRefused({"soc@example.org": (450, b"greylisted")})]
    greylisted = deliver(_mail(mailer), _incident_alert(), RetryPolicy(3, 0.01), clock=clock)
    assert greylisted.ok and greylisted.attempts == 2


def test_email_end_to_end_to_a_local_receiver(smtp_receiver: SmtpReceiver) -> None:
    smtp_receiver.fail_first = 1
    channel = EmailChannel(
        "soc", "127.0.0.1", "tianmu@example.org", ("soc@example.org",), port=smtp_receiver.port
    )
    clock = ManualClock()
    result = deliver(channel, _incident_alert(), RetryPolicy(3, 0.01), clock=clock)
    assert result.ok and result.attempts == 2 and clock.slept == [0.01]
    [(sender, recipients, content)] = smtp_receiver.messages
    assert sender == "tianmu@example.org" and recipients == ["soc@example.org"]
    message = email.message_from_bytes(content)
    assert message["Subject"] == "[Tianmu] CRITICAL: Persistence on web01 from 203.0.113.45"
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "stage: persistence" in body and "sources: 203.0.113.45" in body


# --- rules, deduplication, configuration ----------------------------------------------------------------


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


def test_one_alert_per_state_change_and_kev_once(store: Store) -> None:
    findings = scenario_findings()
    kev = Finding(
        FindingKind.VULNERABILITY,
        "CVE-2024-6387",
        "OpenSSH regreSSHion",
        Severity.HIGH,
        WEB01,
        data={"kev": True},
    )
    receiver, clock = MemoryWebhook(), ManualClock()
    config = AlertConfig(
        channels={"hook": _hook(receiver, clock)},
        rules=[AlertRule("ops", on=("incident", "kev"), min_severity=Severity.HIGH)],
        retry=RetryPolicy(2, 0.01),
        clock=clock,
    )
    incidents = correlate(findings[:3])  # intel + brute force + login: initial access, high
    first = run_alerts(store, "default", config, incidents=incidents, findings=[kev])
    assert [r.ok for r in first] == [True, True]
    assert run_alerts(store, "default", config, incidents=incidents, findings=[kev]) == []
    # New findings move the incident to persistence: one more alert, for the incident only.
    incidents = correlate(findings[:4])
    again = run_alerts(store, "default", config, incidents=incidents, findings=[kev])
    assert [json.loads(request.content)["state"] for request in receiver.requests] == [
        "open|initial-access|high",
        "kev",
        "open|persistence|high",
    ]
    assert len(again) == 1
    incidents[0].status = TriageStatus.ACKNOWLEDGED
    assert len(run_alerts(store, "default", config, incidents=incidents)) == 1
    # A failed delivery is not recorded: the next run tries again.
    receiver.replies = [503] * 100
    incidents[0].status = TriageStatus.RESOLVED
    assert [r.ok for r in run_alerts(store, "default", config, incidents=incidents)] == [False]
    assert clock.slept == [0.01]
    receiver.replies = []
    receiver.requests.clear()
    assert [r.ok for r in run_alerts(store, "default", config, incidents=incidents)] == [True]
    assert json.loads(receiver.requests[0].content)["state"].startswith("resolved|")


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
    hook, siem, soc, clock = MemoryWebhook(), MemorySyslog(), MemoryMailer(), ManualClock()
    twins = AlertTransports(http=hook, syslog=siem, mail=soc, clock=clock)
    wired = load_config(path, environ={"HOOK_SECRET": "abc"}, transports=twins)
    assert wired.clock is clock
    for name in ("hook", "siem", "soc"):
        assert deliver(wired.channels[name], _incident_alert(), clock=wired.clock).ok
    assert [str(r.url) for r in hook.requests] == ["http://127.0.0.1:9/hook"]
    assert [sent[:3] for sent in siem.sent] == [("127.0.0.1", 6514, "tcp")]
    assert [m["To"] for _, m in soc.sent] == ["soc@example.org"]
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


def test_the_situation_step_of_assess_alerts_once(sqlite_store: Store, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "alerts.toml").write_text(
        '[channels.hook]\ntype = "webhook"\nurl = "https://soc.example/hook"\nsecret = "k"\n'
        '[[rules]]\nname = "crit"\non = ["incident"]\nmin_severity = "critical"\n'
    )
    receiver = MemoryWebhook()
    now = datetime(2026, 11, 24, tzinfo=UTC)
    clock = ManualClock(now)
    transports = AlertTransports(http=receiver, clock=clock)
    for _ in range(2):  # the same assessment twice: the second one changes nothing, so no second alert
        findings = [f for f in scenario_findings() if f.asset.name == "web01"]
        assessment = Assessment("/srv/web01", WEB01, now, now, findings=findings)
        saved = save_assessment(sqlite_store, assessment)
        update_situation(
            sqlite_store,
            assessment,
            assessment_id=saved.assessment_id,
            home=home,
            alert_transports=transports,
            clock=clock,
        )
        clock.advance(3600)
    # Posture points are stamped by the clock given, an hour apart.
    assert [p.taken_at for p in posture_history(sqlite_store, "default")] == [now, now + timedelta(hours=1)]
    assert [json.loads(r.content)["title"] for r in receiver.requests] == [
        "Persistence on web01 from 203.0.113.45"
    ]
    assert not [n for n in assessment.notes if n.startswith("alerts:")]  # nothing new the second time
    (home / "alerts.toml").write_text("[channels\n")
    update_situation(sqlite_store, assessment, assessment_id=saved.assessment_id, home=home)
    assert any(note.startswith("alerts: not sent:") and "not valid TOML" in note for note in assessment.notes)
