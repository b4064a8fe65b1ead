"""The database schema (SQLAlchemy Core tables on one MetaData, which Alembic migrations follow).

Core tables rather than ORM classes: the hot paths (knowledge-base imports of tens of thousands of
records, matching thousands of components) are bulk statements, and the rest of Tianmu works with the
plain dataclasses of `tianmu.core.models`.

Every table that holds an organisation's data has a `tenant` column and indexes that start with it, so
that one database can serve many tenants (and PostgreSQL row-level security can be added on it later).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "advisories",
    "advisory_aliases",
    "affected_packages",
    "assessments",
    "assets",
    "attack_tactics",
    "attack_techniques",
    "components",
    "epss_scores",
    "findings",
    "intel_indicators",
    "intel_objects",
    "jobs",
    "kb_sources",
    "kev_entries",
    "malware_hashes",
    "malware_rule_files",
    "metadata",
    "situation_alert_state",
    "situation_incidents",
    "situation_posture",
]

naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming_convention)

TZ = DateTime(timezone=True)

# --- the organisation's data -------------------------------------------------------------------------

assets = Table(
    "assets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(1024), nullable=False),
    Column("criticality", Integer, nullable=False, default=3),
    Column("tags", JSON, nullable=False, default=list),
    Column("first_seen", TZ, nullable=False),
    Column("last_seen", TZ, nullable=False),
    # What people call a path asset (its remote, its folder's name); `name` stays the identity.
    Column("label", String(1024)),
    UniqueConstraint("tenant", "kind", "name", name="uq_assets_tenant_kind_name"),
)

components = Table(
    "components",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("asset_id", Integer, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("purl", String(2048), nullable=False),
    Column("name", String(512), nullable=False),
    Column("version", String(256), nullable=False),
    Column("ecosystem", String(64), nullable=False),
    Column("path", String(2048)),
    Column("line", Integer),
    Column("source_name", String(512)),
    Column("seen_at", TZ, nullable=False),
    Index("ix_components_tenant_asset", "tenant", "asset_id"),
    Index("ix_components_ecosystem_name", "ecosystem", "name"),
)

assessments = Table(
    "assessments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("asset_id", Integer, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("started", TZ, nullable=False),
    Column("finished", TZ),
    Column("tianmu_version", String(32), nullable=False),
    Column("component_count", Integer, nullable=False, default=0),
    Column("finding_counts", JSON, nullable=False, default=dict),
    # Open findings by severity at the end of the run: the posture history the trend is drawn from.
    Column("errors", JSON, nullable=False, default=list),
    # What the run left out or stopped at (pseudo file systems, a refused .tianmuignore, limits hit),
    # bounded by `repository.bounded_notes` (revision 0004).
    Column("notes", JSON, nullable=False, default=list, server_default="[]"),
    Index("ix_assessments_tenant_started", "tenant", "started"),
)

findings = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("asset_id", Integer, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("rule_id", String(256), nullable=False),
    Column("title", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("severity_rank", SmallInteger, nullable=False, server_default="0"),
    # Severity.rank (critical 4 … info 0): lets "most severe first" pages come straight from an index.
    Column("score", Float),
    Column("summary", Text, nullable=False, default=""),
    Column("component", JSON),
    Column("evidence", JSON, nullable=False, default=dict),
    Column("aliases", JSON, nullable=False, default=list),
    Column("references", JSON, nullable=False, default=list),
    Column("techniques", JSON, nullable=False, default=list),
    Column("data", JSON, nullable=False, default=dict),
    Column("status", String(32), nullable=False, default="open"),
    Column("first_seen", TZ, nullable=False),
    Column("last_seen", TZ, nullable=False),
    Column("last_assessment_id", Integer, ForeignKey("assessments.id", ondelete="SET NULL")),
    UniqueConstraint("tenant", "fingerprint", name="uq_findings_tenant_fingerprint"),
    Index("ix_findings_tenant_severity", "tenant", "severity"),
    Index("ix_findings_tenant_kind_status", "tenant", "kind", "status"),
    Index("ix_findings_tenant_last_seen", "tenant", "last_seen"),
    # The dashboard's and API's pages (revision 0002): newest or most severe first, per status or asset.
    Index("ix_findings_tenant_status_last_seen", "tenant", "status", "last_seen", "id"),
    Index("ix_findings_tenant_status_rank", "tenant", "status", "severity_rank", "last_seen", "id"),
    Index("ix_findings_tenant_asset_last_seen", "tenant", "asset_id", "last_seen", "id"),
)

# --- knowledge bases (shared by all tenants) -------------------------------------------------------------

kb_sources = Table(
    "kb_sources",
    metadata,
    Column("name", String(128), primary_key=True),
    # e.g. `osv:PyPI`, `osv:Go`, `kev`, `epss`.
    Column("kind", String(32), nullable=False),
    Column("origin", String(2048), nullable=False),
    # Path or URL it was imported from.
    Column("digest", String(128), nullable=False),
    # SHA-256 of what was imported: an unchanged re-import is recognised and skipped.
    Column("version", String(128)),
    Column("record_count", Integer, nullable=False, default=0),
    Column("imported_at", TZ, nullable=False),
    Column("details", JSON, nullable=False, default=dict),
)

advisories = Table(
    "advisories",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("source", String(128), nullable=False),
    Column("content_hash", String(64), nullable=False),
    # Hash of the record as imported: `modified` cannot be trusted (the Go data has it zeroed).
    Column("modified", String(64)),
    Column("published", String(64)),
    Column("withdrawn", String(64)),
    Column("summary", Text, nullable=False, default=""),
    Column("details", Text, nullable=False, default=""),
    Column("aliases", JSON, nullable=False, default=list),
    Column("severity", JSON, nullable=False, default=list),
    Column("references", JSON, nullable=False, default=list),
    Column("database_specific", JSON),
    Index("ix_advisories_source", "source"),
)

advisory_aliases = Table(
    "advisory_aliases",
    metadata,
    Column("alias", String(128), nullable=False),
    Column("advisory_id", String(128), ForeignKey("advisories.id", ondelete="CASCADE"), nullable=False),
    Index("ix_advisory_aliases_alias", "alias"),
    Index("ix_advisory_aliases_advisory_id", "advisory_id"),
)

affected_packages = Table(
    "affected_packages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("advisory_id", String(128), ForeignKey("advisories.id", ondelete="CASCADE"), nullable=False),
    Column("ecosystem", String(64), nullable=False),
    # Ecosystem without its release suffix (`Debian` for `Debian:12`); the suffix is in `ecosystem_full`.
    Column("ecosystem_full", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    # Normalised per ecosystem (PEP 503 for PyPI) so look-ups are exact index hits.
    Column("purl", String(2048)),
    Column("versions", JSON, nullable=False, default=list),
    Column("ranges", JSON, nullable=False, default=list),
    Column("severity", JSON),
    Column("ecosystem_specific", JSON),
    Column("database_specific", JSON),
    Index("ix_affected_packages_ecosystem_name", "ecosystem", "name"),
    Index("ix_affected_packages_advisory_id", "advisory_id"),
)

kev_entries = Table(
    "kev_entries",
    metadata,
    Column("cve_id", String(32), primary_key=True),
    Column("vendor", String(256)),
    Column("product", String(256)),
    Column("name", Text),
    Column("date_added", String(16)),
    Column("due_date", String(16)),
    Column("ransomware", String(16)),
    Column("required_action", Text),
    Column("notes", Text),
)

epss_scores = Table(
    "epss_scores",
    metadata,
    Column("cve_id", String(32), primary_key=True),
    Column("score", Float, nullable=False),
    Column("percentile", Float, nullable=False),
    Column("score_date", String(32)),
)

# --- jobs (tianmu.jobs; Alembic branch "jobs") -----------------------------------------------------------

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("params", JSON, nullable=False, default=dict),
    Column("status", String(16), nullable=False),
    # queued → running → done | failed | cancelled; see tianmu.jobs.models.JobStatus.
    Column("idempotency_key", String(256)),
    # Submitting the same key twice returns the first job instead of queueing a second one.
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(256)),
    Column("lease_until", TZ),
    # A running job whose lease has passed lost its worker: the reaper queues it again.
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("progress", Text, nullable=False, default=""),
    Column("result", JSON),
    Column("error", Text),
    Column("created", TZ, nullable=False),
    Column("started", TZ),
    Column("finished", TZ),
    Column("submitted_by", String(256)),
    UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
    Index("ix_jobs_tenant_created", "tenant", "created"),
    Index("ix_jobs_status_lease", "status", "lease_until"),
)

# --- threat intelligence (tianmu.intel; Alembic branch "intel") -------------------------------------------

intel_indicators = Table(
    "intel_indicators",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(128), nullable=False),
    # A `kb_sources` name: `maltrail:malware`, `stix:<feed>`, `misp:<feed>`, `list:<file>`...
    Column("type", String(16), nullable=False),
    Column("value", String(2048), nullable=False),
    # Canonical (tianmu.intel.normalize); one row per (source, type, value), sources merged on look-up.
    Column("exact", Boolean, nullable=False, default=False),
    Column("confidence", Integer, nullable=False, default=50),
    Column("valid_from", TZ),
    Column("valid_until", TZ),
    Column("labels", JSON, nullable=False, default=list),
    Column("techniques", JSON, nullable=False, default=list),
    Column("malware", JSON, nullable=False, default=list),
    Column("actors", JSON, nullable=False, default=list),
    Column("references", JSON, nullable=False, default=list),
    Column("description", Text, nullable=False, default=""),
    Column("origin", String(2048), nullable=False, default=""),
    # Where the source states it (`file:line`, a STIX object id): provenance for every hit.
    Index("ix_intel_indicators_type_value", "type", "value"),
    Index("ix_intel_indicators_source", "source"),
)

intel_objects = Table(
    "intel_objects",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("name", String(512)),
    Column("data", JSON, nullable=False),
    # STIX context objects (malware, threat-actor, attack-pattern, relationship...) as imported.
)

attack_techniques = Table(
    "attack_techniques",
    metadata,
    Column("id", String(16), primary_key=True),
    # T1059, T1059.001
    Column("name", String(256), nullable=False),
    Column("tactics", JSON, nullable=False, default=list),
    # Tactic short names (`execution`), as the kill-chain phases of the technique say.
    Column("parent_id", String(16)),
    Column("url", String(512)),
    Column("deprecated", Boolean, nullable=False, default=False),
)

attack_tactics = Table(
    "attack_tactics",
    metadata,
    Column("shortname", String(64), primary_key=True),
    Column("id", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("position", Integer, nullable=False),
    # Order in the enterprise matrix (reconnaissance first, impact last): the kill-chain order.
)

# --- situation (tianmu.situation; Alembic branch "situation") ------------------------------------------

situation_incidents = Table(
    "situation_incidents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("key", String(32), nullable=False),
    # `INC-` + 12 hex digits: the id users type; stable across re-correlation.
    Column("title", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("stage", String(32)),
    Column("status", String(32), nullable=False, default="open"),
    Column("assignee", String(256)),
    Column("tactics", JSON, nullable=False, default=list),
    Column("assets", JSON, nullable=False, default=list),
    Column("sources", JSON, nullable=False, default=list),
    Column("entities", JSON, nullable=False, default=dict),
    Column("finding_fingerprints", JSON, nullable=False, default=list),
    Column("timeline", JSON, nullable=False, default=list),
    Column("first_seen", TZ),
    Column("last_seen", TZ),
    Column("updated", TZ, nullable=False),
    UniqueConstraint("tenant", "key", name="uq_situation_incidents_tenant_key"),
    Index("ix_situation_incidents_tenant_last_seen", "tenant", "last_seen"),
    Index("ix_situation_incidents_tenant_status", "tenant", "status"),
)

situation_posture = Table(
    "situation_posture",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("assessment_id", Integer, ForeignKey("assessments.id", ondelete="SET NULL")),
    Column("taken_at", TZ, nullable=False),
    Column("score", Float, nullable=False),
    Column("level", String(16), nullable=False),
    Column("open_findings", Integer, nullable=False, default=0),
    Column("open_incidents", Integer, nullable=False, default=0),
    Column("drivers", JSON, nullable=False, default=dict),
    Column("assets", JSON, nullable=False, default=list),
    # [{name, kind, score, level}] at that moment, so per-asset trends can be drawn too.
    Index("ix_situation_posture_tenant_taken_at", "tenant", "taken_at"),
)

situation_alert_state = Table(
    "situation_alert_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("rule", String(128), nullable=False),
    Column("subject", String(256), nullable=False),
    # What the alert is about: an incident key, `kev:<fingerprint>`, `finding:<fingerprint>`.
    Column("state", String(256), nullable=False),
    # The last state delivered; an alert is sent again only when the state differs.
    Column("delivered_at", TZ, nullable=False),
    Column("channels", JSON, nullable=False, default=list),
    UniqueConstraint("tenant", "rule", "subject", name="uq_situation_alert_state_tenant_rule_subject"),
)

# --- malware (tianmu.malware; Alembic branch "malware") --------------------------------------------------

malware_rule_files = Table(
    "malware_rule_files",
    metadata,
    Column("source", String(128), primary_key=True),
    # kb_sources.name of the import it belongs to (`yara:signature-base`, `clamav:main`...).
    Column("path", String(1024), primary_key=True),
    Column("kind", String(16), nullable=False),
    # `yara` as imported, or `ndb`/`mdb` when translated from ClamAV signatures.
    Column("digest", String(64), nullable=False),
    Column("rule_count", Integer, nullable=False, default=0),
    Column("text", Text, nullable=False),
)

malware_hashes = Table(
    "malware_hashes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False),
    Column("algorithm", String(8), nullable=False),
    Column("value", String(64), nullable=False),
    Column("size", BigInteger),
    # File size the signature requires (ClamAV hdb/hsb); NULL for any size.
    Column("name", Text, nullable=False),
    Column("origin", String(1024), nullable=False),
    Index("ix_malware_hashes_source", "source"),
)

# --- network (assets/network: discovered services and the scan audit trail) -----------------------------

services = Table(
    "services",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("asset_id", Integer, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(64), nullable=False),
    Column("port", Integer, nullable=False),
    Column("transport", String(8), nullable=False, default="tcp"),
    Column("state", String(16), nullable=False, default="open"),
    # `open` while the last scan that covered the port found it open, `closed` once one did not.
    Column("service", String(64)),
    Column("product", String(256)),
    Column("version", String(128)),
    Column("cpe", String(512)),
    Column("banner", Text),
    Column("tls", JSON),
    Column("info", JSON, nullable=False, default=dict),
    Column("first_seen", TZ, nullable=False),
    Column("last_seen", TZ, nullable=False),
    Column("closed_at", TZ),
    UniqueConstraint("tenant", "address", "port", "transport", name="uq_services_tenant_address_port"),
    Index("ix_services_tenant_asset", "tenant", "asset_id"),
    Index("ix_services_tenant_state", "tenant", "state"),
)

scan_audit = Table(
    "scan_audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(32), nullable=False),
    # `discover`, `web`, `domain`: which kind of outbound traffic was sent.
    Column("started", TZ, nullable=False),
    Column("finished", TZ),
    Column("targets", JSON, nullable=False, default=list),
    Column("ports", Text),
    Column("authorized", Integer, nullable=False, default=0),
    # 1 when the user passed --i-am-authorized (targets outside private ranges were allowed).
    Column("engine", String(32)),
    Column("summary", JSON, nullable=False, default=dict),
    Index("ix_scan_audit_tenant_started", "tenant", "started"),
)

# --- identity (tianmu.identity; Alembic branch "identity") ----------------------------------------------
# Sealed secrets (TOTP seeds, tenant CA keys) are stored as base64 text of SM4-GCM `seal` output.

identity_tenants = Table(
    "identity_tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("policy", JSON, nullable=False, default=dict),
    Column("ca_certs", Text),
    # PEM bundle of the CAs trusted for SM2 certificate login.
    Column("ca_key_sealed", Text),
    # The Tianmu-managed tenant CA's private key, when Tianmu issues the certificates itself.
    Column("created_at", TZ, nullable=False),
)

identity_users = Table(
    "identity_users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), ForeignKey("identity_tenants.id", ondelete="CASCADE"), nullable=False),
    Column("username", String(128), nullable=False),
    Column("display_name", String(256), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text),
    Column("totp_sealed", Text),
    Column("totp_last_step", BigInteger, nullable=False, default=0),
    # The last accepted TOTP time step: a code is never accepted twice.
    Column("failed_count", Integer, nullable=False, default=0),
    Column("locked_until", TZ),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", TZ, nullable=False),
    UniqueConstraint("tenant", "username", name="uq_identity_users_tenant_username"),
)

identity_passkeys = Table(
    "identity_passkeys",
    metadata,
    Column("id", String(512), primary_key=True),
    # base64url credential id
    Column("tenant", String(64), nullable=False),
    Column("user_id", String(36), ForeignKey("identity_users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False, default=""),
    Column("public_key", Text, nullable=False),
    # base64url COSE key
    Column("sign_count", BigInteger, nullable=False, default=0),
    Column("transports", JSON, nullable=False, default=list),
    Column("backed_up", Boolean, nullable=False, default=False),
    Column("created_at", TZ, nullable=False),
    Column("last_used_at", TZ),
    Index("ix_identity_passkeys_tenant_user", "tenant", "user_id"),
)

identity_revoked_certs = Table(
    "identity_revoked_certs",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("serial", String(64), primary_key=True),
    # hex serial number of a revoked login certificate
    Column("reason", Text, nullable=False, default=""),
    Column("revoked_at", TZ, nullable=False),
)

identity_tokens = Table(
    "identity_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("user_id", String(36), ForeignKey("identity_users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("digest", String(64), nullable=False),
    # SM3 of the secret part; the secret itself is shown once and never stored.
    Column("scopes", JSON, nullable=False, default=list),
    Column("created_at", TZ, nullable=False),
    Column("expires_at", TZ, nullable=False),
    Column("last_used_at", TZ),
    Column("revoked_at", TZ),
    Index("ix_identity_tokens_tenant_user", "tenant", "user_id"),
)

identity_sessions = Table(
    "identity_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    # SM3 of the cookie's secret
    Column("tenant", String(64), nullable=False),
    Column("user_id", String(36), ForeignKey("identity_users.id", ondelete="CASCADE"), nullable=False),
    Column("factors", JSON, nullable=False, default=list),
    Column("created_at", TZ, nullable=False),
    Column("expires_at", TZ, nullable=False),
    Column("last_seen_at", TZ, nullable=False),
    Column("revoked_at", TZ),
    Column("client", String(256), nullable=False, default=""),
    Index("ix_identity_sessions_tenant_user", "tenant", "user_id"),
)

identity_challenges = Table(
    "identity_challenges",
    metadata,
    Column("id", String(64), primary_key=True),
    # SM3 of the handle given to the client
    Column("tenant", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    # login (factors gathered so far), passkey-register, passkey-login, cert-login
    Column("user_id", String(36)),
    Column("challenge", Text, nullable=False),
    Column("state", JSON, nullable=False, default=dict),
    Column("expires_at", TZ, nullable=False),
)

identity_attempts = Table(
    "identity_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    # `ip:<address>` or `user:<id>`: what the rate limit counts
    Column("at", TZ, nullable=False),
    Column("success", Boolean, nullable=False),
    Index("ix_identity_attempts_tenant_subject_at", "tenant", "subject", "at"),
)

identity_audit = Table(
    "identity_audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    # ISO 8601 text exactly as hashed (a database must not reformat what the chain covers)
    Column("tenant", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False, default=""),
    Column("outcome", String(16), nullable=False),
    Column("details", Text, nullable=False),
    # canonical JSON text, as hashed
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_identity_audit_tenant_seq", "tenant", "seq"),
)

identity_audit_checkpoints = Table(
    "identity_audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    # base64 DER SM2 signature over "tianmu-audit-checkpoint|seq|entry_hash|at"
    Column("public_key", Text, nullable=False),
    # PEM of the platform key that signed it
)

websec_checks = Table(
    "websec_checks",
    metadata,
    # Website check templates imported with `tianmu kb import` (network branch, revision 0002).
    Column("id", String(128), primary_key=True),
    Column("source", String(256), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("imported_at", TZ, nullable=False),
    Index("ix_websec_checks_source", "source"),
)
