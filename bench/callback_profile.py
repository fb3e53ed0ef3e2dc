"""One O'Pay payment notice at a time, in this process (no gunicorn, no network): what a notice costs.

On a fresh SQLite file (or --database-url), makes open O'Pay checkouts, then sends each its payment notice through
Flask's test client, one after the other, and prints per notice: the milliseconds, the SQL statements, the write
transactions (commits) and the statements that read orders, items or checkouts; then the same for exact resends.
With --profile, the notices run under pyinstrument (a sampling profiler) and its call tree is printed: where the time
goes. The CPU time is this process's (the machine may be busy with other work; the wall time then says less).
Asserts nothing.

    .venv/bin/python bench/callback_profile.py [--count 300] [--profile] [--database-url URL]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common  # noqa: E402
from bench.callback_intake import opay_notice, open_checkouts  # noqa: E402

TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)
SUBQUERY = re.compile(r"\([^()]*\)")


class Counts:
    """SQL statements and commits seen on the engine while `on` is set."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.on = False
        self.cpu = 0.0
        self.statements = 0
        self.commits = 0
        self.tables: Counter = Counter()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, _conn, _cursor, statement, *_args):
        if self.on:
            self.statements += 1
            verb = statement.lstrip().split(None, 1)[0].upper()
            outer = statement
            while (inner := SUBQUERY.sub("", outer)) != outer:  # the statement's own table, not a subquery's
                outer = inner
            match = TABLE.search(outer)
            self.tables[f"{verb} {match.group(1) if match else ''}".strip()] += 1

    def _commit(self, _conn):
        if self.on:
            self.commits += 1


def send(client, bodies: list[str], counts: Counts) -> tuple[float, int]:
    """Post every body; (seconds, replies that were not 1|OK)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = 0
    counts.on = True
    started, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        reply = client.post("/webhooks/opay", data=body, headers=headers)
        if reply.status_code != 200 or reply.get_data(as_text=True) != "1|OK":
            bad += 1
    seconds = time.perf_counter() - started
    counts.cpu = time.process_time() - cpu
    counts.on = False
    return seconds, bad


def report(label: str, n: int, seconds: float, bad: int, counts: Counts) -> None:
    print(
        f"{label}: {n} notices, {seconds / n * 1000:.1f} ms each ({counts.cpu / n * 1000:.1f} ms CPU), "
        f"{counts.statements / n:.1f} SQL statements and "
        f"{counts.commits / n:.1f} commits each; not 1|OK: {bad}"
    )
    top = ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(counts.tables.items(), key=lambda kv: -kv[1]))
    print(f"  statements per notice by kind: {top}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="print pyinstrument's call tree of the first notices")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args(argv)
    print("callback profile: O'Pay notices one at a time through the test client (no HTTP server)")
    for line in common.machine_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        url = args.database_url or common.sqlite_url(Path(tmp))
        common.migrate(url)
        app = common.make_app(url, 5000, LOG_LEVEL="ERROR", RATELIMIT_ENABLED=False)
        merchant_id = common.seed_merchant(app)
        checkouts = open_checkouts(app, merchant_id, args.count)
        bodies = [opay_notice(reference, n) for n, (_id, reference) in enumerate(checkouts)]
        with app.app_context():
            from portal.extensions import db

            counts = Counts(db.engine)
        client = app.test_client()
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        seconds, bad = send(client, bodies, counts)
        if profiler is not None:
            profiler.stop()
        report("first notices", len(bodies), seconds, bad, counts)
        resends = bodies[: max(1, len(bodies) // 10)]
        counts.statements = counts.commits = 0
        counts.tables.clear()
        seconds, bad = send(client, resends, counts)
        report("exact resends", len(resends), seconds, bad, counts)
        if profiler is not None:
            print(profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
