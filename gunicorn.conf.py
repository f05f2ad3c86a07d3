"""gunicorn settings for the web process (the Procfile's `web:` line reads this file).

Threads, not one process per request: a slow or stalled client holds one
thread for at most WEB_READ_TIMEOUT_SECONDS, never the whole intake. Put a
buffering reverse proxy in front all the same (docs/deployment.md).
https://docs.gunicorn.org/en/stable/settings.html
Variables: HOST, PORT, WEB_CONCURRENCY, WEB_THREADS, WEB_READ_TIMEOUT_SECONDS (.env.example).

/metrics must add up every worker process: prometheus_client's multiprocess
mode keeps each process's samples in files under PROMETHEUS_MULTIPROC_DIR,
which must be set before the app (and prometheus_client) is imported, so here.
Without one set, a fresh private directory is made for this server.
https://prometheus.github.io/client_python/multiprocess/
"""

import os
import tempfile
from pathlib import Path

from dotenv import load_dotenv

# .env fills the gaps of the environment here too (real variables win), as it
# does for the app's settings (config.load_settings).
load_dotenv(".env", override=False)

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
# Processes x threads serve requests at once; webhooks are short (one INSERT).
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "16"))
worker_class = "webserver.ThreadWorker"
# Connections a worker holds open at once (idle keep-alive ones included).
worker_connections = 1000
# Build the app (and migrate the database) once, before forking the workers.
preload_app = True
# A worker that stops answering its heartbeat for this long is restarted; the
# database timeouts (DATABASE_TIMEOUT_SECONDS) end a stuck request well before.
timeout = 30
graceful_timeout = 20
# Idle keep-alive connections close after this many seconds.
keepalive = 5
# A request line or header beyond these sizes is refused with 400.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

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
