"""Every state change made at the command line reaches the audit chain, by the actor "cli:<OS user>":
triage, incidents, knowledge-base and intel imports, quarantine and restore, saved runs, evidence
exports, alert runs, jobs — and no command exists that is neither audited nor known to change nothing
(the command walk below fails for a new command until it is put in one of the tables).

Each state-changing command is run for real on a data directory built here, and must leave its entry
at the end of the chain; the network is only ever 127.0.0.1 (a web server and a DNS responder started by
the tests; `kb update`, which would download, is given a stand-in for the download)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest
import typer.main
from typer.testing import CliRunner

from tianmu.cli import kb as cli_kb
from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.cli.session import CliSession, os_user
from tianmu.core.config import Settings
from tianmu.core.models import Assessment, Asset, AssetKind, Finding, FindingKind, Severity
from tianmu.identity import IdentityService, Role, cli_principal
from tianmu.identity.models import AuditEntry
from tianmu.intel.kb import import_feed
from tianmu.jobs import queue
from tianmu.malware.quarantine import quarantine_file
from tianmu.situation import load_incidents, update_incidents
from tianmu.store.database import open_store
from tianmu.store.knowledge import ImportReport
from tianmu.store.repository import list_findings, save_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T0 = datetime(2026, 11, 20, 3, 12, tzinfo=UTC)
ATTACKER = "203.0.113.45"
# Built here, never stored in the repository: the antivirus test string, in two halves.
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR" + "-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()

# Commands that change nothing a person would audit, each with why.
READ_ONLY = {
    "version": "prints the version",
    "findings list": "reads",
    "incidents list": "reads",
    "incidents show": "reads",
    "trace": "reads",
    "risk": "reads",
    "evidence verify": "checks a bundle file",
    "alerts test": "sends a test alert; nothing is stored",
    "kb status": "reads",
    "intel lookup": "reads",
    "intel serve": "serves TAXII; each pull is the client's",
    "malware list": "reads the quarantine index",
    "jobs kinds": "reads",
    "jobs list": "reads",
    "jobs show": "reads",
    "rules status": "reads",
    "services": "reads",
    "scans": "reads",
    "inventory": "never saves",
    "vulns": "never saves",
    "audit list": "reads the chain",
    "audit verify": "checks the chain",
    "audit checkpoint": "signs the chain's own tip: upkeep of the chain, not a change it records",
    "login": "signs in to a remote server; that server audits the session",
    "serve": "runs the service, whose routes audit (tests/service/test_hostile_audit_trail.py)",
    "worker": "runs jobs, audited when submitted",
    "crypto sm3": "local files only, no platform state",
    "crypto sm4 keygen": "local files only",
    "crypto sm4 encrypt": "local files only",
    "crypto sm4 decrypt": "local files only",
    "crypto sm2 keygen": "local files only",
    "crypto sm2 sign": "local files only",
    "crypto sm2 verify": "local files only",
    "crypto sm2 encrypt": "local files only",
    "crypto sm2 decrypt": "local files only",
    "crypto cert show": "local files only",
    "crypto cert verify": "local files only",
}
# Identity's changes are audited inside `tianmu.identity` (tests/identity); the CLI acts for them as
# `CliSession.principal`, so they too are by "cli:<OS user>" (two of them are run below to show it).
AUDITED_BY_IDENTITY = {
    "tenant add",
    "tenant policy",
    "tenant ca-init",
    "tenant ca-trust",
    "tenant list",
    "user add",
    "user list",
    "user passwd",
    "user role",
    "user disable",
    "user unlock",
    "user delete",
    "user totp",
    "user cert",
    "user passkeys",
    "user revoke-cert",
}


@dataclass
class Home:
    path: Path
    env: dict[str, str]
    tmp: Path

    def store(self) -> Any:
        return open_store(Settings.from_env(self.env))

    def entries(self) -> list[AuditEntry]:
        with self.store() as store:
            return CliSession(self.env).identity(store).audit.entries(limit=1000)


def _detection(asset: Asset, rule: str, minute: int) -> Finding:
    return Finding(
        kind=FindingKind.DETECTION,
        rule_id=rule,
        title=f"{rule} from {ATTACKER}",
        severity=Severity.HIGH,
        asset=asset,
        evidence={
            "path": "var/log/auth.log",
            "line": minute,
            "time": (T0 + timedelta(minutes=minute)).isoformat(),
            "entities": {"ip": [ATTACKER], "user": ["root"]},
            "fingerprint_extra": ATTACKER,
        },
        techniques=("T1110",),
    )


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A data directory with a tenant, a user, two stored detections and the incident they make."""
    path = tmp_path / "home"
    env = {"TIANMU_HOME": str(path), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    made = Home(path, env, tmp_path)
    web01 = Asset("web01", AssetKind.HOST, tenant="default", criticality=4)
    findings = [_detection(web01, "ssh-bruteforce", 1), _detection(web01, "ssh-login-after-failures", 3)]
    with made.store() as store:
        identity = CliSession(env).identity(store)
        identity.create_tenant("default", "Default")
        identity.create_user(
            cli_principal("default"), "default", "alice", Role.ADMIN, password="correct horse battery"
        )
        save_assessment(store, Assessment("web01", web01, T0, T0, findings=findings))
        update_incidents(store, "default", [r.finding for r in list_findings(store, "default")])
    return made


@pytest.fixture
def web_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>shop</body></html>")

        do_HEAD = do_GET

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def dns_server() -> Iterator[int]:
    """A resolver on 127.0.0.1 over UDP for a domain that has no record at all (an empty answer to every
    question): every mail check finds its record missing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            answer.flags |= dns.flags.RA
            answer.set_rcode(dns.rcode.NOERROR)
            sock.sendto(answer.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def _incident(home: Home) -> str:
    with home.store() as store:
        return load_incidents(store, "default")[0].id


def _fingerprint(home: Home) -> str:
    with home.store() as store:
        return list_findings(store, "default")[0].finding.fingerprint


def _sample(home: Home) -> Path:
    folder = home.tmp / "uploads"
    folder.mkdir(exist_ok=True)
    sample = folder / "eicar.com"
    sample.write_bytes(EICAR)
    return sample


def _quarantined(home: Home) -> str:
    return quarantine_file(home.path, _sample(home), reason="test").id


def _intel_log(home: Home) -> Path:
    with home.store() as store:
        import_feed(store, FIXTURES / "intel" / "plain.txt", home=home.path, fmt="list")
    log = home.tmp / "access.log"
    # 198.51.100.23 is in the feed: the run stores an intel finding.
    log.write_text('198.51.100.23 - - [20/Nov/2026:03:12:05 +0000] "GET / HTTP/1.1" 200 12 "-" "curl"\n')
    return log


def _nmap_xml(home: Home) -> Path:
    xml = home.tmp / "scan.xml"
    xml.write_text(
        '<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap -sV 10.0.0.5" start="1763607125">'
        '<host><status state="up"/><address addr="10.0.0.5" addrtype="ipv4"/><ports>'
        '<port protocol="tcp" portid="22"><state state="open"/>'
        '<service name="ssh" product="OpenSSH" version="8.2p1"/></port>'
        "</ports></host></nmaprun>"
    )
    return xml


def _project(home: Home) -> Path:
    target = home.tmp / "app"
    target.mkdir()
    (target / "requirements.txt").write_text("django==3.2.0\n")
    return target


def _logs(home: Home) -> Path:
    logs = home.tmp / "logs"
    logs.mkdir()
    (logs / "auth.log").write_text(
        f"Nov 20 03:12:05 web01 sshd[2211]: Failed password for root from {ATTACKER} port 50122 ssh2\n"
    )
    return logs


def _alerts(home: Home) -> list[str]:
    # A receiver that is not there (a closed port on 127.0.0.1): the run fails, and is still audited.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (home.path / "alerts.toml").write_text(
        f'[channels.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:{port}/hook"\nsecret = "k"\n'
        '[[rules]]\nname = "all"\non = ["incident"]\nmin_severity = "low"\n[retry]\nattempts = 1\n'
    )
    return ["alerts", "run"]


def _queued_job(home: Home) -> str:
    with home.store() as store:
        job, _ = queue.submit(store, "reassess", {}, tenant="default")
    return job.id


Args = Callable[[Home, dict[str, Any]], list[str]]

# Every state-changing command: how to run it here, and the action it must leave at the chain's end.
AUDITED: dict[str, tuple[Args, str]] = {
    "assess": (lambda h, _f: ["assess", str(_project(h))], "assess.run"),
    "detect": (lambda h, _f: ["detect", str(_logs(h))], "detect.run"),
    "findings triage": (
        lambda h, _f: ["findings", "triage", _fingerprint(h), "false_positive"],
        "finding.triage",
    ),
    "incidents assign": (lambda h, _f: ["incidents", "assign", _incident(h), "bob"], "incident.update"),
    "incidents status": (lambda h, _f: ["incidents", "status", _incident(h), "resolved"], "incident.update"),
    "incidents correlate": (lambda h, _f: ["incidents", "correlate", "--rebuild"], "incident.correlate"),
    "evidence export": (
        lambda h, _f: ["evidence", "export", _incident(h), "-o", str(h.tmp / "bundle.zip")],
        "evidence.export",
    ),
    "alerts run": (lambda h, _f: _alerts(h), "alerts.run"),
    "kb import": (lambda h, _f: ["kb", "import", str(FIXTURES / "cli" / "kb")], "kb.import"),
    "kb update": (lambda h, _f: ["kb", "update", "--source", "kev"], "kb.update"),
    "intel import": (
        lambda h, _f: ["intel", "import", str(FIXTURES / "intel" / "plain.txt"), "--format", "list"],
        "intel.import",
    ),
    "intel match": (lambda h, _f: ["intel", "match", str(_intel_log(h))], "intel.match"),
    "malware scan": (lambda h, _f: ["malware", "scan", "--save", "-j", "1", str(_sample(h))], "malware.scan"),
    "malware quarantine": (lambda h, _f: ["malware", "quarantine", str(_sample(h))], "malware.quarantine"),
    "malware restore": (
        lambda h, _f: ["malware", "restore", _quarantined(h), "--to", str(h.tmp / "back.com")],
        "malware.restore",
    ),
    "discover": (lambda h, _f: ["discover", "--nmap-xml", str(_nmap_xml(h))], "discover.run"),
    "web": (lambda h, f: ["web", f["web"], "--no-builtin-checks", "--rate", "100"], "web.check"),
    "domain": (
        lambda h, f: [
            "domain",
            "shop.test",
            "--nameserver",
            "127.0.0.1",
            "--port",
            str(f["dns"]),
            "--no-axfr",
        ],
        "domain.check",
    ),
    "jobs submit": (lambda h, _f: ["jobs", "submit", "reassess", "--runner", "local"], "job.submit"),
    "jobs cancel": (lambda h, _f: ["jobs", "cancel", _queued_job(h)], "job.cancel"),
    "user token": (lambda h, _f: ["user", "token", "default", "alice", "--name", "ci"], "token.issue"),
}


def _commands() -> set[str]:
    def walk(command: Any, prefix: list[str]) -> Iterator[str]:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*prefix, name])
        else:
            yield " ".join(prefix)

    return set(walk(typer.main.get_command(app), []))


def test_every_command_is_audited_or_known_to_change_nothing() -> None:
    tables = (set(READ_ONLY), AUDITED_BY_IDENTITY, set(AUDITED))
    unclassified = _commands() - set().union(*tables)
    assert unclassified == set(), "put each in AUDITED (and make it record) or READ_ONLY (and say why)"
    assert sum(len(t) for t in tables) == len(set().union(*tables))  # none in two tables
    assert set().union(*tables) <= _commands()  # no stale names


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(out_console, "width", 200)

    def no_download(kb: Any, sources: Any) -> list[ImportReport]:
        # `kb update` would reach the internet: what a download that changed nothing reports.
        return [ImportReport(s, s, f"https://example.invalid/{s}", "unchanged") for s in sources]

    monkeypatch.setattr(cli_kb, "update_sources", no_download)
    return CliRunner()


@pytest.mark.parametrize("command", sorted(AUDITED))
def test_each_state_changing_command_leaves_its_entry(
    command: str, home: Home, runner: CliRunner, web_server: str, dns_server: int
) -> None:
    make_args, action = AUDITED[command]
    args = make_args(home, {"web": web_server, "dns": dns_server})
    before = len(home.entries())
    result = runner.invoke(app, args, env=home.env)
    assert result.exit_code in (0, 1), result.output  # 1: something found or not delivered
    entries = home.entries()
    assert len(entries) > before, f"`tianmu {command}` changed state without an audit entry"
    last = entries[0]
    assert (last.action, last.actor) == (action, f"cli:{os_user()}")
    assert last.details["via"] == "cli" and last.tenant == "default"


def test_identity_commands_act_as_the_os_user(home: Home, runner: CliRunner) -> None:
    for args in (["tenant", "add", "globex"], ["user", "role", "default", "alice", "viewer"]):
        result = runner.invoke(app, args, env=home.env)
        assert result.exit_code == 0, result.output
        assert home.entries()[0].actor == f"cli:{os_user()}"
    with home.store() as store:
        identity: IdentityService = CliSession(home.env).identity(store)
        assert identity.audit.verify().ok
