"""Asset identification: software inventory (lockfiles, package databases, SBOMs, binaries)."""
