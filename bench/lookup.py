#!/usr/bin/env python3
"""The price of a look-up by session on a big SQLite store: one session's
page, as the API and the admin read it, through the index keyed by the day
(migration 0012) and by the hour (0013), warm, on one copy holding both.

    cp bench/.prefill-10000000/the-eye.db /tmp/lk.db     # a store at 0012 or later
    sqlite3 /tmp/lk.db 'CREATE INDEX IF NOT EXISTS events_day_session ON events (occurred_at / 86400000000, session_id, occurred_at)'
    sqlite3 /tmp/lk.db 'CREATE INDEX IF NOT EXISTS events_hour_session ON events (occurred_at / 3600000000, session_id, occurred_at)'
    python3 bench/lookup.py /tmp/lk.db
    python3 bench/lookup.py COPY.db hour    # only one index (a store made at 0013 or later has no day one)

(Python's own sqlite3 module can run the two CREATE INDEX statements too.)
Prints each shape's query plan and the median and largest time of 45
look-ups: 40 sessions drawn at random from the store, 5 missing ones.
"""
import random
import sqlite3
import sys
import time

PERIODS = [("day", "occurred_at / 86400000000"), ("hour", "occurred_at / 3600000000")]


def page(period):
    """The shape of `SESSION_ON_ANY_HOUR` (src/store/sqlite/events.rs) for `period`."""
    return (
        f"SELECT id FROM events WHERE 1 = 1 AND {period} IN (WITH RECURSIVE ps(p) AS "
        f"(SELECT (SELECT {period} FROM events ORDER BY 1 LIMIT 1) UNION ALL SELECT "
        f"(SELECT {period} FROM events WHERE {period} > p ORDER BY 1 LIMIT 1) FROM ps "
        f"WHERE p IS NOT NULL) SELECT p FROM ps) AND session_id = ? "
        f"ORDER BY {period} DESC, occurred_at DESC, id DESC LIMIT 51"
    )


def main():
    db = sqlite3.connect(sys.argv[1])
    print("SQLite", sqlite3.sqlite_version)
    last = db.execute("SELECT max(id) FROM events").fetchone()[0]
    sessions = []
    while len(sessions) < 40:
        row = db.execute("SELECT session_id FROM events WHERE id = ?", (random.randint(1, last),)).fetchone()
        if row:
            sessions.append(row[0])
    sessions += ["no-such-session"] * 5
    wanted = sys.argv[2:] or [name for name, _ in PERIODS]
    for name, period in (p for p in PERIODS if p[0] in wanted):
        sql = page(period)
        plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, ("x",))]
        print(name, plan[0])
        for s in sessions[:3]:
            db.execute(sql, (s,)).fetchall()
        times, rows = [], 0
        for s in sessions:
            start = time.perf_counter()
            rows += len(db.execute(sql, (s,)).fetchall())
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        print(f"{name}: {len(times)} look-ups, {rows} rows, median {times[len(times) // 2]:.2f} ms, max {times[-1]:.2f} ms")


if __name__ == "__main__":
    main()
