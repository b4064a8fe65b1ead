"""Intrusion detection: the Sigma rule engine over events (see docs/detect.md).

- `tianmu.detect.engine`: `Detector` (compiled matchers of a rule base), `DetectionEngine` (the event
  engine the road runs: every event of the one parse pass), `detect_paths` (`tianmu detect FILES`).
- `tianmu.detect.kb`: the rule base (`load_rule_base`, `SigmaKnowledgeBase`).

The log readers it consumes live in the shared room `tianmu.readers`, so that every event engine reads
the same events from one parse.
"""
