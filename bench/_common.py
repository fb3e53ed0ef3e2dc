"""Helpers shared by the benchmarks: free loopback ports, gunicorn subprocesses, databases, the sandbox server, a
bounded load driver.

Not a benchmark itself: `make bench` runs it like the others and it only says so.
Everything stays on 127.0.0.1; every server started here is stopped at the end (also on error or Ctrl-C).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Fixed keys for the benchmark databases: the seeding process and every gunicorn worker must agree on them.
SECRET_KEY = "bench-secret-key-not-for-production-0123456789"
DATA_KEY = "bench-data-key-not-for-production-0123456789"
SANDBOX_SECRET_KEY = "bench-sandbox-secret-key-not-for-production-0123"
PASSWORD = "bench-password-123"
# The .ci/run role and server; a separate database is made for the benchmarks.
DEFAULT_POSTGRES_URL = "postgresql+psycopg://portal:portal@127.0.0.1:5432/portal_test"
# The bench merchant's credentials: issued by the sandbox (registered there before it starts, see sandbox_server) and
# configured in the portal (seed_merchant). Not the sandbox's published test accounts, so a missing registration shows.
OEN = {"oen_merchant_id": "bench", "oen_token": "bench-oen-token-not-for-production"}
MYPAY_STORE_UID = "100000000777"
OPAY = {"opay_merchant_id": "3000777", "opay_hash_key": "BenchHashKey0777", "opay_hash_iv": "BenchHashIV00777"}


# ---------------------------------------------------------------- the machine


def cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{usable} usable of {os.cpu_count()}"


def machine_lines() -> list[str]:
    return [
        f"machine: {platform.machine()}, {cores()} cores, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, {load_average()}",
    ]


def load_average() -> str:
    """The 1-minute load average: other work on the machine moves every figure (ratios move less)."""
    try:
        return f"load average {os.getloadavg()[0]:.1f}"
    except OSError:
        return "load average unknown"


def free_port() -> int:
    """A loopback port free right now (chosen by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- databases


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{Path(directory) / 'bench.db'}"


def postgres_url(dbname: str = "portal_bench") -> tuple[str | None, str]:
    """A fresh, empty PostgreSQL database for the benchmarks, or (None, why not).

    The server and role come from BENCH_POSTGRES_URL, else TEST_POSTGRES_URL, else .ci/run's default; the database
    `dbname` is dropped and created again (the role has CREATEDB in .ci/run).
    """
    base = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError as exc:  # pragma: no cover - psycopg is a runtime requirement
        return None, f"psycopg missing ({exc})"
    url = make_url(base)
    if url.host not in ("127.0.0.1", "localhost", "::1", None):
        return None, f"{url.host} is not loopback; the benchmarks only talk to 127.0.0.1"
    conninfo = dict(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
        connect_timeout=3,
    )
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{dbname}"')
            version = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # no server, no role, no right to create databases: skip with a notice
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return url.set(database=dbname).render_as_string(hide_password=False), f"PostgreSQL {version}"


def drop_postgres_database(database_url: str) -> None:
    """Drop the benchmark database again (best effort)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    try:
        with psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname="postgres" if url.database != "postgres" else "template1",
            connect_timeout=3,
            autocommit=True,
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    except Exception as exc:
        print(f"  (could not drop {url.database}: {type(exc).__name__})")


def _clean_environ() -> dict[str, str]:
    """This process's environment without the settings of a portal, a sandbox or gunicorn."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "SANDBOX_", "PORTAL_"))}
    for name in ("DATABASE_URL", "PORT", "PROVIDER_ENV", "SECRET_KEY", "FLASK_APP"):
        env.pop(name, None)
    for name in [k for k in env if k.startswith(("OEN_", "MYPAY_", "OPAY_"))]:
        env.pop(name)
    return env


def portal_env(database_url: str, port: int, sandbox_url: str | None = None, **extra: object) -> dict[str, str]:
    """The environment of a portal process (migrations and gunicorn) for the benchmarks.

    PROVIDER_ENV=sandbox: the providers are the sandbox server at sandbox_url (default the portal's port + 1, where
    nothing of the benchmarks listens: give the URL of the sandbox_server started for the run).
    """
    env = _clean_environ()
    env.update(
        DATABASE_URL=database_url,
        PROVIDER_ENV="sandbox",
        PORTAL_BASE_URL=f"http://127.0.0.1:{port}",
        SECRET_KEY=SECRET_KEY,
        PORTAL_DATA_KEY=DATA_KEY,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        LOG_LEVEL="WARNING",
        RATELIMIT_ENABLED="false",  # the work is measured, not the limits (gunicorn refuses per-process ones)
        PYTHONUNBUFFERED="1",
    )
    if sandbox_url:
        env["SANDBOX_URL"] = sandbox_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def migrate(database_url: str) -> None:
    """`flask --app wsgi db upgrade` on the benchmark database."""
    env = portal_env(database_url, 5000)
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"db upgrade failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def make_app(database_url: str, port: int, sandbox_url: str | None = None, **config: object):
    """The portal app in this process, on the same database and keys as the gunicorn workers (for seeding/checks)."""
    from portal import create_app

    settings = {
        "DATABASE_URL": database_url,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": SECRET_KEY,
        "PORTAL_DATA_KEY": DATA_KEY,
        "PROVIDER_ENV": "sandbox",
        "PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    if sandbox_url:
        settings["SANDBOX_URL"] = sandbox_url
    return create_app({**settings, **config})


def seed_merchant(app, staff: str | None = None) -> int:
    """The benchmark merchant (every provider set up) and, if given, a staff user; returns the merchant id."""
    from portal.accounts import create_user, upsert_merchant
    from portal.extensions import db

    with app.app_context():
        merchant = upsert_merchant("bench", "Bench shop 測試商店", **OEN, mypay_store_uid=MYPAY_STORE_UID, **OPAY)
        db.session.flush()
        if staff:
            create_user(staff, merchant, "staff", PASSWORD)
        db.session.commit()
        return merchant.id


# ---------------------------------------------------------------- the sandbox (the simulated providers)


def sandbox_env(database: Path, port: int, portal_url: str, **settings: object) -> dict[str, str]:
    """The environment of a sandbox process: its own SQLite file, its SANDBOX_* settings, callbacks to portal_url."""
    env = _clean_environ()
    env.update(
        SANDBOX_DATABASE_URL=f"sqlite:///{database}",
        SANDBOX_SECRET_KEY=SANDBOX_SECRET_KEY,
        SANDBOX_PORTAL_URL=portal_url,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        PYTHONUNBUFFERED="1",
    )
    for name, value in settings.items():
        env[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


def register_bench_merchant(env: dict[str, str], portal_url: str) -> None:
    """`flask --app sandbox merchant add`: the sandbox issues the bench merchant's credentials (the ones seed_merchant
    gives the portal), its Oen webhooks and MyPay callbacks going to the portal under test."""
    command = [str(BIN / "flask"), "--app", "sandbox", "merchant", "add"]
    command += ["--oen-merchant-id", OEN["oen_merchant_id"], "--oen-token", OEN["oen_token"]]
    command += ["--oen-webhook-url", f"{portal_url}/webhooks/oen"]
    command += ["--mypay-store-uid", MYPAY_STORE_UID, "--mypay-callback-url", f"{portal_url}/webhooks/mypay"]
    command += ["--opay-merchant-id", OPAY["opay_merchant_id"]]
    command += ["--opay-hash-key", OPAY["opay_hash_key"], "--opay-hash-iv", OPAY["opay_hash_iv"]]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:  # its output holds the issued credentials: show only the error
        raise RuntimeError(f"sandbox merchant add failed ({done.returncode}):\n{done.stderr[-4000:]}")


def sandbox_server(name: str, log_dir: Path, portal_port: int, **settings: object) -> Server:
    """The sandbox in its own gunicorn (`sandbox:create_app()`), not started yet: its own database file in log_dir
    (tables made and the bench merchant registered now, before it starts), settings through its environment
    (SANDBOX_LATENCY_MS, GUNICORN_WORKERS...), callbacks to the portal at portal_port."""
    port, portal_url = free_port(), f"http://127.0.0.1:{portal_port}"
    env = sandbox_env(Path(log_dir) / f"{name}.db", port, portal_url, **settings)
    register_bench_merchant(env, portal_url)
    return Server(name, "sandbox:create_app()", env, port, log_dir, "/healthz")


# ---------------------------------------------------------------- gunicorn subprocesses

_RUNNING: list[Server] = []
ACCESS_LINE = re.compile(r'^\S+ "(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S*" \d{3} ')


class Server:
    """`.venv/bin/gunicorn -c gunicorn.conf.py APP` in its own process group, output to a log file."""

    def __init__(self, name: str, app_spec: str, env: dict[str, str], port: int, log_dir: Path, health: str):
        self.name, self.app_spec, self.env, self.port = name, app_spec, env, port
        self.health = health
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_within: float = 60) -> Server:
        # gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): give each server its own.
        self.env = dict(self.env)
        self.env["GUNICORN_CMD_ARGS"] = f"--control-socket {self.log_path.with_suffix('.ctl')}"
        log = open(self.log_path, "ab")  # noqa: SIM115  (closed with the process)
        self._log = log
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", self.app_spec],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _RUNNING.append(self)
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(self.url + self.health, timeout=2).status_code < 500:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.health} within {ready_within:g} s:\n{self.tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.terminate()  # gunicorn's master: graceful stop of its workers
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group made for this server only: any worker left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self._log.close()
        if self in _RUNNING:
            _RUNNING.remove(self)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def served(self, exclude: str = "/healthz") -> int:
        """Requests in the access log (gunicorn.conf.py's format: `host "METHOD /path" status ...`), but `exclude`."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return 0
        return sum(1 for line in lines if ACCESS_LINE.search(line) and f' {exclude}"' not in line)

    def log_count(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def first_traceback(self, max_lines: int = 40) -> str:
        """The first traceback in the server's log (for the report when something broke)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for n, line in enumerate(lines):
            if line.startswith("Traceback"):
                block = [line]
                for follow in lines[n + 1 : n + max_lines]:
                    block.append(follow)
                    if follow and not follow.startswith((" ", "Traceback", "During", "The above")):
                        break
                return "\n".join(block)
        return ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def _on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """In the benchmark's own process only: stop every server at exit, also on SIGTERM/SIGHUP (and Ctrl-C)."""
    atexit.register(_stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


# ---------------------------------------------------------------- load


@dataclass
class Result:
    status: int  # HTTP status, 0 for a transport error
    seconds: float
    ok: bool
    note: str = ""


@dataclass
class Load:
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0
    stopped_by_time: bool = False

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)

    @property
    def rate(self) -> float:
        return self.done / self.wall if self.wall else 0.0

    def pct(self, p: float) -> float:
        return percentile([r.seconds for r in self.results], p)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of the values; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def drive(
    jobs: Iterable,
    call: Callable[[requests.Session, object], Result],
    *,
    concurrency: int,
    time_limit: float,
    session_for: Callable[[int], requests.Session] | None = None,
) -> Load:
    """Run call(session, job) for every job from `concurrency` threads; no new job starts after time_limit seconds.

    Each thread has its own requests session (session_for(thread number), or a plain one).
    """
    pending = list(jobs)
    lock = threading.Lock()
    load = Load()
    start = time.perf_counter()
    deadline = start + time_limit

    def worker(n: int) -> None:
        session = session_for(n) if session_for else requests.Session()
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    if time.perf_counter() > deadline:
                        load.stopped_by_time = True
                        return
                    job = pending.pop(0)
                result = call(session, job)
                with lock:
                    load.results.append(result)
        finally:
            session.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=time_limit + 120)  # a request has its own timeout; this only bounds the wait
    load.wall = time.perf_counter() - start
    return load


# ---------------------------------------------------------------- CPU, by process (Linux /proc)


def _cpu_of(stat: str, reaped: bool) -> float:
    """Seconds of CPU in a /proc/<pid>/stat line: the process's own (utime, stime), and with `reaped` its waited-for
    children's (cutime, cstime): a gunicorn worker that was replaced, a PostgreSQL backend that ended."""
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _processes() -> list[tuple[int, int, str, str]]:
    """(pid, parent pid, command name, stat line) of every process."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            out.append((int(entry), int(stat.rsplit(")", 1)[1].split()[1]), name, stat))
    return out


def cpu_seconds(root_pid: int | None = None, name: str | None = None) -> float:
    """CPU seconds used so far by a process and its children (root_pid: a gunicorn master and its workers), or by
    every process of that command name and their children (name: "postgres", the database server), those that ended
    included; 0 where /proc cannot tell."""
    try:
        processes = _processes()
    except OSError:
        return 0.0
    if name is not None:
        return sum(_cpu_of(stat, reaped=True) for _pid, _ppid, comm, stat in processes if comm == name)
    total = 0.0
    for pid, ppid, _comm, stat in processes:
        if pid == root_pid:
            total += _cpu_of(stat, reaped=True)
        elif ppid == root_pid:
            total += _cpu_of(stat, reaped=False)
    return total


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, /proc/stat: all but idle and iowait)."""
    try:
        ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU per request of one side of a comparison, summed over its turns: its gunicorn (master and workers), the
    database server, this process (the client), and the whole machine."""

    PARTS = ("server", "database", "client", "machine")

    def __init__(self, server: Server, database: str | None):
        self.server, self.database = server, database
        self.used = dict.fromkeys(self.PARTS, 0.0)
        self.requests = 0

    def _now(self) -> dict[str, float]:
        pid = self.server.proc.pid if self.server.proc is not None else None
        return {
            "server": cpu_seconds(root_pid=pid) if pid else 0.0,
            "database": cpu_seconds(name=self.database) if self.database else 0.0,
            "client": time.process_time(),
            "machine": machine_cpu_seconds(),
        }

    def metered(self, run: Callable[[list], Load]) -> Callable[[list], Load]:
        """`run` (one side's turn), its CPU added to this meter's."""

        def turn(part: list) -> Load:
            before = self._now()
            load = run(part)
            after = self._now()
            for key in self.PARTS:
                self.used[key] += after[key] - before[key]
            self.requests += load.done
            return load

        return turn

    def per_request_ms(self) -> dict[str, float]:
        return {key: 1000 * value / max(1, self.requests) for key, value in self.used.items()}


def alternate(
    jobs: list, rounds: int, portal: Callable[[list], Load], bare: Callable[[list], Load]
) -> tuple[Load, Load, list[float]]:
    """The portal and its bare endpoint driven in turns, each sent the same `rounds` consecutive slices of `jobs`
    (whoever went second goes first in the next round): (the portal's load, the bare endpoint's, each round's ratio).

    The machine's speed drifts over a run (other guests on the host): measured one after the other, each side would
    be timed in a different stretch of it; in turns, both sides meet the same stretches. Each side's load is its
    rounds together: its rate is all its requests over the time its rounds took."""
    size = -(-len(jobs) // max(1, rounds))
    slices = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    portal_loads: list[Load] = []
    bare_loads: list[Load] = []
    ratios: list[float] = []
    for n, part in enumerate(slices):
        turns = [(portal, portal_loads), (bare, bare_loads)]
        for run, loads in turns if n % 2 == 0 else reversed(turns):
            loads.append(run(part))
        ratios.append(portal_loads[-1].rate / bare_loads[-1].rate if bare_loads[-1].rate else 0.0)
    return merged(portal_loads), merged(bare_loads), ratios


def merged(loads: list[Load]) -> Load:
    """Loads run one after another, as one: their results, and the time they took together."""
    out = Load()
    for load in loads:
        out.results += load.results
        out.wall += load.wall
        out.stopped_by_time = out.stopped_by_time or load.stopped_by_time
    return out


def spread(ratios: list[float]) -> str:
    """Each round's ratio, for the reader to see how far the machine moved them."""
    return " ".join(f"{ratio:.2f}" for ratio in ratios)


def timed_post(session: requests.Session, url: str, ok: Callable[[requests.Response], bool], **kw) -> Result:
    started = time.perf_counter()
    try:
        response = session.post(url, timeout=kw.pop("timeout", 30), **kw)
    except requests.RequestException as exc:
        return Result(0, time.perf_counter() - started, False, type(exc).__name__)
    elapsed = time.perf_counter() - started
    good = ok(response)
    return Result(response.status_code, elapsed, good, "" if good else response.text[:200])


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain text table, right-aligned numbers."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    print("bench/_common.py: helpers for the other benchmarks; nothing to measure here.")


def report_problems(problems: list[str], all_well: str) -> None:
    """Print what went wrong in a run, or the sentence that says nothing did."""
    if problems:
        print("problems:")
        for line in problems:
            print(f"  - {line}")
    else:
        print(all_well)
