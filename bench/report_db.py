"""`instrument-id bench report`: the time /v2/ab/report spends in the log's database for a log of N predictions.

The log is filled with synthetic rows (A/B-routed predictions over two arms, /v2/compare pairs, a share with
feedback) in a fresh SQLite file and/or a throwaway PostgreSQL server (bench/pg_server.py), then the report's
queries run through the serving store, as a replica would run them, several times. Beside it: reading every row
and decoding its instruments, which is what the report did before it summed in the database.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from bench.cli import report
from instrument_id.errors import InstrumentIdError

BACKENDS = ("sqlite", "postgres")
LOAD_BATCH_ROWS = 50_000
READ_ALL_SQL = "SELECT id, arm, model, latency_ms, instruments, compare_group FROM predictions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench report`."""
    parser.add_argument("--rows", type=int, default=1_000_000, help="logged predictions (default 1,000,000)")
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both",
                        help="sqlite, postgres (a throwaway server: Debian's postgresql), or both (default)")
    parser.add_argument("--repeats", type=int, default=5, help="report calls timed per backend (default 5)")
    parser.add_argument("--compare-share", type=float, default=0.1, help="share of rows from /v2/compare pairs")
    parser.add_argument("--feedback-share", type=float, default=0.05, help="share of rows with feedback")
    parser.add_argument("--seed", type=int, default=0)


def synthetic_rows(n_rows: int, compare_share: float, seed: int) -> Iterator[list[tuple]]:
    """Batches of predictions rows in INSERT_COLUMNS order: routed to A or B, or A+B pairs of one compare group."""
    from instrument_id.instruments import column_names

    rng = random.Random(seed)
    columns = column_names()
    probabilities = json.dumps({c: 0.5 for c in columns})
    batch: list[tuple] = []
    made, now = 0, time.time()

    def row(arm: str, group: str | None) -> tuple:
        mask = rng.getrandbits(len(columns)) & rng.getrandbits(len(columns))  # ~a quarter of the instruments
        instruments = json.dumps([c for j, c in enumerate(columns) if mask >> j & 1])
        model = "mlp" if arm == "A" else "rf"
        return (uuid.UUID(int=rng.getrandbits(128)).hex, now, "/v2/compare" if group else "/v2/predict", arm, model,
                "v1", rng.lognormvariate(2.5, 0.5), 0.2, 2.0, 0.5, probabilities, instruments, 88244, None, group,
                None, None, mask)  # no Idempotency-Key, so neither key nor fingerprint

    while made < n_rows:
        if rng.random() < compare_share and made + 2 <= n_rows:
            group = uuid.UUID(int=rng.getrandbits(128)).hex
            batch += [row("A", group), row("B", group)]
            made += 2
        else:
            batch.append(row(rng.choice("AB"), None))
            made += 1
        if len(batch) >= LOAD_BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _feedback_rows(predictions: list[tuple[str, str, int]], share: float, seed: int) -> list[tuple]:
    """feedback rows (prediction_id, true_labels, ts, true_mask, arm, predicted_mask) for a random share of the
    (id, arm, mask) predictions."""
    from instrument_id.instruments import column_names

    rng, columns = random.Random(seed + 1), column_names()
    rows = []
    for prediction_id, arm, predicted in rng.sample(predictions, int(share * len(predictions))):
        mask = rng.getrandbits(len(columns)) & rng.getrandbits(len(columns))
        labels = json.dumps([c for j, c in enumerate(columns) if mask >> j & 1])
        rows.append((prediction_id, labels, time.time(), mask, arm, predicted))
    return rows


FEEDBACK_COLUMNS = "prediction_id, true_labels, ts, true_mask, arm, predicted_mask"


def _keys(batch: list[tuple]) -> list[tuple[str, str, int]]:
    """(id, arm, instruments_mask) of each row."""
    return [(row[0], row[3], row[-1]) for row in batch]


def _load_sqlite(path: Path, args: argparse.Namespace) -> None:
    import sqlite3

    from serving.store import INSERT_COLUMNS
    from serving.store_sql import insert_predictions_sql

    connection = sqlite3.connect(path, isolation_level=None)
    keys: list[tuple[str, str, int]] = []
    for batch in synthetic_rows(args.rows, args.compare_share, args.seed):
        connection.execute("BEGIN")
        connection.executemany(insert_predictions_sql(INSERT_COLUMNS), batch)
        connection.execute("COMMIT")
        keys += _keys(batch)
    connection.execute("BEGIN")
    connection.executemany(f"INSERT INTO feedback ({FEEDBACK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                           _feedback_rows(keys, args.feedback_share, args.seed))
    connection.execute("COMMIT")
    connection.close()


def _load_postgres(url: str, args: argparse.Namespace) -> None:
    import psycopg

    from serving.store import INSERT_COLUMNS

    keys: list[tuple[str, str, int]] = []
    with psycopg.connect(url) as connection:
        with connection.cursor() as cursor:
            for batch in synthetic_rows(args.rows, args.compare_share, args.seed):
                with cursor.copy(f"COPY predictions ({', '.join(INSERT_COLUMNS)}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                keys += _keys(batch)
            with cursor.copy(f"COPY feedback ({FEEDBACK_COLUMNS}) FROM STDIN") as copy:
                for row in _feedback_rows(keys, args.feedback_share, args.seed):
                    copy.write_row(row)
        connection.commit()
        connection.autocommit = True
        # as autovacuum leaves a log in use for a while: statistics fresh, visibility map set (index-only scans)
        connection.execute("VACUUM (FREEZE, ANALYZE)")


def _read_all_ms(fetch_all) -> float:
    """Milliseconds to read every row and decode its instruments (the report's work before this change)."""
    start = time.perf_counter()
    rows = fetch_all(READ_ALL_SQL)
    _ = [json.loads(row[4]) for row in rows]
    return 1e3 * (time.perf_counter() - start)


def _time_report(log, repeats: int) -> tuple[list[float], dict[str, Any]]:
    from serving.ab import ABRouter, ab_report
    from serving.config import ArmConfig

    router = ABRouter([ArmConfig("A", "mlp", 1.0), ArmConfig("B", "rf", 1.0)])
    runs, report = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        report = ab_report(router, log.report_aggregates([arm.name for arm in router.arms]))
        runs.append(1e3 * (time.perf_counter() - start))
    return runs, report


def _measure_sqlite(args: argparse.Namespace, work: Path) -> tuple[float, float, list[float], dict[str, Any]]:
    import sqlite3

    from prometheus_client import CollectorRegistry

    from serving.prediction_log import open_prediction_log

    started = time.perf_counter()
    path = work / "predictions.sqlite"
    log = open_prediction_log(path, CollectorRegistry())
    _load_sqlite(path, args)
    load_s = time.perf_counter() - started
    connection = sqlite3.connect(path)
    read_all_ms = _read_all_ms(lambda sql: connection.execute(sql).fetchall())
    connection.close()
    runs, report = _time_report(log, args.repeats)
    log.close()
    return load_s, read_all_ms, runs, report


def _measure_postgres(args: argparse.Namespace) -> tuple[float, float, list[float], dict[str, Any]]:
    import psycopg
    from prometheus_client import CollectorRegistry

    from bench.pg_server import PostgresUnavailable, temporary_postgres
    from serving.prediction_log import open_prediction_log

    try:
        with temporary_postgres() as url:
            started = time.perf_counter()
            log = open_prediction_log(url, CollectorRegistry())
            _load_postgres(url, args)
            load_s = time.perf_counter() - started
            with psycopg.connect(url) as connection:
                read_all_ms = _read_all_ms(lambda sql: connection.execute(sql).fetchall())
            runs, report = _time_report(log, args.repeats)
            log.close()
    except PostgresUnavailable as exc:
        raise InstrumentIdError(f"bench report --backend postgres: {exc}") from None
    return load_s, read_all_ms, runs, report


def measure_backend(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Fill one backend's log, time the report; the figures of that backend."""
    load_s, read_all_ms, runs, report = _measure_sqlite(args, work) if backend == "sqlite" else _measure_postgres(args)
    return {
        "report_ms_median": round(statistics.median(runs), 1), "report_ms_min": round(min(runs), 1),
        "report_ms_runs": [round(ms, 1) for ms in runs], "read_all_rows_ms": round(read_all_ms, 1),
        "load_seconds": round(load_s, 1), "routed_counted": sum(arm["count"] for arm in report["arms"].values()),
        "feedback_counted": sum(arm["feedback"]["n"] for arm in report["arms"].values()),
        "compare_groups_counted": report["arms"]["A"]["agreement"]["B"]["clips"],
    }


def print_report(figures: dict[str, Any]) -> None:
    """The figures as a few lines."""
    print(f"/v2/ab/report over {figures['rows']:,} logged predictions "
          f"({figures['compare_share']:.0%} from compare pairs, {figures['feedback_share']:.0%} with feedback)")
    for backend, result in figures["backends"].items():
        print(f"  {backend:9s} report {result['report_ms_median']:8.1f} ms (median of {len(result['report_ms_runs'])}, "
              f"min {result['report_ms_min']:.1f})   reading every row, as before: {result['read_all_rows_ms']:,.0f} ms   "
              f"[loaded in {result['load_seconds']:.0f} s; counted {result['routed_counted']:,} routed, "
              f"{result['compare_groups_counted']:,} compare groups, {result['feedback_counted']:,} feedback]")


def run(args: argparse.Namespace) -> int:
    """Fill each chosen backend's log and time the report on it."""
    if args.rows < 1 or args.repeats < 1:
        raise InstrumentIdError("--rows and --repeats must be at least 1")
    if not (0 <= args.compare_share <= 1 and 0 <= args.feedback_share <= 1):
        raise InstrumentIdError("--compare-share and --feedback-share must be between 0 and 1")
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    figures: dict[str, Any] = {"rows": args.rows, "compare_share": args.compare_share,
                               "feedback_share": args.feedback_share, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="instrument-id-bench-report-") as work:
        for backend in backends:
            figures["backends"][backend] = measure_backend(backend, args, Path(work))
    report(args, figures, print_report)
    return 0
