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
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
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
    "components",
    "epss_scores",
    "findings",
    "kb_sources",
    "kev_entries",
    "metadata",
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
