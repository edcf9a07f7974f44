"""The one rule for tests that need a real external component (Kafka, an API server, helm, checkov…)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_tool(reason: str) -> NoReturn:
    """Skip locally with the reason; under CI=true a missing real component is a failure, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)
