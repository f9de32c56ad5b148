"""`instrument-id bench replicas`: two replicas of the shipped models on a throwaway PostgreSQL, under wrk."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("ai_edge_litert.interpreter")
pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'instrument-id[serve]')")

from bench.pg_server import PostgresUnavailable, server_bindir  # noqa: E402
from bench.replicas import STICKY_CLIENTS  # noqa: E402
from instrument_id.cli import main  # noqa: E402


def test_bench_replicas_logs_every_answer_and_both_report_alike(capsys):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    try:
        server_bindir()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    assert main(["bench", "replicas", "--seconds", "1", "--clients", "2", "--workers", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["answers_200"] > 0 and figures["errors"] == 0
    assert figures["answers_200"] <= figures["rows_logged"] <= figures["answers_200"] + figures["in_flight_at_stop"]
    assert figures["sticky_across_replicas"] and figures["reports_identical"]
    assert sum(figures["report_counts"].values()) == figures["rows_logged"] + 2 * STICKY_CLIENTS  # + the sticky check
