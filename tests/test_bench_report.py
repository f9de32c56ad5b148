"""`instrument-id bench report` on a small log: the figures are printed, and the report counted every row."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("prometheus_client")

from bench.pg_server import PostgresUnavailable, server_bindir  # noqa: E402
from instrument_id.cli import main  # noqa: E402


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_bench_report_counts_every_synthetic_row(backend, capsys):
    if backend == "postgres":
        pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'instrument-id[serve]')")
        try:
            server_bindir()
        except PostgresUnavailable as exc:
            pytest.skip(str(exc))
    rows = 3000
    assert main(["bench", "report", "--rows", str(rows), "--backend", backend, "--repeats", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = figures["backends"][backend]
    assert len(result["report_ms_runs"]) == 2 and result["report_ms_median"] > 0 and result["read_all_rows_ms"] > 0
    assert result["routed_counted"] + 2 * result["compare_groups_counted"] == rows  # routed rows, or compare pairs
    assert result["feedback_counted"] == int(0.05 * rows)


def test_bench_report_refuses_bad_arguments(capsys):
    assert main(["bench", "report", "--rows", "0"]) == 2
    assert "--rows" in capsys.readouterr().err
