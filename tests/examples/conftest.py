"""The examples run against the embedded broker, like the integration tests (never skipped)."""

from __future__ import annotations

from tests.integration.conftest import broker  # noqa: F401  (the session's embedded broker)
