"""The audit chain's tip goes out with every alert, over the real delivery paths to local receivers on
127.0.0.1: the webhook's signed JSON, syslog structured data (UDP and TCP) and an e-mail header. A
receiver that keeps the tips it is sent sees a wiped log as a tip that went back."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.config import Settings
from tianmu.core.models import Assessment
from tianmu.identity import IdentityService
from tianmu.identity.audittip import GENESIS, TIP_FILE
from tianmu.road.finish import FinishOptions, finish
from tianmu.situation.alerts import Alert, AuditTip
from tianmu.store.database import open_store
from tianmu.store.schema import identity_audit, identity_audit_checkpoints

from .conftest import HttpReceiver, SmtpReceiver, SyslogReceiver
from .scenario import WEB01, scenario_findings

AUDIT_SD = re.compile(rb'\[tianmu-audit@32473 seq="(\d+)" tip="([0-9a-f]{64})"\]')


def _alerts_toml(http: HttpReceiver, udp: SyslogReceiver, tcp: SyslogReceiver, smtp: SmtpReceiver) -> str:
    return f"""
[channels.hook]
type = "webhook"
url = "{http.url}"
secret = "k"

[channels.siem-udp]
type = "syslog"
host = "127.0.0.1"
port = {udp.port}

[channels.siem-tcp]
type = "syslog"
host = "127.0.0.1"
port = {tcp.port}
transport = "tcp"

[channels.soc]
type = "email"
host = "127.0.0.1"
port = {smtp.port}
from = "tianmu@example.org"
to = ["soc@example.org"]

[[rules]]
name = "crit"
on = ["incident"]
min_severity = "critical"
"""


def test_every_channel_carries_the_tip_and_a_wiped_log_shows_as_a_tip_gone_back(
    tmp_path: Path,
    http_receiver: HttpReceiver,
    udp_syslog: SyslogReceiver,
    tcp_syslog: SyslogReceiver,
    smtp_receiver: SmtpReceiver,
) -> None:
    home = tmp_path / "home"
    env = {"TIANMU_HOME": str(home), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    settings = Settings.from_env(env)
    (home / "alerts.toml").parent.mkdir(parents=True)
    (home / "alerts.toml").write_text(_alerts_toml(http_receiver, udp_syslog, tcp_syslog, smtp_receiver))
    with open_store(settings) as store:
        identity = IdentityService(store, home=home, kek=b"k" * 16)
        identity.create_tenant("default", "Default")
        identity.create_tenant("acme", "Acme")
        [last] = identity.audit.entries(limit=1)
        assert last.seq == 2
        now = datetime(2026, 11, 24, tzinfo=UTC)
        findings = [f for f in scenario_findings() if f.asset.name == "web01"]
        [assessment] = [Assessment("/srv/web01", WEB01, now, now, findings=findings)]
        finish(store, [assessment], FinishOptions(home=home))
        assert "alerts: 4 delivered, 0 failed" in assessment.notes, assessment.notes

        # The webhook: a field of the signed body.
        [(_headers, body)] = http_receiver.requests
        assert json.loads(body)["audit_tip"] == {"seq": 2, "hash": last.hash}
        # Syslog, both transports: its own structured-data element beside the alert's.
        for receiver in (udp_syslog, tcp_syslog):
            assert receiver.arrived.wait(5)
            [message] = receiver.messages
            match = AUDIT_SD.search(message)
            assert match is not None, message
            assert (int(match[1]), match[2].decode()) == (2, last.hash)
        # E-mail: a header, and the JSON in the body.
        [(_from, _to, content)] = smtp_receiver.messages
        mail = email.message_from_bytes(content, policy=email.policy.default)  # unfolds long headers
        assert str(mail["X-Tianmu-Audit-Tip"]).strip() == f"seq=2; tip={last.hash}"
        assert f'"hash": "{last.hash}"' in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]

        # Whoever holds the data directory wipes the log, its checkpoints and the tip file...
        with store.begin() as conn:
            conn.execute(delete(identity_audit_checkpoints))
            conn.execute(delete(identity_audit))
        (home / TIP_FILE).unlink()
    # ...but the next alert (here `tianmu alerts test`, the CLI's path) tells the receiver.
    result = CliRunner().invoke(app, ["alerts", "test", "--channel", "hook"], env=env)
    assert result.exit_code == 0, result.output
    sent = [json.loads(b)["audit_tip"] for _, b in http_receiver.requests]
    assert sent == [{"seq": 2, "hash": last.hash}, {"seq": 0, "hash": GENESIS}]
    assert sent[1]["seq"] < sent[0]["seq"]  # the receiver's check: the chain went back


@pytest.mark.parametrize("forged", ["abc\r\nBcc: victim@example.org", 'x" injected="1', "A" * 64])
def test_a_forged_tip_file_cannot_inject_into_headers_or_syslog(forged: str) -> None:
    alert = Alert("r", "INC-1", "open", scenario_findings()[0].severity, "t", "default", {"type": "x"})
    stamped = alert.with_audit_tip(lambda: (7, forged))
    assert stamped.audit_tip == AuditTip(7, "invalid")
