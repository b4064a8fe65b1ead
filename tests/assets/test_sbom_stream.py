"""SBOMs read as a stream: memory bounded by what is kept, the component limit, located damage.

The documents are generated here: realistic CycloneDX components (hashes, licenses, references, a
description) so that a file of some tens of MB holds tens of thousands of components, as syft or
cdxgen write them for a large image.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tianmu.assets import _jsonstream
from tianmu.assets.inventory import scan_inventory
from tianmu.assets.registry import default_extractors
from tianmu.assets.sbom import CycloneDxExtractor, SbomLimits, SpdxExtractor
from tianmu.core.errors import InputError, ParseError
from tianmu.core.models import Component, Location, Unresolved


def _component(index: int) -> dict[str, object]:
    name, version = f"package-{index}", f"1.{index % 50}.{index % 7}"
    purl = f"pkg:npm/{name}@{version}"
    return {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "description": f"Component number {index}, " + "with a long description. " * 60,
        "hashes": [
            {"alg": "SHA-256", "content": f"{index:064x}"},
            {"alg": "SHA-512", "content": f"{index:0128x}"},
        ],
        "licenses": [{"license": {"id": "MIT", "url": "https://opensource.org/licenses/MIT"}}],
        "purl": purl,
        "externalReferences": [
            {"type": "website", "url": f"https://example.com/{name}"},
            {"type": "vcs", "url": f"https://git.example.com/{name}.git"},
        ],
        "properties": [{"name": "syft:package:foundBy", "value": "javascript-package-cataloger"}],
    }


def _write_bom(path: Path, count: int, *, indent: int | None = 2) -> None:
    """A CycloneDX document of `count` components, written a component at a time."""
    with path.open("w") as out:
        out.write('{\n  "bomFormat": "CycloneDX",\n  "specVersion": "1.5",\n  "components": [\n')
        for index in range(count):
            out.write(("" if index == 0 else ",\n") + json.dumps(_component(index), indent=indent))
        out.write("\n  ]\n}\n")


_PEAK = """
import resource, sys
from pathlib import Path
from tianmu.assets.sbom import CycloneDxExtractor
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = sum(1 for _ in CycloneDxExtractor().extract(Path(sys.argv[1]), "bom.json"))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, (after - before) * 1024)
"""


def test_a_large_sbom_is_read_in_memory_bounded_by_what_is_kept(tmp_path: Path) -> None:
    # The whole document used to be loaded (its text, a copy, a line index and the parsed objects): for
    # this 20 MB file the peak grew by ~3 times the file (1.6 GB for a 150 MB one of small components).
    # Streamed, what is not kept costs nothing: the peak does not move.
    bom = tmp_path / "bom.json"
    _write_bom(bom, 8_000)
    size = bom.stat().st_size
    assert size > 18_000_000
    child = subprocess.run(
        [sys.executable, "-c", _PEAK, str(bom)], capture_output=True, text=True, check=True, timeout=120
    )
    count, grown = (int(word) for word in child.stdout.split())
    assert count == 8_000
    assert grown < size // 4, f"peak grew {grown:,} bytes for a {size:,}-byte SBOM"


def test_components_past_the_limit_are_counted_and_reported_not_read(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    _write_bom(bom, 25, indent=None)
    items = list(CycloneDxExtractor(SbomLimits(max_components=10)).extract(bom, "bom.json"))
    components = [c for c in items if isinstance(c, Component)]
    assert [c.name for c in components] == [f"package-{i}" for i in range(10)]
    assert [str(e) for e in items if isinstance(e, InputError)] == [
        "bom.json: 25 components, only the first 10 read (limit max_components)"
    ]


def test_the_limit_has_a_default_and_is_given_through_the_registry(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    _write_bom(bom, 3, indent=None)
    result = scan_inventory(bom)
    assert (len(result.components), result.errors) == (3, [])
    assert SbomLimits().max_components == 500_000
    limited = default_extractors(sbom_limits=SbomLimits(max_components=2))
    result = scan_inventory(bom, extractors=limited)
    assert len(result.components) == 2
    assert [str(e) for e in result.errors] == [
        "bom.json: 3 components, only the first 2 read (limit max_components)"
    ]


def test_lines_are_right_far_into_the_file_and_across_chunks(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    _write_bom(bom, 400)
    lines = bom.read_text().splitlines()
    expected = [number for number, line in enumerate(lines, 1) if line.lstrip().startswith('"purl"')]
    items = list(CycloneDxExtractor().extract(bom, "bom.json"))
    # bom-ref holds the same text as purl, before it: the key decides which occurrence is the purl
    assert [c.location.line for c in items if isinstance(c, Component) and c.location] == expected
    assert bom.stat().st_size > 20 * _jsonstream.CHUNK


def test_escaped_slashes_are_found_even_split_between_chunks(tmp_path: Path) -> None:
    # PHP's json_encode writes `\/`; place one across the first chunk boundary.
    head = '{"bomFormat": "CycloneDX", "components": [\n'
    pad = " " * (_jsonstream.CHUNK - 1 - len(head) - len('{"purl": "pkg:composer/a'))
    text = head + pad + '{"purl": "pkg:composer/a\\/b@1.0"},\n{"purl": "pkg:composer/c\\/d@2.0"}\n]}\n'
    assert text.encode().index(b"\\/") == _jsonstream.CHUNK - 1
    bom = tmp_path / "bom.json"
    bom.write_text(text)
    items = list(CycloneDxExtractor().extract(bom, "bom.json"))
    assert [(c.name, c.location) for c in items if isinstance(c, Component)] == [
        ("a/b", Location("bom.json", 2)),
        ("c/d", Location("bom.json", 3)),
    ]


def test_syntax_errors_are_located_far_into_the_file(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    _write_bom(bom, 300)
    text = bom.read_text()
    cut = text.index('"name": "package-250"')
    bom.write_text(text[:cut] + "," + text[cut:])
    reader = CycloneDxExtractor().extract(bom, "bom.json")
    read: list[object] = []
    with pytest.raises(ParseError) as caught:
        read.extend(reader)
    assert caught.value.line == text[:cut].count("\n") + 1
    assert str(caught.value).startswith("bom.json:")
    assert "invalid JSON: parse error" in caught.value.message
    assert len(read) == 250  # what came before the damage is kept


def test_a_truncated_sbom_keeps_what_was_read_and_names_its_last_line(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    _write_bom(bom, 50, indent=None)
    text = bom.read_text()
    bom.write_text(text[: text.index('"name": "package-40"')])
    result = scan_inventory(bom)
    assert len(result.components) == 40
    assert [str(e) for e in result.errors] == ["bom.json:45: invalid JSON: parse error: premature EOF"]


def test_nesting_past_the_limit_is_a_located_error_not_a_recursion(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    bom.write_text(
        '{"bomFormat": "CycloneDX",\n"components": [{"purl": "pkg:pypi/requests@2.19.0"},\n'
        + "[" * 100_000
        + "\n"
        + "]" * 100_000
        + "]}\n"
    )
    result = scan_inventory(bom)
    assert [c.name for c in result.components] == ["requests"]
    assert [str(e) for e in result.errors] == ["bom.json:3: JSON nested deeper than 256 levels"]


def test_nested_components_past_the_limit_are_reported(tmp_path: Path) -> None:
    node: dict[str, object] = {"purl": "pkg:pypi/leaf@1.0"}
    for depth in range(5):
        node = {"purl": f"pkg:pypi/level{depth}@1.0", "components": [node]}
    bom = tmp_path / "bom.json"
    bom.write_text(json.dumps({"bomFormat": "CycloneDX", "components": [node]}, indent=1))
    items = list(CycloneDxExtractor(SbomLimits(max_nesting=2)).extract(bom, "bom.json"))
    # parents come before their nested components, as the document reads
    assert [c.name for c in items if isinstance(c, Component)] == ["level4", "level3", "level2"]
    assert [str(e) for e in items if isinstance(e, InputError)] == [
        "bom.json: 1 component list(s) nested deeper than 2 levels not read (limit max_nesting)"
    ]


def test_components_before_bom_format_wait_for_it(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    bom.write_text(json.dumps({"components": [{"purl": "pkg:pypi/a@1"}], "bomFormat": "CycloneDX"}))
    assert [c.name for c in CycloneDxExtractor().extract(bom, "bom.json") if isinstance(c, Component)] == [
        "a"
    ]
    bom.write_text(json.dumps({"components": [{"purl": "pkg:pypi/a@1"}], "bomFormat": "SPDX"}))
    with pytest.raises(ParseError, match="not a CycloneDX JSON document"):
        list(CycloneDxExtractor().extract(bom, "bom.json"))
    bom.write_text(json.dumps([{"bomFormat": "CycloneDX"}]))
    with pytest.raises(ParseError, match="not a CycloneDX JSON document"):
        list(CycloneDxExtractor().extract(bom, "bom.json"))


def test_binary_content_and_odd_values_are_located_problems(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'{"bomFormat": "CycloneDX", \x00\x01\x02')
    assert [str(e) for e in scan_inventory(bom).errors] == [
        "bom.json: binary content where a text file was expected"
    ]
    long_purl = "pkg:pypi/" + "a" * 5000 + "@1.0"
    bom.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "components": [
                    {"purl": long_purl},
                    {"purl": "pkg:pypi/numbered", "version": 2},
                    {"type": {"odd": True}, "name": ["not", "a", "name"]},
                    {"purl": "pkg:pypi/fine@1.0"},
                ],
            },
            indent=1,
        )
    )
    result = scan_inventory(bom)
    assert [c.name for c in result.components] == ["fine"]
    assert [str(e) for e in result.errors] == [
        f"bom.json:5: package URL {long_purl[:60]!r}... longer than 4096 characters: not a component",
        "bom.json:8: package URL 'pkg:pypi/numbered': the version is a int, not a string: not a component",
    ]
    bom.write_text('{"bomFormat": "CycloneDX", "components": [{"version": ' + "9" * 5000 + "}]}")
    assert [str(e) for e in scan_inventory(bom).errors] == [
        "bom.json:1: invalid JSON: parse error: integer overflow"
    ]


def test_a_byte_order_mark_is_no_error(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"bomFormat": "CycloneDX", "components": [{"purl": "pkg:pypi/a@1"}]}')
    assert [c.name for c in scan_inventory(bom).components] == ["a"]


def test_spdx_streamed_with_described_packages_listed_after_them(tmp_path: Path) -> None:
    packages = [
        {"SPDXID": "SPDXRef-image", "name": "the-image", "versionInfo": "1"},
        {
            "SPDXID": "SPDXRef-a",
            "name": "a",
            "externalRefs": [
                {"referenceType": "cpe23Type", "referenceLocator": "cpe:2.3:a:x:a:1:*:*:*:*:*:*:*"},
                {"referenceLocator": "pkg:pypi/a@1.0", "referenceType": "purl"},
                {"referenceType": "purl", "referenceLocator": "pkg:pypi/a-alias@1.0"},
            ],
        },
        {
            "SPDXID": "SPDXRef-b",
            "name": "b",
            "versionInfo": "2",
            "externalRefs": [{"referenceType": "cpe23Type", "referenceLocator": "cpe:2.3:a:x:b"}],
        },
    ]
    doc = {"spdxVersion": "SPDX-2.3", "packages": packages, "documentDescribes": ["SPDXRef-image"]}
    sbom = tmp_path / "image.spdx.json"
    sbom.write_text(json.dumps(doc, indent=2))
    lines = sbom.read_text().splitlines()
    items = list(SpdxExtractor().extract(sbom, "image.spdx.json"))
    assert [(c.name, c.location) for c in items if isinstance(c, Component)] == [
        ("a", Location("image.spdx.json", lines.index('          "referenceLocator": "pkg:pypi/a@1.0",') + 1))
    ]
    assert [(u.name, u.location) for u in items if isinstance(u, Unresolved)] == [
        ("b", Location("image.spdx.json", lines.index('      "name": "b",') + 1))
    ]
    limited = list(SpdxExtractor(SbomLimits(max_components=1)).extract(sbom, "image.spdx.json"))
    assert [str(e) for e in limited if isinstance(e, InputError)] == [
        "image.spdx.json: 3 packages, only the first 1 read (limit max_components)"
    ]


def _open_descriptors_on(path: Path) -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += Path(fd.readlink()) == path
        except OSError:
            continue  # the descriptor of the listing itself, closed by now
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_the_file_is_closed_whether_the_stream_ends_damaged_or_abandoned(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"bomFormat": "CycloneDX", "components": [' + '{"name": "a"},' * 5000 + "}}")
    with pytest.raises(ParseError):
        for _ in _jsonstream.JsonEvents(damaged, "damaged.json"):
            pass
    assert _open_descriptors_on(damaged) == 0

    whole = tmp_path / "bom.json"
    _write_bom(whole, 50)
    events = iter(_jsonstream.JsonEvents(whole, "bom.json"))
    next(events)
    assert _open_descriptors_on(whole) == 1  # it is being read
    del events  # a reader that stops early (a limit reached) drops the stream
    assert _open_descriptors_on(whole) == 0
