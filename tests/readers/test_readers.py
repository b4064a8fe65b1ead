"""Log readers on real lines of each format (../shared/data/logs, EVTX samples) and on broken ones."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import evtx
import pytest

import tianmu.readers
from tianmu.core.errors import InputError
from tianmu.readers import ReadStats, detect_format, iter_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "detect"


def _read(path: Path, fmt: str | None = None) -> tuple[list, ReadStats]:  # type: ignore[type-arg]
    stats = ReadStats()
    return list(iter_events(path, fmt=fmt, stats=stats)), stats


def test_evtx_samples_flatten_to_sigma_field_names(shared_data: Path) -> None:
    events, stats = _read(shared_data / "evtx")
    # Counted straight from the parser: the folder may hold more than the 41 files (513 records) shared here.
    files = sorted((shared_data / "evtx").rglob("*.evtx"))
    raw = [json.loads(r["data"]) for f in files for r in evtx.PyEvtxParser(str(f)).records_json()]
    assert stats.files == len(files) >= 41 and len(events) == len(raw) >= 513 and stats.malformed_count == 0
    channels = Counter(e.fields.get("Channel") for e in events)
    assert channels == Counter(r["Event"]["System"].get("Channel") for r in raw)
    assert channels["Microsoft-Windows-Sysmon/Operational"] >= 245 and channels["Security"] >= 31
    sysmon = next(
        e for e in events if e.fields.get("EventID") == 1 and "Sysmon" in str(e.fields.get("Channel"))
    )
    assert {"Image", "CommandLine", "ParentImage", "User", "Hashes"} <= set(sysmon.fields)
    assert sysmon.fields["Provider_Name"] == "Microsoft-Windows-Sysmon"
    assert sysmon.origin.line == sysmon.fields["EventRecordID"] and sysmon.origin.path.endswith(".evtx")
    assert sysmon.timestamp is not None and sysmon.timestamp.tzinfo is not None
    assert json.loads(sysmon.raw)["Event"]["System"]["EventRecordID"] == sysmon.origin.line


def test_openssh_loghub_lines(shared_data: Path) -> None:
    path = shared_data / "logs" / "loghub" / "OpenSSH" / "OpenSSH_2k.log"
    events, stats = _read(path)
    assert len(events) == 2000 and stats.malformed_count == 0
    assert detect_format(path.read_bytes()[:65536]) == "syslog"
    text = path.read_text(errors="replace").splitlines()
    failed = [e for e in events if e.fields.get("event_action") == "ssh_login_failed"]
    assert len(failed) == sum(bool(re.search(r"sshd\[\d+\]: Failed \S+ for ", line)) for line in text) == 522
    first = failed[0]
    assert first.fields["program"] == "sshd" and first.fields["host"] == "LabSZ"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", first.fields["src_ip"]) and first.fields["src_port"].isdigit()
    assert text[first.origin.line - 1].endswith(first.fields["message"])


def test_linux_syslog_pam_failures(shared_data: Path) -> None:
    events, stats = _read(shared_data / "logs" / "loghub" / "Linux" / "Linux_2k.log")
    assert len(events) == 2000 and stats.malformed_count == 0
    failures = [e for e in events if e.fields.get("event_action") == "pam_auth_failure"]
    assert len(failures) == 490
    assert {"218.188.2.4"} <= {e.fields.get("src_ip") for e in failures}


def test_fail2ban_sshd_labels_name_the_attacker(shared_data: Path) -> None:
    """Each labelled line fail2ban must ban: our reader names the same host in `src_ip` (most formats)."""
    path = shared_data / "logs" / "fail2ban" / "sshd"
    lines = path.read_text(errors="replace").splitlines()
    events = {e.origin.line: e for e in _read(path, "syslog")[0]}
    labelled = agreed = 0
    for number, line in enumerate(lines, 1):
        if not line.startswith("# failJSON:"):
            continue
        label = json.loads(line.split(":", 1)[1])
        target = number + 1
        if not label.get("match") or not label.get("host") or target not in events:
            continue
        labelled += 1
        fields = events[target].fields
        agreed += label["host"] in (fields.get("src_ip"), fields.get("src_host"))
    assert labelled > 50
    # The rest are fail2ban's own multi-line and adversarial cases (injected `from` in user names...).
    assert agreed / labelled > 0.6


def test_web_access_logs(shared_data: Path) -> None:
    w3af, stats = _read(shared_data / "logs" / "web" / "apache-http-logs" / "w3af.txt")
    assert len(w3af) == 3996 and stats.malformed_count == 0  # lines wrapped in an extra pair of quotes
    assert w3af[0].fields["c-ip"] == "192.168.4.163" and w3af[0].fields["cs-user-agent"] == "w3af.org"
    tomcat_path = shared_data / "logs" / "web" / "evtx-attack-samples"
    tomcat_file = next(tomcat_path.glob("*access_log.txt"))
    tomcat, stats = _read(tomcat_file)
    assert len(tomcat) == 2661 and stats.malformed_count == 0  # NUL and non-UTF-8 bytes tolerated
    climbing = sum(b"../" in line for line in tomcat_file.read_bytes().splitlines())
    assert sum("../" in str(e.fields.get("cs-uri", e.fields.get("request"))) for e in tomcat) == climbing > 60
    shell = [e for e in tomcat if e.fields.get("cs-uri-stem") == "/error/cmd.jsp"]
    assert shell and all(e.fields["cs-method"] in ("GET", "POST") for e in shell)
    junk = [e for e in tomcat if "cs-method" not in e.fields]
    assert junk and all("request" in e.fields for e in junk)


def test_apache_error_log(shared_data: Path) -> None:
    events, stats = _read(shared_data / "logs" / "loghub" / "Apache" / "Apache_2k.log")
    assert len(events) == 2000 and stats.malformed_count == 0
    assert Counter(e.fields["level"] for e in events)["error"] > 500


def test_suricata_eve_arrays(shared_data: Path) -> None:
    events, stats = _read(shared_data / "logs" / "suricata")
    expected = sum(
        len(json.loads(f.read_text())) for f in (shared_data / "logs" / "suricata").rglob("*.json")
    )
    assert len(events) == expected >= 180 and stats.malformed_count == 0
    alert = events[0]
    assert alert.source_type == "suricata" and alert.fields["event_type"] == "alert"
    assert {"alert.signature", "alert.severity", "src_ip", "dest_ip"} <= set(alert.fields)
    raw = json.loads(alert.raw)
    assert raw["alert"]["signature"] == alert.fields["alert.signature"]
    text = (shared_data / "logs" / "suricata" / "honeypot-2018" / "alerts-only.json").read_text().splitlines()
    honeypot = [e for e in events if "honeypot" in e.origin.path]
    assert all(text[e.origin.line - 1].strip() == "{" for e in honeypot)


def test_broken_syslog_lines_are_counted_and_located() -> None:
    events, stats = _read(FIXTURES / "syslog_broken.log")
    assert [e.origin.line for e in events] == [1, 3, 4]
    assert stats.malformed_count == 2
    assert stats.errors[0].endswith(
        "syslog_broken.log:2: not a syslog line (RFC 3164, RFC 5424 or ISO timestamp expected)"
    )
    assert ":5:" in stats.errors[1]
    rfc5424, iso = events[1], events[2]
    assert rfc5424.fields["event_action"] == "ssh_login_accepted" and rfc5424.fields["facility"] == "auth"
    assert iso.fields["event_action"] == "sudo_command" and iso.fields["target_user"] == "root"
    assert iso.timestamp is not None and iso.timestamp.hour == 8  # +01:00 normalised to UTC


def test_journald_export() -> None:
    events, stats = _read(FIXTURES / "journal.json")
    assert len(events) == 3 and stats.malformed_count == 1 and ":4:" in stats.errors[0]
    assert events[0].source_type == "journald" and events[0].fields["event_action"] == "ssh_login_failed"
    assert events[0].fields["host"] == "db01" and events[0].timestamp is not None
    assert events[1].fields["event_action"] == "user_added" and events[1].fields["target_user"] == "backup2"
    assert events[2].fields["MESSAGE"] == "hi\ufffd!"


def test_auditd() -> None:
    events, stats = _read(FIXTURES / "audit.log")
    assert len(events) == 4 and stats.malformed_count == 1 and "audit.log:5" in stats.errors[0]
    syscall = events[0]
    assert syscall.fields["type"] == "SYSCALL" and syscall.fields["exe"] == "/usr/sbin/useradd"
    assert syscall.fields["key"] == "user_modification" and syscall.fields["audit_serial"] == "4410"
    assert events[2].fields["proctitle_decoded"] == "useradd -m backup2"
    assert events[3].fields["acct"] == "root" and events[3].fields["res"] == "failed"


def test_json_web_and_csv_with_field_map() -> None:
    web, _ = _read(FIXTURES / "web_json.log")
    assert [e.source_type for e in web] == ["webserver", "webserver"]
    assert web[0].fields["cs-uri-query"].startswith("q=1%27") and web[0].fields["sc-status"] == 200
    assert web[1].fields["cs-uri-stem"] == "/img/../../etc/passwd"
    stats = ReadStats()
    rows = list(iter_events(FIXTURES / "events.csv", field_map={"user": "User"}, stats=stats))
    assert rows[0].fields == {
        "time": "2026-03-03T11:00:00Z",
        "src_ip": "192.0.2.50",
        "User": "alice",
        "action": "login",
    }
    assert stats.malformed_count == 1 and "events.csv:3: 3 columns where the header has 4" in stats.errors[0]


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zip"])
def test_compressed_logs_read_transparently(tmp_path: Path, kind: str) -> None:
    source = FIXTURES / "syslog_broken.log"
    data = source.read_bytes()
    target = tmp_path / f"auth.log.{kind}"
    if kind == "gz":
        target.write_bytes(gzip.compress(data))
    elif kind == "bz2":
        target.write_bytes(bz2.compress(data))
    elif kind == "xz":
        target.write_bytes(lzma.compress(data))
    else:
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr("var/log/auth.log", data)
    events, stats = _read(target)
    assert [e.origin.line for e in events] == [1, 3, 4] and stats.malformed_count == 2
    if kind == "zip":
        assert events[0].origin.path == f"{target}!var/log/auth.log"


def test_compressed_evtx_and_truncated_evtx(shared_data: Path, tmp_path: Path) -> None:
    source = next((shared_data / "evtx").rglob("*.evtx"))
    plain, _ = _read(source)
    packed = tmp_path / "sample.evtx.gz"
    packed.write_bytes(gzip.compress(source.read_bytes()))
    unpacked, _ = _read(packed)
    assert [e.fields for e in unpacked] == [e.fields for e in plain]
    broken = tmp_path / "broken.evtx"
    broken.write_bytes(source.read_bytes()[:5000])
    events, stats = _read(broken)  # must not raise
    assert stats.malformed_count >= 1 or len(events) < len(plain)


def test_directory_walk_skips_non_logs_and_missing_paths_fail(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "syslog_broken.log", tmp_path / "auth.log")
    (tmp_path / "package.json").write_text('{\n  "name": "shop",\n  "version": "1.0.0"\n}\n')
    (tmp_path / "README.md").write_text("# notes, with, commas, everywhere\n")
    events, stats = _read(tmp_path)
    assert len(events) == 3 and stats.files == 1 and stats.malformed_count == 2
    assert any("package.json" in s for s in stats.skipped_files)
    with pytest.raises(InputError):
        list(iter_events(tmp_path / "absent.log"))
    with pytest.raises(InputError):
        list(iter_events(tmp_path / "auth.log", fmt="nonsense"))


def test_evtx_records_exported_as_json_lines(shared_data: Path, tmp_path: Path) -> None:
    source = next((shared_data / "evtx").rglob("*.evtx"))
    exported = tmp_path / "export.jsonl"
    with exported.open("w") as out:
        for record in evtx.PyEvtxParser(str(source)).records_json():
            out.write(json.dumps(json.loads(record["data"])) + "\n")
    from_file = _read(source)[0]
    from_json = _read(exported)[0]
    assert [e.fields for e in from_json] == [e.fields for e in from_file]
    assert {e.source_type for e in from_json} == {"evtx"} and from_json[0].origin.line == 1


def test_public_surface() -> None:
    assert tianmu.readers.__all__ == [
        "FORMATS",
        "ReadLimits",
        "ReadStats",
        "detect_format",
        "find_log_files",
        "iter_events",
        "iter_file_events",
    ]
    assert "evtx" in tianmu.readers.FORMATS and "suricata" in tianmu.readers.FORMATS


def test_iis_w3c_log() -> None:
    events, stats = _read(FIXTURES / "iis.log")
    assert (
        len(events) == 2 and stats.malformed_count == 1 and "iis.log:7: not a W3C log line" in stats.errors[0]
    )
    first, second = events
    assert first.source_type == "webserver" and first.fields["c-ip"] == "192.0.2.80"
    assert (
        first.fields["cs-user-agent"] == "Mozilla/5.0+(Windows+NT+10.0)" and "cs-referer" not in first.fields
    )
    assert first.timestamp is not None and first.timestamp.isoformat() == "2026-03-04T09:00:01+00:00"
    assert second.fields["cs-uri"] == "/scripts/..%c1%1c../winnt/system32/cmd.exe?/c+dir"
    assert second.fields["sc-status"] == 404


def test_fail2ban_apache_variants(shared_data: Path) -> None:
    """Apache 2.4 error lines (`[:error]`, `[pid N:tid M]`) and access lines without a UTC offset."""
    folder = shared_data / "logs" / "fail2ban"
    noscript, stats = _read(folder / "apache-noscript")
    assert noscript and stats.malformed_count == 0
    assert all(e.source_type == "webserver-error" and e.fields["server"] == "apache" for e in noscript)
    assert any(e.fields.get("c-ip") == "204.232.202.107" for e in noscript)
    [access], stats = _read(folder / "apache-pass")
    assert stats.malformed_count == 0 and access.fields["cs-username"] == "user1"
    assert access.timestamp is not None and access.timestamp.isoformat() == "2013-06-27T11:55:44+00:00"


def test_hostile_json_is_malformed_not_fatal(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": 1}\n' + "[" * 100_000 + "\n" + '{"b": ' * 5000 + "1" + "}" * 5000 + "\n")
    events, stats = _read(deep)
    assert len(events) == 1 and stats.malformed_count == 2
    array = tmp_path / "deep-array.json"
    array.write_text('[{"a": 1}, ' + "[" * 100_000 + "]" * 100_000 + "]")
    events, stats = _read(array)
    assert len(events) == 1 and stats.malformed_count == 1
