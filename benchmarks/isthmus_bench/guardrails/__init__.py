"""Guardrail benchmarks (``make bench-guardrails``): injection detection, PII, grounding, ingest scans.

Each module runs on its own: ``python -m isthmus_bench.guardrails.<injection|pii|grounding|ingest>``."""
