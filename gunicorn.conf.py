"""gunicorn settings for `make serve`; every value can be overridden by the environment named beside it."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Provider calls wait on the network, so threads keep a worker busy while another waits.
workers = int(os.environ.get("GUNICORN_WORKERS", min(multiprocessing.cpu_count() * 2 + 1, 9)))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = "gthread"
# Longer than PROVIDER_TIMEOUT_S (10 s) times the calls one request can make.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
# Query strings of customer links carry nothing secret, but keep the log to method, path and status.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket defaults to one path per user, which every gunicorn on the host would share (and delete on
# exit): give it a path of its own when wanted, otherwise leave it off.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


def on_starting(server):
    """Refuse per-process rate-limit counters when several processes serve: each would count on its own."""
    storage = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    enabled = os.environ.get("RATELIMIT_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
    if enabled and server.cfg.workers > 1 and storage.startswith("memory://"):
        raise SystemExit(
            f"RATELIMIT_STORAGE_URI={storage} with {server.cfg.workers} gunicorn workers: each worker would count "
            "failed logins and link guesses on its own. Set RATELIMIT_STORAGE_URI=redis://host:6379/0 (shared "
            "storage), or GUNICORN_WORKERS=1."
        )
