"""Debian's headless Chromium for the browser tests (never a downloaded browser build)."""
from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# On a developer's machine without chromium the browser tests are skipped; in CI (which installs
# it through scripts/test.sh) a missing browser is a failure, not a silent skip.
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason="needs Debian's chromium"
)
