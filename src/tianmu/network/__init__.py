"""Shared network plumbing: what discovery (`tianmu.assets.network`), website and domain checks
(`tianmu.websec`) and the CPE matching of `tianmu.vulns` all need, on the floor below them.

- `targets`: what may be scanned (IPs, CIDRs, ranges, names) and the private-range safety rule;
- `connection`: one TCP/TLS conversation with deadlines (`Conn`), and `run_sync` for async probes;
- `tls`: TLS handshakes, the versions offered, certificate details (SM2 included);
- `cpe`: CPE 2.3 names of fingerprinted products, and parsing them back;
- `httpfp`: reading HTTP responses and the products/versions they disclose;
- `http`: the HTTP transport seam and its in-memory twin (`SiteTransport`);
- `audit`: the scan audit trail (who sent probes where, and whether they said they may);
- `sightings`: a product version seen on the network, as capabilities report it to the road.

May import `core`, `store` and `gmcrypto` only.
"""
