"""``isthmus audit --since/--until``: ages (-30m, -1h, -7d, -2w) and ISO 8601 times (UTC without a zone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from isthmus_cli.commands.audit import parse_when

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-45s", NOW - timedelta(seconds=45)),
        ("-30m", NOW - timedelta(minutes=30)),
        ("-1h", NOW - timedelta(hours=1)),
        ("-7d", NOW - timedelta(days=7)),
        ("-2w", NOW - timedelta(weeks=2)),
        ("2026-12-01T09:00:00Z", datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ("2026-12-01T09:00:00", datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ("2026-12-01T10:00:00+01:00", datetime(2026, 12, 1, 10, tzinfo=timezone(timedelta(hours=1)))),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_times_and_ages(value: str, expected: datetime) -> None:
    assert parse_when(value, NOW) == expected


@pytest.mark.parametrize("value", ["yesterday", "-1y", "1h", "-h", "2026-13-01"])
def test_anything_else_is_refused_with_the_forms_accepted(value: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_when(value, NOW)
