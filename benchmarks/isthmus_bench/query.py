"""Benchmarks behind ``make bench`` (figures, not tests; record results in docs/benchmarks.md).

* ``embedding`` — Isthmus's embedding path vs a raw ONNX Runtime session on the same model and inputs
  (= ``python -m isthmus_bench.embedding``);
* ``query`` — the all-in-one platform, in its own process, unloaded and under open-loop offered load
  (= ``python -m isthmus_bench.capacity``, same options);
* ``distributed`` — the same through all-in-one and through six processes on a real Kafka
  (= ``python -m isthmus_bench.capacity --shape all,distributed --docs 600``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from isthmus_bench import capacity


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m isthmus_bench.query")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    sub = parser.add_subparsers(dest="which", required=True)
    sub.add_parser("embedding")
    capacity.add_arguments(
        sub.add_parser("query", help="capacity and overload (default all-in-one)", formatter_class=fmt)
    )
    capacity.add_arguments(
        sub.add_parser("distributed", help="all-in-one vs six processes on Kafka", formatter_class=fmt),
        shape="all,distributed",
        docs=600,
    )
    args = parser.parse_args(argv)
    if args.which == "embedding":
        from isthmus_bench import embedding

        embedding.main([])
        return
    capacity.main(args=args)


if __name__ == "__main__":
    main()
