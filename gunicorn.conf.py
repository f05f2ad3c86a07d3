"""gunicorn settings read at start (gunicorn loads ./gunicorn.conf.py by default).

/metrics must add up every worker process: prometheus_client's multiprocess
mode keeps each process's samples in files under PROMETHEUS_MULTIPROC_DIR,
which must be set before the app (and prometheus_client) is imported, so here.
Without one set, a fresh private directory is made for this server.
https://prometheus.github.io/client_python/multiprocess/
"""

import os
import tempfile
from pathlib import Path

_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_made_here = not _metrics_dir
if _made_here:
    _metrics_dir = tempfile.mkdtemp(prefix="deskpilot-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server):  # noqa: ARG001 - gunicorn's hook signature
    """Start from zero: samples left by a previous server would be added to ours."""
    directory = Path(_metrics_dir)
    directory.mkdir(parents=True, exist_ok=True)
    # Only prometheus_client's own files (counter_<pid>.db, gauge_max_<pid>.db, ...).
    for kind in ("counter", "gauge", "histogram", "summary"):
        for stale in directory.glob(f"{kind}_*.db"):
            stale.unlink()


def child_exit(server, worker):  # noqa: ARG001
    """A dead worker's live gauges stop counting; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ARG001
    """Remove the directory made above (one given in the environment stays)."""
    if _made_here:
        import shutil

        shutil.rmtree(_metrics_dir, ignore_errors=True)
