"""`instrument-id bench rate-limits`: every storage asked for is measured with forked processes, its scope named."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("limits")

from instrument_id.cli import main  # noqa: E402


def test_bench_rate_limits_times_memory_and_the_shared_sqlite_file(tmp_path, capsys):
    named = f"sqlite://{tmp_path / 'limits.sqlite'}"
    assert main(["bench", "rate-limits", "--requests", "40", "--processes", "2", "--storage", "memory://",
                 "--storage", "sqlite://", "--storage", named, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    rows = {row["storage"]: row for row in figures["storages"]}
    assert [rows[uri]["scope"] for uri in ("memory://", "sqlite://", named)] == ["process", "replica", "host"]
    for row in rows.values():
        assert row["requests"] == 80 and 0 < row["median_us"] <= row["p90_us"] <= row["p99_us"]
        assert row["requests_per_second"] > 0
    assert (tmp_path / "limits.sqlite").is_file()  # the named file is the one counted in


@pytest.mark.parametrize("args, says", [
    (["--requests", "0"], "--requests and --processes must be at least 1"),
    (["--storage", "sqlite://relative/limits.sqlite"], "sqlite:// cannot be used"),
])
def test_bench_rate_limits_refuses_bad_arguments(capsys, args, says):
    assert main(["bench", "rate-limits", *args]) == 2
    assert says in capsys.readouterr().err
