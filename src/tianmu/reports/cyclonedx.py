"""CycloneDX 1.6 JSON rendering: the software inventory (SBOM) with its vulnerabilities (VEX-style).

Built with cyclonedx-python-lib so that the output follows the schema the library validates against.

* Each component's `bom-ref` is its purl plus where it was found: the same package pinned in two
  lockfiles is two entries, and each vulnerability's `affects` points at exactly the ones affected.
* Vulnerabilities are grouped by advisory id: one entry per advisory, affecting every matching
  component, which is how CycloneDX consumers (Dependency-Track and others) expect them.
* Only `vulnerability` findings are represented; the other kinds (malware, detections...) have no
  place in a bill of materials and belong in the JSON, SARIF or HTML reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from cyclonedx.model import Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component as CdxComponent
from cyclonedx.model.component import ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityAdvisory,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

import tianmu
from tianmu.core.models import Assessment, AssetKind, Component, Finding, FindingKind

from ._common import advisory_url, is_unscored, iso, vuln_details

__all__ = ["assessment_to_bom", "component_ref", "render_cyclonedx"]

_ASSET_TYPES = {
    AssetKind.IMAGE: ComponentType.CONTAINER,
    AssetKind.HOST: ComponentType.PLATFORM,
}
_METHODS = (
    ("CVSS:4.0/", VulnerabilityScoreSource.CVSS_V4),
    ("CVSS:3.1/", VulnerabilityScoreSource.CVSS_V3_1),
    ("CVSS:3.0/", VulnerabilityScoreSource.CVSS_V3),
    ("AV:", VulnerabilityScoreSource.CVSS_V2),
)


def component_ref(component: Component) -> str:
    """Stable, unique bom-ref: the purl, plus the file (and line) it was found in."""
    return f"{component.purl}|{component.location}" if component.location else component.purl


def _source(advisory_id: str) -> VulnerabilitySource:
    url = advisory_url(advisory_id)
    if url is None:
        return VulnerabilitySource(name="Tianmu")
    name = "NVD" if url.startswith("https://nvd.nist.gov/") else "OSV"
    return VulnerabilitySource(name=name, url=XsUri(url))


def _method(vector: str | None) -> VulnerabilityScoreSource | None:
    if not vector:
        return None
    for prefix, method in _METHODS:
        if vector.startswith(prefix):
            return method
    return VulnerabilityScoreSource.OTHER


def _score(value: float | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _cdx_component(component: Component) -> CdxComponent:
    props = [Property(name="tianmu:ecosystem", value=component.ecosystem)]
    if component.location is not None:
        props.append(Property(name="tianmu:location", value=str(component.location)))
    if component.direct is not None:
        props.append(Property(name="tianmu:direct", value=str(component.direct).lower()))
    if component.source_name:
        props.append(Property(name="tianmu:source_name", value=component.source_name))
    if component.distro_release:
        props.append(Property(name="tianmu:distro_release", value=component.distro_release))
    try:
        purl: PackageURL | None = PackageURL.from_string(component.purl)
    except ValueError:
        # A malformed purl from an odd lockfile must not lose the component: keep it as a property.
        purl = None
        props.append(Property(name="tianmu:purl", value=component.purl))
    # Maven coordinates read "group:artifact"; CycloneDX wants them apart, as the purl has them.
    group: str | None = None
    name = component.name
    if purl is not None and purl.type == "maven" and purl.namespace:
        group, name = purl.namespace, purl.name
    return CdxComponent(
        name=name,
        group=group,
        version=component.version,
        purl=purl,
        bom_ref=component_ref(component),
        type=ComponentType.LIBRARY,
        properties=props,
    )


def _recommendation(findings: list[Finding]) -> str | None:
    advice: list[str] = []
    for finding in findings:
        fixed = vuln_details(finding).fixed_versions
        if not fixed:
            continue
        target = " or ".join(fixed)
        line = f"Upgrade to {target}"
        if finding.component is not None and len(findings) > 1:
            line = f"Upgrade {finding.component.name} to {target}"
        if line not in advice:
            advice.append(line)
    return "; ".join(advice) + "." if advice else None


def _vulnerability(findings: list[Finding], root_ref: str) -> Vulnerability:
    lead = max(findings, key=lambda f: (f.score or 0.0, f.severity.rank))
    details = vuln_details(lead)
    rating = VulnerabilityRating(
        source=_source(lead.rule_id),
        score=_score(lead.score),
        # CycloneDX has a word for a severity nobody published; the rank Tianmu sorts by is a property.
        severity=VulnerabilitySeverity.UNKNOWN
        if is_unscored(lead)
        else VulnerabilitySeverity(lead.severity.value),
        method=_method(details.cvss_vector),
        vector=details.cvss_vector,
    )
    refs = {component_ref(f.component) if f.component else root_ref for f in findings}
    props = [Property(name="tianmu:kev", value=str(any(vuln_details(f).kev for f in findings)).lower())]
    if details.kev_details:
        for key in ("date_added", "due_date", "ransomware"):
            if details.kev_details.get(key) is not None:
                props.append(Property(name=f"tianmu:kev:{key}", value=str(details.kev_details[key])))
    if is_unscored(lead):
        props.append(Property(name="tianmu:unscored_rank", value=lead.severity.value))
    if details.epss is not None:
        props.append(Property(name="tianmu:epss", value=f"{details.epss:g}"))
    if details.epss_percentile is not None:
        props.append(Property(name="tianmu:epss_percentile", value=f"{details.epss_percentile:g}"))
    for finding in findings:
        props.append(Property(name="tianmu:fingerprint", value=finding.fingerprint))
    detail = lead.summary if lead.summary and lead.summary != lead.title else None
    return Vulnerability(
        bom_ref=f"vuln:{lead.rule_id}",
        id=lead.rule_id,
        source=_source(lead.rule_id),
        references=[VulnerabilityReference(id=alias, source=_source(alias)) for alias in lead.aliases],
        ratings=[rating],
        description=lead.title or lead.summary or None,
        detail=detail,
        recommendation=_recommendation(findings),
        advisories=[VulnerabilityAdvisory(url=XsUri(url)) for url in lead.references],
        affects=[BomTarget(ref=ref) for ref in sorted(refs)],
        properties=props,
    )


def _group_by_advisory(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.kind is FindingKind.VULNERABILITY:
            groups.setdefault(finding.rule_id, []).append(finding)
    return groups


def assessment_to_bom(assessment: Assessment) -> Bom:
    asset = assessment.asset
    root = CdxComponent(
        name=asset.name,
        type=_ASSET_TYPES.get(asset.kind, ComponentType.APPLICATION),
        bom_ref=f"asset:{asset.kind.value}:{asset.name}",
        # The name and bom-ref stay the resolved path (the identity); people read the label beside it.
        description=asset.display,
        properties=[
            Property(name="tianmu:target", value=assessment.target),
            Property(name="tianmu:label", value=asset.label or asset.name),
        ],
    )
    tool = CdxComponent(
        name="Tianmu",
        version=tianmu.__version__,
        type=ComponentType.APPLICATION,
        bom_ref=f"tool:tianmu@{tianmu.__version__}",
    )
    metadata = BomMetaData(
        timestamp=assessment.finished or assessment.started,
        tools=ToolRepository(components=[tool]),
        component=root,
        properties=[Property(name="tianmu:started", value=iso(assessment.started) or "")],
    )
    bom = Bom(metadata=metadata)

    components: dict[str, CdxComponent] = {}
    # Findings may name components the inventory did not list (e.g. an OS package DB read separately);
    # they are added so that every `affects` reference resolves.
    extra = [f.component for f in assessment.findings if f.component is not None]
    for component in [*assessment.components, *extra]:
        ref = component_ref(component)
        if ref not in components:
            components[ref] = _cdx_component(component)
    for cdx in components.values():
        bom.components.add(cdx)
    # The asset is made of these components; saying so keeps the dependency graph complete.
    bom.register_dependency(root, list(components.values()))

    for findings in _group_by_advisory(assessment.findings).values():
        bom.vulnerabilities.add(_vulnerability(findings, str(root.bom_ref)))
    return bom


def render_cyclonedx(assessment: Assessment) -> str:
    bom = assessment_to_bom(assessment)
    text: str = JsonV1Dot6(bom).output_as_string(indent=2)
    return text + "\n"
