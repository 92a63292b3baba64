#!/usr/bin/env python3
"""Peer benchmark for issue 7: renmian's event log appended and replayed with Python's
`eventsourcing` library (PyPI), on SQLite and PostgreSQL.

Input: a renmian dump (`renmian dump-events --out FILE`, JSON Lines, one stored event per
line in global position order). The events are appended exactly as renmian commits them:
one transaction per notice, i.e. per consecutive run of events with the same
(aggregate_type, aggregate_id). Then the whole log is read back in order and each payload
is json-decoded (renmian's rebuild baseline does a serde_json decode of each payload).

Measured, per backend:

* recorder level (required): an ApplicationRecorder from the library's
  InfrastructureFactory.construct(env) with PERSISTENCE_MODULE = eventsourcing.sqlite /
  eventsourcing.postgres. append = `insert_events([StoredEvent, ...])` once per notice
  (the StoredEvent objects are built before the clock starts); replay =
  `select_notifications(start, limit=PAGE)` until exhausted, `json.loads(state)` each.
* application level (optional, --application): an eventsourcing Application with one
  Aggregate per renmian aggregate, one `app.save(aggregate)` per notice (event objects
  built, transcoded and mapped by the library); replay = `app.notification_log.select`
  pages + `app.mapper.to_domain_event` for each notification.
* raw driver (optional, --baseline): no library, the same table shape and grouping through
  sqlite3 / psycopg directly; a same-run reference for how busy the machine is.
* renmian's table (optional, --renmian-table, SQLite): no library, the dump's rows with all
  their columns into renmian's own event log schema, appended as renmian appends them,
  through sqlite3: what Python makes of renmian's rows.

Output: a markdown table, then one JSON object per measurement, on stdout. Progress goes to
stderr.

    eventsourcing_peer.py DUMP [--only sqlite|postgres]
        [--postgres postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME]
        [--application] [--baseline] [--renmian-table] [--replicate K] [--page N] [--no-verify]
        [--keep-database]

PostgreSQL: the database named in --postgres is created if missing (through the server's
`postgres` maintenance database) and dropped at the end if this script created it
(--keep-database keeps it). If it already existed, only the library's tables are dropped
before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from typing import Any
from urllib.parse import unquote, urlparse

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import InfrastructureFactory, StoredEvent

# Namespace for deterministic originator ids of non-UUID renmian aggregate ids.
RENMIAN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:renmian:aggregate")
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/peer_bench"
# Tables the library creates in the application recorder's database.
LIBRARY_TABLES = ("stored_events", "peerapp_events", "peerapp_snapshots")


def log(msg: str) -> None:
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


def originator_uuid(aggregate_type: str, aggregate_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(aggregate_id)
    except ValueError:
        return uuid.uuid5(RENMIAN_NAMESPACE, f"{aggregate_type}/{aggregate_id}")


# --------------------------------------------------------------------------- the dump


@dataclass
class Commit:
    """One renmian transaction: a consecutive run of one aggregate's events."""

    aggregate_type: str
    aggregate_id: str
    originator_id: uuid.UUID
    events: list[StoredEvent] = field(default_factory=list)


def dump_runs(path: str):
    """The dump's rows (dicts, as renmian stored them), a run of one aggregate's consecutive
    events at a time: (aggregate_type, aggregate_id, rows), one renmian transaction each."""
    run: tuple[str, str, list[dict]] | None = None
    last_position = 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            e = json.loads(line)
            if e["position"] <= last_position:
                raise SystemExit(f"{path}:{line_no}: positions not increasing")
            last_position = e["position"]
            if run is None or run[:2] != (e["aggregate_type"], e["aggregate_id"]):
                if run is not None:
                    yield run
                run = (e["aggregate_type"], e["aggregate_id"], [])
            run[2].append(e)
    if run is not None:
        yield run


def load_dump(path: str) -> list[Commit]:
    commits: list[Commit] = []
    for aggregate_type, aggregate_id, rows in dump_runs(path):
        commit = Commit(aggregate_type, aggregate_id, originator_uuid(aggregate_type, aggregate_id))
        commit.events = [
            StoredEvent(
                originator_id=commit.originator_id,
                originator_version=int(e["sequence"]),
                topic=e["event_type"],
                state=e["payload"].encode("utf-8"),
            )
            for e in rows
        ]
        commits.append(commit)
    return commits


def replicate(commits: list[Commit], times: int) -> list[Commit]:
    """The dump `times` over, copy after copy, each copy with its own aggregate ids
    (uuid5 of the original id and the copy number): a larger log of the same shape, for when
    ingesting a larger workload through renmian takes too long."""
    out = list(commits)
    for k in range(1, times):
        for c in commits:
            oid = uuid.uuid5(c.originator_id, f"copy-{k}")
            out.append(
                Commit(
                    c.aggregate_type,
                    str(oid),
                    oid,
                    [
                        StoredEvent(oid, e.originator_version, e.topic, e.state)
                        for e in c.events
                    ],
                )
            )
    return out


# --------------------------------------------------------------------------- backends


def sqlite_env(db_path: str) -> dict[str, str]:
    # The library's defaults for a file database: it switches the file to WAL and leaves
    # `synchronous` at SQLite's compiled default (reported in the output).
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db_path}


def postgres_env(url: str) -> dict[str, str]:
    u = urlparse(url)
    if u.scheme not in ("postgres", "postgresql") or not u.path.strip("/"):
        raise SystemExit(f"--postgres: expected postgres://USER@HOST[:PORT]/DBNAME, got {url}")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": u.path.strip("/"),
        "POSTGRES_HOST": u.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(u.port or 5432),
        "POSTGRES_USER": unquote(u.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(u.password or ""),
    }


class PostgresDatabase:
    """Creates the bench database if missing; drops it afterwards only if created here."""

    def __init__(self, env: dict[str, str], keep: bool):
        import psycopg

        self.psycopg = psycopg
        self.env = env
        self.keep = keep
        self.created = False

    def _connect(self, dbname: str):
        return self.psycopg.connect(
            dbname=dbname,
            host=self.env["POSTGRES_HOST"],
            port=self.env["POSTGRES_PORT"],
            user=self.env["POSTGRES_USER"],
            password=self.env["POSTGRES_PASSWORD"],
            autocommit=True,
        )

    def __enter__(self) -> "PostgresDatabase":
        from psycopg import sql

        name = self.env["POSTGRES_DBNAME"]
        with self._connect("postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                self.created = True
                log(f"postgres: created database {name}")
        return self

    def reset_tables(self) -> None:
        from psycopg import sql

        with self._connect(self.env["POSTGRES_DBNAME"]) as conn:
            for table in LIBRARY_TABLES:
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table))
                )

    def settings(self) -> dict[str, str]:
        with self._connect(self.env["POSTGRES_DBNAME"]) as conn:
            out = {"server_version": conn.execute("SHOW server_version").fetchone()[0]}
            for name in ("fsync", "synchronous_commit", "wal_sync_method"):
                out[name] = conn.execute(f"SHOW {name}").fetchone()[0]
            return out

    def __exit__(self, *exc: object) -> None:
        from psycopg import sql

        if self.created and not self.keep:
            name = self.env["POSTGRES_DBNAME"]
            with self._connect("postgres") as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(name)
                    )
                )
            log(f"postgres: dropped database {name}")


# --------------------------------------------------------------------------- recorder level


def bench_recorder(env: dict[str, str], commits: list[Commit], page: int, verify: bool):
    factory = InfrastructureFactory.construct(env)
    recorder = factory.application_recorder()
    total = sum(len(c.events) for c in commits)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for c in commits:
            recorder.insert_events(c.events)
        append_s, append_cpu = time.perf_counter() - t0, time.process_time() - c0

        replayed = 0
        start = 1
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            notes = recorder.select_notifications(start=start, limit=page)
            if not notes:
                break
            for n in notes:
                json.loads(n.state)
            replayed += len(notes)
            start = notes[-1].id + 1
        replay_s, replay_cpu = time.perf_counter() - t0, time.process_time() - c0
        if replayed != total:
            raise SystemExit(f"replayed {replayed} events, appended {total}")

        if verify:  # not timed: the log reads back in the dump's order, byte for byte
            expected = (e for c in commits for e in c.events)
            start = 1
            while True:
                notes = recorder.select_notifications(start=start, limit=page)
                if not notes:
                    break
                for n in notes:
                    e = next(expected)
                    if (
                        uuid.UUID(str(n.originator_id)) != e.originator_id
                        or n.originator_version != e.originator_version
                        or n.topic != e.topic
                        or n.state != e.state
                    ):
                        raise SystemExit(f"notification {n.id} differs from the dump")
                start = notes[-1].id + 1
    finally:
        factory.close()
    return total, (append_s, append_cpu), (replay_s, replay_cpu)


# --------------------------------------------------------------------------- raw driver baseline


def replay_pages(fetch_page):
    """The raw baselines' replay: pages of (position, ..., state) rows from
    `fetch_page(after)` until one is empty, each state decoded as JSON. Returns the number of
    rows and the (wall, CPU) seconds it took."""
    replayed, last = 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    while True:
        got = fetch_page(last)
        if not got:
            break
        for row in got:
            json.loads(row[4])
        replayed += len(got)
        last = got[-1][0]
    return replayed, (time.perf_counter() - t0, time.process_time() - c0)


def bench_raw_sqlite(db_path: str, commits: list[Commit], page: int):
    """No library: the same table shape, WAL, default synchronous, one BEGIN/executemany/COMMIT
    per notice; replay pages by rowid. A same-run reference for the machine's noise."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
        "state BLOB, PRIMARY KEY (originator_id, originator_version))"
    )
    rows = [
        [(e.originator_id.hex, e.originator_version, e.topic, e.state) for e in c.events]
        for c in commits
    ]
    total = sum(len(r) for r in rows)
    t0, c0 = time.perf_counter(), time.process_time()
    for r in rows:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events VALUES (?,?,?,?)", r)
        conn.execute("COMMIT")
    append = (time.perf_counter() - t0, time.process_time() - c0)
    replayed, replay = replay_pages(
        lambda last: conn.execute(
            "SELECT rowid, * FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?", (last, page)
        ).fetchall()
    )
    conn.close()
    if replayed != total:
        raise SystemExit(f"raw sqlite: replayed {replayed} events, appended {total}")
    return total, append, replay


RENMIAN_COLUMNS = (
    "position", "aggregate_type", "aggregate_id", "sequence", "event_type", "event_version",
    "payload", "metadata", "recorded_at", "actor", "document_number", "source_line", "clause",
    "prev_hash", "hash",
)
RENMIAN_LOG_DDL = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "migrations", "sqlite",
    "0001_event_log.sql",
)


def bench_renmian_table_sqlite(db_path: str, dump: str, page: int):
    """No library, and renmian's own table: the dump's rows, all 15 columns as renmian stored
    them, into the event log's schema (migrations/sqlite/0001_event_log.sql: the table with
    its unique key on (aggregate_type, aggregate_id, sequence), the immutability triggers, the
    head row), with renmian's durability (WAL, synchronous=FULL). Per notice, as renmian
    appends: BEGIN, the head row moved, one executemany INSERT, COMMIT. What Python's sqlite3
    makes of renmian's rows, beside what it makes of the library's."""
    commits = [
        [tuple(e[c] for c in RENMIAN_COLUMNS) for e in rows] for _, _, rows in dump_runs(dump)
    ]
    total = sum(len(c) for c in commits)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    with open(RENMIAN_LOG_DDL, encoding="utf-8") as f:
        conn.executescript(f.read())
    insert = (
        f"INSERT INTO events ({', '.join(RENMIAN_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(RENMIAN_COLUMNS))})"
    )
    head = "UPDATE event_log_head SET position = ?, hash = ? WHERE id = 1"
    t0, c0 = time.perf_counter(), time.process_time()
    for c in commits:
        conn.execute("BEGIN")
        conn.execute(head, (c[-1][0], c[-1][-1]))
        conn.executemany(insert, c)
        conn.execute("COMMIT")
    append = (time.perf_counter() - t0, time.process_time() - c0)
    replayed, replay = replay_pages(
        lambda last: conn.execute(
            "SELECT position, aggregate_id, sequence, event_type, payload FROM events "
            "WHERE position > ? ORDER BY position LIMIT ?", (last, page)
        ).fetchall()
    )
    conn.close()
    if replayed != total:
        raise SystemExit(f"renmian's table: replayed {replayed} events, appended {total}")
    return total, append, replay


def bench_raw_postgres(env: dict[str, str], commits: list[Commit], page: int):
    """No library: the same table shape as the library's, one multi-row INSERT (<= 500 rows)
    per notice in its own transaction; replay pages by notification_id."""
    import psycopg

    conn = psycopg.connect(
        dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], autocommit=True,
    )
    conn.execute("DROP TABLE IF EXISTS peer_raw_events")
    conn.execute(
        "CREATE TABLE peer_raw_events (originator_id uuid NOT NULL, originator_version bigint "
        "NOT NULL, topic text, state bytea, notification_id bigserial, "
        "PRIMARY KEY (originator_id, originator_version))"
    )
    conn.execute("CREATE UNIQUE INDEX ON peer_raw_events (notification_id)")
    total = sum(len(c.events) for c in commits)
    t0, c0 = time.perf_counter(), time.process_time()
    for c in commits:
        with conn.transaction():
            for i in range(0, len(c.events), 500):
                chunk = c.events[i : i + 500]
                conn.execute(
                    "INSERT INTO peer_raw_events (originator_id, originator_version, topic, state)"
                    " VALUES " + ",".join(["(%s,%s,%s,%s)"] * len(chunk)),
                    [x for e in chunk for x in (e.originator_id, e.originator_version, e.topic, e.state)],
                )
    append = (time.perf_counter() - t0, time.process_time() - c0)
    replayed, replay = replay_pages(
        lambda last: conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM peer_raw_events WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
            (last, page),
        ).fetchall()
    )
    conn.execute("DROP TABLE peer_raw_events")
    conn.close()
    if replayed != total:
        raise SystemExit(f"raw postgres: replayed {replayed} events, appended {total}")
    return total, append, replay


# --------------------------------------------------------------------------- application level


def stream_id(key: str) -> uuid.UUID:
    aggregate_type, _, aggregate_id = key.partition("/")
    return originator_uuid(aggregate_type, aggregate_id)


class Stream(Aggregate):
    """A renmian aggregate as an eventsourcing aggregate: each renmian event becomes one
    library event carrying renmian's event type and decoded payload."""

    @staticmethod
    def create_id(key: str) -> uuid.UUID:  # type: ignore[override]
        return stream_id(key)

    @event("Recorded")
    def __init__(self, key: str, event_type: str, payload: Any):
        self.key = key
        self.count = 1

    @event("Appended")
    def append(self, event_type: str, payload: Any) -> None:
        self.count += 1


class PeerApp(Application):
    name = "PeerApp"


def bench_application(env: dict[str, str], commits: list[Commit], page: int):
    # Payloads decoded before the clock starts: the library's transcoder re-encodes them.
    work = [
        (f"{c.aggregate_type}/{c.aggregate_id}", [(e.topic, json.loads(e.state)) for e in c.events])
        for c in commits
    ]
    total = sum(len(events) for _, events in work)
    # Application.construct_env merges os.environ; the explicit env wins.
    PeerApp.log_section_size = page  # the notification log refuses larger selects
    app = PeerApp(env=env)
    streams: dict[str, Stream] = {}
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for key, events in work:
            agg = streams.get(key)
            for event_type, payload in events:
                if agg is None:
                    agg = Stream(key=key, event_type=event_type, payload=payload)
                    streams[key] = agg
                else:
                    agg.append(event_type=event_type, payload=payload)
            app.save(agg)
        append_s, append_cpu = time.perf_counter() - t0, time.process_time() - c0

        replayed = 0
        start = 1
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            notes = app.notification_log.select(start=start, limit=page)
            if not notes:
                break
            for n in notes:
                app.mapper.to_domain_event(n)
            replayed += len(notes)
            start = notes[-1].id + 1
        replay_s, replay_cpu = time.perf_counter() - t0, time.process_time() - c0
        if replayed != total:
            raise SystemExit(f"application: replayed {replayed} events, appended {total}")
    finally:
        app.close()
    return total, (append_s, append_cpu), (replay_s, replay_cpu)


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump", help="renmian dump-events output (JSON Lines)")
    ap.add_argument("--only", choices=("sqlite", "postgres"))
    ap.add_argument(
        "--postgres",
        default=os.environ.get("PEER_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME (default {DEFAULT_POSTGRES})",
    )
    ap.add_argument("--page", type=int, default=1000, help="notifications per select")
    ap.add_argument("--application", action="store_true",
                    help="also measure the library's Application/Aggregate path")
    ap.add_argument("--baseline", action="store_true",
                    help="also measure the raw driver (sqlite3 / psycopg) without the library")
    ap.add_argument("--renmian-table", action="store_true",
                    help="also append the dump's rows, all columns, into renmian's own SQLite "
                         "event log schema through sqlite3 (SQLite only; not with --replicate)")
    ap.add_argument("--replicate", type=int, default=1, metavar="K",
                    help="append the dump K times over (fresh aggregate ids per copy)")
    ap.add_argument("--no-verify", action="store_true",
                    help="skip the untimed read-back check against the dump")
    ap.add_argument("--keep-database", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    commits = load_dump(args.dump)
    if args.replicate > 1:
        commits = replicate(commits, args.replicate)
    total = sum(len(c.events) for c in commits)
    payload_bytes = sum(len(e.state) for c in commits for e in c.events)
    log(
        f"loaded {total} events in {len(commits)} commits from {args.dump} "
        f"({payload_bytes / total:.0f} payload bytes/event avg) in {time.perf_counter() - t0:.1f}s"
    )
    if not commits:
        raise SystemExit("empty dump")

    versions = {d: dist_version(d) for d in ("eventsourcing", "psycopg", "psycopg-pool")}
    try:
        import psycopg

        versions["psycopg_impl"] = psycopg.pq.__impl__  # python (ctypes libpq), c or binary
        versions["libpq"] = psycopg.pq.version()
    except ImportError:
        pass
    common = {
        "peer": "eventsourcing",
        "versions": versions,
        "python": platform.python_version(),
        "events": total,
        "transactions": len(commits),
        "page": args.page,
        "replicated": args.replicate,
    }
    results: list[dict[str, Any]] = []

    def record(backend: str, layer: str, phase: str, n: int, timing: tuple[float, float],
               **extra: Any):
        seconds, cpu = timing
        row = {
            **common,
            "backend": backend,
            "layer": layer,
            "phase": phase,
            "events": n,
            "seconds": round(seconds, 3),
            "client_cpu_seconds": round(cpu, 3),
            "events_per_s": round(n / seconds, 1),
            **extra,
        }
        results.append(row)
        log(
            f"{backend} {layer} {phase}: {n} events in {seconds:.2f}s "
            f"(client CPU {cpu:.2f}s) = {n / seconds:.0f}/s"
        )

    backends = [args.only] if args.only else ["sqlite", "postgres"]
    for backend in backends:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="peer-sqlite-") as tmp:
                db = os.path.join(tmp, "recorder.db")
                info = {
                    "sqlite_version": sqlite3.sqlite_version,
                    "synchronous": sqlite3.connect(":memory:")
                    .execute("PRAGMA synchronous").fetchone()[0],
                }
                n, a, r = bench_recorder(sqlite_env(db), commits, args.page, not args.no_verify)
                with sqlite3.connect(db) as c:
                    info["journal_mode"] = c.execute("PRAGMA journal_mode").fetchone()[0]
                info["db_bytes"] = sum(
                    os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)
                )
                record("sqlite", "recorder", "append", n, a, settings=info)
                record("sqlite", "recorder", "replay", n, r, settings=info)
                if args.baseline:
                    n, a, r = bench_raw_sqlite(os.path.join(tmp, "raw.db"), commits, args.page)
                    record("sqlite", "raw driver", "append", n, a, settings=info)
                    record("sqlite", "raw driver", "replay", n, r, settings=info)
                if args.renmian_table:
                    if args.replicate > 1:
                        raise SystemExit("--renmian-table appends the dump once: no --replicate")
                    n, a, r = bench_renmian_table_sqlite(
                        os.path.join(tmp, "renmian.db"), args.dump, args.page
                    )
                    record("sqlite", "raw driver, renmian's table", "append", n, a, settings=info)
                    record("sqlite", "raw driver, renmian's table", "replay", n, r, settings=info)
                if args.application:
                    env = sqlite_env(os.path.join(tmp, "application.db"))
                    n, a, r = bench_application(env, commits, args.page)
                    record("sqlite", "application", "append", n, a, settings=info)
                    record("sqlite", "application", "replay", n, r, settings=info)
        else:
            env = postgres_env(args.postgres)
            with PostgresDatabase(env, args.keep_database) as pg:
                pg.reset_tables()
                info = pg.settings()
                n, a, r = bench_recorder(env, commits, args.page, not args.no_verify)
                record("postgres", "recorder", "append", n, a, settings=info)
                record("postgres", "recorder", "replay", n, r, settings=info)
                if args.baseline:
                    n, a, r = bench_raw_postgres(env, commits, args.page)
                    record("postgres", "raw driver", "append", n, a, settings=info)
                    record("postgres", "raw driver", "replay", n, r, settings=info)
                if args.application:
                    pg.reset_tables()
                    n, a, r = bench_application(env, commits, args.page)
                    record("postgres", "application", "append", n, a, settings=info)
                    record("postgres", "application", "replay", n, r, settings=info)
                pg.reset_tables()

    print(
        f"eventsourcing {versions['eventsourcing']} (psycopg {versions['psycopg']} "
        f"{versions.get('psycopg_impl', '')}, "
        f"Python {common['python']}): {total} events in {len(commits)} transactions"
        + (f" (the dump {args.replicate} times over)" if args.replicate > 1 else "")
        + "\n"
    )
    print("| backend | layer | phase | events | seconds | client CPU s | events/s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['backend']} | {row['layer']} | {row['phase']} | {row['events']} "
            f"| {row['seconds']:.2f} | {row['client_cpu_seconds']:.2f} "
            f"| {row['events_per_s']:.0f} |"
        )
    print()
    for row in results:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
