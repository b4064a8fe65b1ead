"""Domain-name checks over an in-process DNS server (dnslib) serving a good, a bad and a broken zone."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdtypes.ANY.DNSKEY
import dns.zone
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from network.servers import Certs, Page, Site, free_port, make_cert, serve_dns, serve_http
from network.tests_support import assert_situation_moved, cli_env, home_store
from tianmu.cli.main import app
from tianmu.core.errors import InputError
from tianmu.network.audit import list_scans
from tianmu.road.network import run_domain
from tianmu.situation import posture_history
from tianmu.store import Store
from tianmu.store.repository import list_findings
from tianmu.websec.domain import DomainOptions, check_domains, dkim_issues, dmarc_issues, spf_issues

SOA = "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 3600\n@ 3600 IN NS ns1\nns1 3600 IN A 127.0.0.1\n"


def _txt(value: str) -> str:
    """A TXT rdata in zone-file syntax, split into 255-octet strings."""
    return " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))


def _dkim_key(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _sign(zone: dns.zone.Zone) -> dns.rdtypes.ANY.DNSKEY.DNSKEY:
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
    with zone.writer() as txn:
        dns.dnssec.sign_zone(zone, txn=txn, keys=[(key, dnskey)], lifetime=30 * 86400)
    return dnskey


def _ds(name: str, dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY) -> str:
    return dns.dnssec.make_ds(dns.name.from_text(name), dnskey, "SHA256").to_text()


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[int, int, str]]:
    certs: Certs = request.getfixturevalue("certs")
    good_key = rsa.generate_private_key(65537, 2048).public_key()
    weak_key = rsa.RSAPublicNumbers(65537, (1 << 511) | 0x1F3).public_key()  # a 512-bit modulus
    good_text = (
        SOA
        + "\n".join(
            [
                "@ 3600 IN MX 10 mail",
                "mail 3600 IN A 127.0.0.1",
                '@ 3600 IN TXT "v=spf1 mx ip4:192.0.2.0/24 -all"',
                '_dmarc 3600 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.test"',
                f"sel1._domainkey 3600 IN TXT {_txt('v=DKIM1; k=rsa; p=' + _dkim_key(good_key))}",
                '@ 3600 IN CAA 0 issue "letsencrypt.org"',
                '_smtp._tls 3600 IN TXT "v=TLSRPTv1; rua=mailto:tls@good.test"',
                '_mta-sts 3600 IN TXT "v=STSv1; id=20980101"',
                "mta-sts 3600 IN A 127.0.0.1",
                "www 3600 IN CNAME @",
                "@ 3600 IN A 127.0.0.1",
            ]
        )
        + "\n"
    )
    good = dns.zone.from_text(good_text, origin="good.test.", relativize=False)
    good_dnskey = _sign(good)
    broken = dns.zone.from_text(SOA + "@ 3600 IN A 127.0.0.1\n", origin="broken.test.", relativize=False)
    _sign(broken)
    other_key = dns.dnssec.make_dnskey(
        ec.generate_private_key(ec.SECP256R1()).public_key(), "ECDSAP256SHA256", flags=257
    )
    bad_text = (
        SOA
        + "\n".join(
            [
                "@ 3600 IN MX 10 mx.gone.example.",
                "@ 3600 IN TXT "
                + _txt(
                    "v=spf1 include:s1.bad.test include:s2.bad.test include:s3.bad.test "
                    "include:s4.bad.test ipv4:192.0.2.1 +all"
                ),
                *[f'S{i} 3600 IN TXT "v=spf1 a mx include:deep{i}.bad.test -all"' for i in range(1, 5)],
                *[f'deep{i} 3600 IN TXT "v=spf1 a -all"' for i in range(1, 5)],
                '_dmarc 3600 IN TXT "v=DMARC1; p=none; pct=50"',
                f"weak._domainkey 3600 IN TXT {_txt('v=DKIM1; k=rsa; p=' + _dkim_key(weak_key))}",
                'old._domainkey 3600 IN TXT "v=DKIM1; k=rsa; p="',
                "shop 3600 IN CNAME bad-shop.herokuapp.com.",
                "legacy 3600 IN CNAME gone.bad-internal.test.",
                "* 3600 IN A 127.0.0.1",
            ]
        )
        + "\n"
    )
    parent = (
        "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 3600\n@ 3600 IN NS ns1\nns1 3600 IN A 127.0.0.1\n"
        f"good 3600 IN DS {_ds('good.test.', good_dnskey)}\n"
        f"broken 3600 IN DS {_ds('broken.test.', other_key)}\n"
    )
    heroku = (
        "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 3600\n@ 3600 IN NS ns1\nns1 3600 IN A 127.0.0.1\n"
    )
    internal = heroku
    mta_cert, _c, _k = make_cert(
        tmp_path_factory.mktemp("mta"),
        "mta",
        "mta-sts.good.test",
        sans=("mta-sts.good.test",),
        issuer=(certs.ca_cert, certs.ca_key),
    )
    policy = Site(
        pages={
            "/.well-known/mta-sts.txt": Page(
                200,
                [("Content-Type", "text/plain")],
                b"version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 604800\n",
            )
        }
    )
    zones: dict[str, str | dns.zone.Zone] = {
        "test.": parent,
        "good.test.": good,
        "bad.test.": bad_text,
        "broken.test.": broken,
        "herokuapp.com.": heroku,
        "bad-internal.test.": internal,
    }
    with (
        serve_dns(zones, axfr={"bad.test."}) as (port, _resolver),
        serve_http(policy, cert=mta_cert) as https_port,
    ):
        yield port, https_port, str(certs.ca.cert)


def _options(lab: tuple[int, int, str], **extra: object) -> DomainOptions:
    port, https_port, ca = lab
    return DomainOptions(
        nameservers=("127.0.0.1",), port=port, timeout=2.0, mta_sts_port=https_port, ca_file=ca, **extra
    )  # type: ignore[arg-type]


def test_good_domain_has_no_finding(lab: tuple[int, int, str]) -> None:
    result = check_domains(None, ["good.test"], _options(lab, dkim_selectors=("sel1",), names=("www",)))
    assert result.errors == []
    assert [(f.rule_id, f.title) for f in result.findings] == []
    assert result.domains[0]["dnssec"] == {"signed": True, "valid": True, "ad": False, "problems": []}


def test_bad_domain(lab: tuple[int, int, str]) -> None:
    result = check_domains(
        None, ["bad.test"], _options(lab, dkim_selectors=("weak", "old", "missing"), names=("shop", "legacy"))
    )
    found = {f.rule_id: f for f in result.findings}
    expected = {
        "domain.spf.pass-all",
        "domain.spf.syntax",
        "domain.spf.too-many-lookups",
        "domain.dmarc.policy-none",
        "domain.dmarc.partial",
        "domain.dkim.weak-key",
        "domain.dkim.revoked",
        "domain.dkim.missing",
        "domain.dnssec.unsigned",
        "domain.caa.missing",
        "domain.mx.dangling",
        "domain.tlsrpt.missing",
        "domain.mta-sts.missing",
        "domain.cname.dangling",
        "domain.axfr.open",
        "domain.wildcard",
    }
    assert expected <= set(found), expected - set(found)
    dangling = {f.evidence["name"]: f for f in result.findings if f.rule_id == "domain.cname.dangling"}
    assert (
        dangling["shop.bad.test"].severity.value == "high"
        and dangling["shop.bad.test"].evidence["cloud"] == "herokuapp.com"
    )
    assert dangling["legacy.bad.test"].severity.value == "medium"
    assert found["domain.spf.too-many-lookups"].evidence["lookups"] > 10
    assert found["domain.axfr.open"].evidence["names"] > 10
    assert found["domain.spf.pass-all"].evidence["entities"] == {"domain": ["bad.test"]}


def test_broken_dnssec(lab: tuple[int, int, str]) -> None:
    result = check_domains(None, ["broken.test"], _options(lab))
    [dnssec] = [f for f in result.findings if f.rule_id.startswith("domain.dnssec")]
    assert dnssec.rule_id == "domain.dnssec.invalid" and dnssec.severity.value == "high"
    assert any("DS" in p for p in dnssec.evidence["problems"])


def test_unknown_domain_and_bad_names(lab: tuple[int, int, str]) -> None:
    result = check_domains(None, ["missing.good.test"], _options(lab))
    assert result.domains == [] and "does not exist" in result.errors[0]
    with pytest.raises(InputError, match="not a domain name"):
        check_domains(None, ["not a domain"], _options(lab))


def test_stored_with_audit(store: Store, lab: tuple[int, int, str]) -> None:
    run_domain(store, ["bad.test"], _options(lab, axfr=False))
    stored = {s.finding.rule_id for s in list_findings(store, "default")}
    assert "domain.spf.pass-all" in stored and "domain.axfr.open" not in stored
    assert list_scans(store, "default")[0].action == "domain"


def test_cli_updates_the_situation(lab: tuple[int, int, str], tmp_path: Path) -> None:
    """`tianmu domain` finishes like `assess`: the findings are stored and the tenant's risk moves."""
    home = tmp_path / "home"
    store = home_store(home)
    try:
        assert posture_history(store, "default") == []
        port, _https_port, _ca = lab
        result = CliRunner().invoke(
            app,
            ["domain", "bad.test", "--nameserver", "127.0.0.1", "--port", str(port), "--no-axfr"],
            env=cli_env(home),
        )
        assert result.exit_code == 0, result.output
        assert_situation_moved(store, {"domain.spf.pass-all", "domain.dnssec.unsigned"})
    finally:
        store.close()


def lookup(records: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda name: records.get(name, [])


def test_spf_cases() -> None:
    assert [i.rule for i in spf_issues("x.test", lookup({}))] == ["domain.spf.missing"]
    two = {"x.test": ["v=spf1 -all", "v=spf1 mx -all"]}
    assert [i.rule for i in spf_issues("x.test", lookup(two))] == ["domain.spf.multiple"]
    assert [i.rule for i in spf_issues("x.test", lookup({"x.test": ["v=spf1 mx ?all"]}))] == [
        "domain.spf.neutral-all"
    ]
    assert (
        spf_issues(
            "x.test", lookup({"x.test": ["v=spf1 mx redirect=_spf.x.test"], "_spf.x.test": ["v=spf1 -all"]})
        )
        == []
    )
    # Include loops end; each include still counts.
    loop = {"x.test": ["v=spf1 include:y.test -all"], "y.test": ["v=spf1 include:x.test -all"]}
    assert spf_issues("x.test", lookup(loop)) == []


def test_dmarc_and_dkim_cases() -> None:
    assert [i.rule for i in dmarc_issues("x.test", lookup({}))] == ["domain.dmarc.missing"]
    assert [i.rule for i in dmarc_issues("x.test", lookup({"_dmarc.x.test": ["v=DMARC1; p=maybe"]}))] == [
        "domain.dmarc.invalid"
    ]
    assert dmarc_issues("x.test", lookup({"_dmarc.x.test": ["v=DMARC1; p=quarantine; pct=100"]})) == []
    garbage = {"k._domainkey.x.test": ["v=DKIM1; p=bm90IGEga2V5"]}
    assert [i.rule for i in dkim_issues("x.test", ["k"], lookup(garbage))] == ["domain.dkim.invalid"]


def test_silent_resolver_is_an_error_not_missing_records(lab: tuple[int, int, str]) -> None:
    options = DomainOptions(nameservers=("127.0.0.1",), port=free_port(), timeout=0.5)
    result = check_domains(None, ["good.test"], options)
    assert result.findings == [] and result.domains == []
    assert "no usable answer from the resolver" in result.errors[0]
