"""Targets and port specs: what is expanded, and what is refused without --i-am-authorized."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from tianmu.network.targets import TargetError, expand_targets, is_internal, parse_ports


def test_literals_cidrs_ranges_and_localhost() -> None:
    found = expand_targets(["127.0.0.1", "10.0.0.0/30", "192.168.1.250-252", "::1", "localhost"])
    addresses = [t.address for t in found]
    assert addresses[:7] == [
        "127.0.0.1",
        "10.0.0.1",
        "10.0.0.2",
        "192.168.1.250",
        "192.168.1.251",
        "192.168.1.252",
        "::1",
    ]
    # localhost resolves to addresses already listed: no repeats, and a literal keeps no host name.
    assert len(addresses) == len(set(addresses))
    assert found[0].hostname is None


def test_hostname_is_kept_for_its_addresses() -> None:
    found = expand_targets(["localhost"])
    assert found and all(t.hostname == "localhost" for t in found)
    assert {t.address for t in found} <= {"127.0.0.1", "::1"}


@pytest.mark.parametrize("target", ["8.8.8.8", "1.1.1.0/30", "2001:4860:4860::8888", "9.9.9.8-9.9.9.9"])
def test_public_targets_refused_without_authorization(target: str) -> None:
    with pytest.raises(TargetError, match="--i-am-authorized"):
        expand_targets([target])


def test_public_target_allowed_when_authorized() -> None:
    # Expansion only: nothing is sent.
    assert [t.address for t in expand_targets(["8.8.8.8"], authorized=True)] == ["8.8.8.8"]


def test_mixed_private_and_public_cidr_refused() -> None:
    with pytest.raises(TargetError):
        expand_targets(["10.255.255.254-11.0.0.1"])


@pytest.mark.parametrize("bad", ["", "300.1.1.1/33", "10.0.0.9-10.0.0.1", "10.0.0.0/8"])
def test_bad_targets(bad: str) -> None:
    with pytest.raises(TargetError):
        expand_targets([bad])


def test_internal_ranges() -> None:
    assert is_internal(ipaddress.ip_address("fe80::1"))
    assert is_internal(ipaddress.ip_address("::ffff:192.168.0.1"))
    assert not is_internal(ipaddress.ip_address("::ffff:8.8.8.8"))


def test_ports() -> None:
    assert parse_ports("22,80,8000-8002,80") == [22, 80, 8000, 8001, 8002]
    assert len(parse_ports("-")) == 65535
    assert 6379 in parse_ports("top")
    for bad in ("0", "70000", "90-80", "http", ""):
        with pytest.raises(TargetError):
            parse_ports(bad)


def test_unresolvable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # No lookup leaves the machine: the resolver is replaced by one that knows no name.
    def no_such_name(*_args: object, **_kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(TargetError, match="cannot resolve"):
        expand_targets(["intranet-host"])
