"""gunicorn settings of the Procfile's web process (`-c python:config.gunicorn`).

Counters must not go backwards between scrapes, but each gunicorn worker is its own process
and a scrape reaches only one of them. prometheus_client's multiprocess mode is the library's
way out: every worker writes its metrics to files in one directory per instance, a scrape sums
them all, and a dead worker's counts stay in the sum. It needs the directory named in the
environment before any worker imports prometheus_client, so it is set here, in the master.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _dir:
    # A directory named by the operator: its files are from a previous run, which must not count.
    Path(_dir).mkdir(parents=True, exist_ok=True)
    for stale in Path(_dir).glob("*.db"):
        stale.unlink()
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
