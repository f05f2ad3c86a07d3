"""gunicorn settings for the web process (the Procfile's `web:` line reads this file).

Threads, not one process per request: a slow or stalled client holds one
thread for at most WEB_READ_TIMEOUT_SECONDS, never the whole intake. Put a
buffering reverse proxy in front all the same (docs/deployment.md).
https://docs.gunicorn.org/en/stable/settings.html
Variables: HOST, PORT, WEB_CONCURRENCY, WEB_THREADS, WEB_READ_TIMEOUT_SECONDS (.env.example).
"""

import os

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
