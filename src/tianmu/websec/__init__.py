"""Remote checks of websites (TLS, headers, cookies, CORS, exposures, versions, YAML check templates)
and of domain names (SPF, DMARC, DKIM, DNSSEC, CAA, MX/TLS-RPT/MTA-STS, dangling CNAMEs, AXFR,
wildcards). `check_websites` and `check_domains` are the engines; the CLI and job runners reach them
through the road (`tianmu.road.network.run_web` / `run_domain`), which adds the vulnerabilities of
disclosed versions and finishes."""

from __future__ import annotations

from tianmu.websec.domain import DomainOptions, check_domains
from tianmu.websec.engine import WebOptions, WebResult, check_websites
from tianmu.websec.templates import CheckTemplate, load_templates

__all__ = [
    "CheckTemplate",
    "DomainOptions",
    "WebOptions",
    "WebResult",
    "check_domains",
    "check_websites",
    "load_templates",
]
