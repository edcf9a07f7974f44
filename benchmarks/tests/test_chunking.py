"""The chunking benchmark's parts that need no platform: arguments and the side-by-side report. The
whole harness needs the platform and the datasets: run ``python -m isthmus_bench.chunking``."""

from __future__ import annotations

import pytest

from isthmus_bench.chunking import Row, parse_args, render


def test_the_baseline_runs_first_and_unknown_strategies_or_modes_are_refused() -> None:
    args = parse_args(["--strategies", "semantic,token,parent-child"])
    assert args.strategies == ["token", "semantic", "parent-child"]
    with pytest.raises(SystemExit):
        parse_args(["--strategies", "token,paragraph"])
    with pytest.raises(SystemExit):
        parse_args(["--modes", "fuzzy"])


def test_the_report_puts_each_strategy_beside_the_token_baseline() -> None:
    rows = [
        Row("token", "cranfield", 4, 2, 8, 2.0, {"hybrid": 0.5}, {"hybrid": 0.9}, 100.0, ["token"]),
        Row("parent-child", "cranfield", 4, 2, 20, 4.0, {"hybrid": 0.55}, {"hybrid": 0.8}, 50.0, ["token"]),
    ]
    out = render(rows, ["hybrid"])
    lines = out.splitlines()
    assert lines[0] == "cranfield (4 documents, 2 queries)"
    assert "| token | 8 | 2.00 | 2 | 4.0 | 100 | 0.500 | — | 0.900 |" in lines
    assert "| parent-child | 20 | 5.00 | 4 | 5.0 | 50 | 0.550 | +0.050 | 0.800 |" in lines
    # a document recorded with another strategy than the one asked for is reported
    assert "WARNING: documents not recorded with the strategy asked for: ['parent-child']" in lines
