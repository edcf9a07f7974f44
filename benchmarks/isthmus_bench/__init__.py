"""Isthmus benchmark harnesses (figures, not tests; results in docs/benchmarks.md). Never shipped: a dev-only
workspace member, left out of the service image; it may import any service, nothing may import it.

* ``python -m isthmus_bench.embedding`` — the embedding path vs raw ONNX Runtime (``make bench``);
* ``python -m isthmus_bench.query embedding|query|distributed`` — ``make bench``: both halves, and the
  all-in-one vs distributed comparison on a real Kafka;
* ``python -m isthmus_bench.scale`` — a vector store at scale (``make bench-scale``,
  ``bench-scale-weaviate``).
* ``python -m isthmus_bench.agents`` — agent graphs (``rag`` vs ``plan-execute``) on compound questions
  of the IR datasets, response-cache hit latency, token accounting against llama.cpp.
"""
