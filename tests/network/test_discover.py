"""`discover` end to end on 127.0.0.1: services in the store, re-scan diffs, findings, the audit trail,
the JSON shape of `tianmu discover --json`, and the nmap engine. Runs that check vulnerabilities or
stored findings take the road (`run_discover`): the engine alone neither matches nor saves findings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from network.servers import Certs, Page, Site, free_port, serve_banner, serve_http
from network.tests_support import assert_situation_moved, cli_env, home_store
from tianmu.assets.network.engine import DiscoverOptions, discover
from tianmu.assets.network.inventory import list_services
from tianmu.assets.network.nmap import cpe22_to_23, nmap_available, parse_nmap_xml
from tianmu.assets.network.probes import ProbeOptions
from tianmu.assets.network.results import DiscoveryResult
from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.core.errors import InputError
from tianmu.network.audit import list_scans
from tianmu.network.targets import TargetError
from tianmu.road.knowledge import import_any
from tianmu.road.network import run_discover
from tianmu.situation import load_incidents, posture_history
from tianmu.store import Store
from tianmu.store.knowledge import KbContext
from tianmu.store.repository import list_findings
from tianmu.store.schema import assets, scan_audit

DATA = Path(__file__).parent / "data"
FAST = ProbeOptions(timeout=2.0, banner_wait=0.5, tls_versions=False)


@pytest.fixture
def lab(certs: Certs) -> Iterator[dict[str, int]]:
    """An SSH banner, an HTTPS site with an expired certificate and a plain HTTP site."""
    with ExitStack() as stack:
        ports = {
            "ssh": stack.enter_context(serve_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")),
            "https": stack.enter_context(
                serve_http(
                    Site(pages={"/": Page(200, [("Server", "nginx/1.22.1")], b"")}), cert=certs.expired
                )
            ),
            "http": stack.enter_context(
                serve_http(Site(pages={"/": Page(200, [("Server", "Apache/2.4.57")], b"")}))
            ),
        }
        yield ports


def _options(ports: list[int], **extra: object) -> DiscoverOptions:
    spec = ",".join(str(p) for p in ports)
    return DiscoverOptions(ports=spec, probe=FAST, timeout=1.0, **extra)  # type: ignore[arg-type]


def test_scan_store_findings_and_audit(store: Store, lab: dict[str, int], tmp_path: Path) -> None:
    import_any(KbContext(store=store, home=tmp_path), DATA / "nvd-sample.json")
    closed = free_port()
    result = run_discover(store, ["127.0.0.1"], _options([*lab.values(), closed]))
    [host] = result.hosts
    by_port = {s.port: s for s in host.services}
    assert set(by_port) == set(lab.values())
    ssh = by_port[lab["ssh"]]
    assert (ssh.service, ssh.product, ssh.version, ssh.cpe) == (
        "ssh",
        "OpenSSH",
        "9.2p1",
        "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*",
    )
    https = by_port[lab["https"]]
    assert https.service == "https" and https.tls is not None and https.tls["certificate"]["expired"]
    rules = {(f.rule_id, f.evidence["port"]) for f in result.findings}
    assert ("tls.certificate.expired", lab["https"]) in rules
    assert ("CVE-2098-0001", lab["ssh"]) in rules  # OpenSSH 9.2p1 by CPE from the hand-made NVD file
    assert ("CVE-2098-0004", lab["https"]) in rules  # nginx 1.22.1, with the platform named as a condition
    assert ("CVE-2098-0006", lab["http"]) in rules  # Apache 2.4.57
    assert not any(f.rule_id == "network.port.new" for f in result.findings)  # the first scan is the baseline
    vuln = next(f for f in result.findings if f.rule_id == "CVE-2098-0001")
    assert vuln.kind.value == "vulnerability" and vuln.severity.value == "critical"
    assert vuln.evidence["entities"] == {"ip": ["127.0.0.1"]}
    assert vuln.evidence["fingerprint_extra"] == f"127.0.0.1:{lab['ssh']}/tcp"
    stored = {s.service.port: s for s in list_services(store, "default")}
    assert set(stored) == set(lab.values()) and stored[lab["ssh"]].service.product == "OpenSSH"
    [audit] = list_scans(store, "default")
    assert (audit.action, audit.targets, audit.authorized, audit.engine) == (
        "discover",
        ["127.0.0.1"],
        False,
        "builtin",
    )
    assert audit.actor and audit.finished is not None and audit.summary["open_ports"] == 3


def test_rescan_diff(store: Store, certs: Certs) -> None:
    memcached = lambda line: b"VERSION 1.6.21\r\n" if line.strip() == b"version" else None  # noqa: E731
    with (
        serve_banner(b"SSH-2.0-OpenSSH_9.6\r\n") as stays,
        serve_banner(b"220 (vsFTPd 3.0.3)\r\n") as goes,
        serve_banner(b"", memcached) as cache,
    ):
        later = free_port()
        first = run_discover(store, ["127.0.0.1"], _options([stays, goes, cache, later]))
        assert {s.port for s in first.hosts[0].services} == {stays, goes, cache}
        assert any(f.rule_id == "network.memcached.exposed" for f in first.findings)
    with serve_banner(b"SSH-2.0-OpenSSH_9.6\r\n") as stays_again:
        # The same port number cannot be taken back reliably; scan the old ports and the new one.
        result = run_discover(store, ["127.0.0.1"], _options([stays, goes, cache, later, stays_again]))
    diff = result.hosts[0].diff
    assert diff is not None and not diff.first_scan
    assert diff.appeared == [stays_again]
    assert sorted(diff.disappeared) == sorted([stays, goes, cache])
    new = [f for f in result.findings if f.rule_id == "network.port.new"]
    assert [f.evidence["port"] for f in new] == [stays_again]
    assert new[0].kind.value == "exposure"
    closed = {s.service.port: s for s in list_services(store, "default", state="closed")}
    assert set(closed) == {stays, goes, cache} and all(s.closed_at is not None for s in closed.values())
    assert closed[cache].service.product == "memcached"  # what was known about it is kept
    statuses = {s.finding.rule_id: s.finding.status.value for s in list_findings(store, "default")}
    assert statuses["network.memcached.exposed"] == "resolved"  # the port closed: the exposure is gone
    assert statuses["network.port.new"] == "open"
    assert len(list_scans(store, "default")) == 2


def test_ports_only_rescan_keeps_fingerprints(store: Store) -> None:
    with serve_banner(b"SSH-2.0-OpenSSH_9.6\r\n") as port:
        discover(store, ["127.0.0.1"], _options([port]))
        discover(store, ["127.0.0.1"], DiscoverOptions(ports=str(port), fingerprint=False, timeout=1.0))
    [stored] = list_services(store, "default")
    assert (stored.service.service, stored.service.product, stored.service.version) == (
        "ssh",
        "OpenSSH",
        "9.6",
    )


def test_silent_addresses_are_not_assets(store: Store) -> None:
    with serve_banner(b"SSH-2.0-OpenSSH_9.6\r\n") as port:
        run_discover(store, ["127.0.0.1-3"], _options([port]))
    with store.connect() as conn:
        names = [r.name for r in conn.execute(select(assets.c.name)).all()]
    assert names == ["127.0.0.1"]


def test_refused_before_any_packet(store: Store) -> None:
    with pytest.raises(TargetError, match="--i-am-authorized"):
        discover(store, ["127.0.0.1", "8.8.8.8"], _options([80]))
    with store.connect() as conn:
        assert conn.execute(select(scan_audit)).all() == []
    with pytest.raises(InputError):
        discover(store, ["127.0.0.1"], DiscoverOptions(ports="0"))


def test_cli_json_shape(lab: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    env = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    ports = ",".join(str(p) for p in lab.values())
    result = CliRunner().invoke(
        app, ["discover", "localhost", "-p", ports, "--json", "--timeout", "1"], env=env
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"hosts", "findings"}
    [host] = [h for h in data["hosts"] if h["address"] == "127.0.0.1"]
    assert set(host) == {"address", "hostname", "services"} and host["hostname"] == "localhost"
    for service in host["services"]:
        assert set(service) == {"port", "transport", "service", "product", "version", "cpe", "tls", "banner"}
    https = next(s for s in host["services"] if s["port"] == lab["https"])
    assert https["tls"]["certificate"]["expired"] is True
    assert any(f["id"] == "tls.certificate.expired" for f in data["findings"])
    assert all(f["evidence"]["entities"]["host"] == ["localhost"] for f in data["findings"])
    services = CliRunner().invoke(app, ["services", "--json"], env=env)
    assert services.exit_code == 0, services.output
    assert {s["port"] for s in json.loads(services.stdout)} >= set(lab.values())
    scans = CliRunner().invoke(app, ["scans", "--json"], env=env)
    [scan] = json.loads(scans.stdout)
    assert (scan["action"], scan["targets"], scan["authorized"]) == ("discover", ["localhost"], False)
    assert CliRunner().invoke(app, ["services"], env=env).exit_code == 0
    assert CliRunner().invoke(app, ["services", "--state", "gone"], env=env).exit_code == 2
    refused = CliRunner().invoke(app, ["discover", "8.8.8.8", "-p", "80"], env=env)
    assert refused.exit_code == 2 and "--i-am-authorized" in refused.output
    failing = CliRunner().invoke(app, ["discover", "127.0.0.1", "-p", ports, "--fail-on", "high"], env=env)
    assert failing.exit_code == 1, failing.output


def test_cli_updates_the_situation(lab: dict[str, int], tmp_path: Path) -> None:
    """`tianmu discover` finishes like `assess`: the findings are stored and the tenant's risk moves."""
    home = tmp_path / "home"
    store = home_store(home)
    try:
        assert posture_history(store, "default") == [] and load_incidents(store, "default") == []
        ports = ",".join(str(p) for p in lab.values())
        result = CliRunner().invoke(
            app, ["discover", "127.0.0.1", "-p", ports, "--timeout", "1"], env=cli_env(home)
        )
        assert result.exit_code == 0, result.output
        assert_situation_moved(store, {"tls.certificate.expired"})
    finally:
        store.close()


def test_nmap_xml() -> None:
    [host] = parse_nmap_xml((DATA / "nmap-sample.xml").read_text(), "nmap-sample.xml")
    assert (host.address, host.hostname) == ("127.0.0.1", "localhost")
    open_ports = {p.port: p for p in host.ports if p.state == "open"}
    assert set(open_ports) == {22, 5432, 6379, 8443}
    assert open_ports[22].cpe == "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*"
    assert open_ports[8443].service == "https"  # http over nmap's ssl tunnel
    assert cpe22_to_23("cpe:/a:postgresql:postgresql") == "cpe:2.3:a:postgresql:postgresql:*:*:*:*:*:*:*:*"
    with pytest.raises(InputError, match=r"nmap-sample\.xml"):
        parse_nmap_xml("<nmaprun><host>", "nmap-sample.xml")


@pytest.mark.skipif(nmap_available() is None, reason="nmap is not installed")
def test_nmap_engine(store: Store) -> None:
    with serve_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n") as port:
        result = discover(
            store, ["127.0.0.1"], DiscoverOptions(ports=str(port), engine="nmap", fingerprint=True)
        )
    [svc] = result.hosts[0].services
    assert (svc.port, svc.service, svc.product) == (port, "ssh", "OpenSSH")
    assert svc.cpe == "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*"
    assert list_scans(store, "default")[0].engine == "nmap"


def test_import_nmap_xml(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import_any(KbContext(store=store, home=tmp_path), DATA / "nvd-sample.json")
    result = run_discover(store, [], DiscoverOptions(nmap_xml=DATA / "nmap-sample.xml"))
    [host] = result.hosts
    assert (host.address, host.hostname) == ("127.0.0.1", "localhost")
    by_port = {s.port: s for s in host.services}
    assert set(by_port) == {22, 5432, 6379, 8443}
    assert (by_port[22].product, by_port[22].version) == ("OpenSSH", "9.2p1")  # the CPE's bare version
    assert by_port[22].banner == "OpenSSH 9.2p1 Debian 2+deb12u3 (protocol 2.0)"
    assert host.filtered == [9999]
    # nmap's older vendor names are brought to NVD's current ones.
    assert by_port[6379].cpe == "cpe:2.3:a:redis:redis:7.0.15:*:*:*:*:*:*:*"
    assert by_port[8443].cpe == "cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*"
    assert "CVE-2098-0004" in {f.rule_id for f in result.findings}  # nginx 1.22.1 by its current CPE
    assert "CVE-2098-0001" in {f.rule_id for f in result.findings}
    assert list_scans(store, "default")[0].engine == "nmap-xml"
    assert {s.service.port for s in list_services(store, "default")} == {22, 5432, 6379, 8443}


def test_cli_nmap_xml_and_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    env = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    result = CliRunner().invoke(
        app, ["discover", "--nmap-xml", str(DATA / "nmap-sample.xml"), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    assert [s["port"] for s in json.loads(result.stdout)["hosts"][0]["services"]] == [22, 5432, 6379, 8443]
    assert CliRunner().invoke(app, ["discover"], env=env).exit_code == 2
    bad = tmp_path / "bad.xml"
    bad.write_text("<nmaprun><host>")
    broken = CliRunner().invoke(app, ["discover", "--nmap-xml", str(bad)], env=env)
    assert broken.exit_code == 2 and "bad.xml" in broken.output


def test_callable_from_inside_an_event_loop() -> None:
    """An async caller (a web handler) can call discover(): the probes get a loop of their own."""

    async def handler() -> DiscoveryResult:
        with serve_banner(b"SSH-2.0-OpenSSH_9.6\r\n") as port:
            return discover(None, ["127.0.0.1"], _options([port]))

    result = asyncio.run(handler())
    assert [s.product for s in result.hosts[0].services] == ["OpenSSH"]
