"""`instrument-id bench serve`: the wrk output parser on recorded runs, and the whole bench against both servers."""

from __future__ import annotations

import json
import re
import shutil

import pytest

pytest.importorskip("flask")
pytest.importorskip("gunicorn")
pytest.importorskip("ai_edge_litert.interpreter")

from bench.wrk import parse_wrk_output  # noqa: E402
from instrument_id.cli import main  # noqa: E402
from instrument_id.errors import InstrumentIdError  # noqa: E402
from serving_fixture import served_folders  # noqa: E402

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")

# recorded: wrk -t2 -c3 -d1s --timeout 5s --latency -s post_file.lua URL -- '/v2/predict?model=nope' clip.wav audio/wav
RECORDED_404 = """\
Running 1s test @ http://127.0.0.1:52311
  2 threads and 3 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.11ms    6.33ms  63.75ms   94.36%
    Req/Sec   502.25    318.70     0.95k    55.00%
  Latency Distribution
     50%    1.14ms
     75%    2.02ms
     90%    7.53ms
     99%   39.40ms
  1005 requests in 1.02s, 208.21KB read
  Non-2xx or 3xx responses: 1005
Requests/sec:    985.31
Transfer/sec:    204.13KB
WRK_JSON {"duration_us": 1019988, "requests": 1005, "bytes": 213212, "sent": 1007, "statuses": {"404": 1005}, \
"errors": {"connect": 0, "read": 0, "write": 0, "status": 1005, "timeout": 0}, \
"latency_us": {"p50": 1140, "p90": 7534, "p99": 39400, "max": 63752, "mean": 3112.3}}
"""

# recorded: the same against /RNA with -t1 -c1
RECORDED_200 = """\
Running 1s test @ http://127.0.0.1:52311
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    37.08ms   32.56ms 142.08ms   87.18%
    Req/Sec    35.11     17.01    58.00     66.67%
  Latency Distribution
     50%   26.62ms
     75%   36.51ms
     90%   99.10ms
     99%  142.08ms
  33 requests in 1.02s, 16.61KB read
Requests/sec:     32.20
Transfer/sec:     16.20KB
WRK_JSON {"duration_us": 1024977, "requests": 33, "bytes": 17004, "sent": 35, "statuses": {"200": 33}, \
"errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, \
"latency_us": {"p50": 26616, "p90": 99103, "p99": 142083, "max": 142083, "mean": 37082.8}}
"""


def _wrk_text_figure(text: str, pattern: str) -> float:
    """A number from wrk's own human-readable report (to hold the Lua figures against)."""
    return float(re.search(pattern, text).group(1))


@pytest.mark.parametrize("text", [RECORDED_404, RECORDED_200], ids=["all-404", "all-200"])
def test_parser_agrees_with_wrks_own_report(text):
    result = parse_wrk_output(text)
    assert result.requests_per_second == pytest.approx(_wrk_text_figure(text, r"Requests/sec:\s+([\d.]+)"), rel=1e-3)
    assert result.latency_p50_ms == pytest.approx(_wrk_text_figure(text, r"50%\s+([\d.]+)ms"), abs=0.01)
    assert result.latency_p99_ms == pytest.approx(_wrk_text_figure(text, r"99%\s+([\d.]+)ms"), abs=0.01)
    assert result.requests == int(_wrk_text_figure(text, r"(\d+) requests in"))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    assert result.errors == (int(non_2xx.group(1)) if non_2xx else 0)
    assert result.ok == result.requests - result.errors
    connections = int(_wrk_text_figure(text, r"(\d+) connections"))
    assert 0 <= result.unanswered <= connections  # one request at most in flight per connection


def test_parser_refuses_output_without_the_script_line():
    plain = "\n".join(line for line in RECORDED_200.splitlines() if not line.startswith("WRK_JSON"))
    with pytest.raises(InstrumentIdError, match="WRK_JSON"):
        parse_wrk_output(plain)
    with pytest.raises(InstrumentIdError, match="malformed"):
        parse_wrk_output(plain + '\nWRK_JSON {"requests": 3}\n')


@needs_wrk
def test_bench_serve_end_to_end(tmp_path_factory, capsys):
    models_dir = served_folders(tmp_path_factory).mlp.parent
    capsys.readouterr()  # building the models prints training summaries
    command = ["bench", "serve", "--model-dir", str(models_dir), "--seconds", "1", "--levels", "1", "2",
               "--workers", "1", "--slow-clients", "6", "--json"]
    assert main(command) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["server_args"] == "--workers 1"
    slow = figures["slow_clients"]  # the A/B route at 2 clients again, with 6 slow connections held open
    assert slow["slow_connections"] == 6 and slow["clients"] == 2 and slow["route"] == "/v2/predict?model=ab"
    assert slow["ok_200_with_slow"] > 0 and slow["errors_with_slow"] == 0 and slow["log_check"]["passed"]
    assert slow["slow_opened"] >= 6 and slow["slow_open_now"] == 6  # none refused within 1 s (the deadline is 10 s)
    assert 0 < slow["p50_ms_with_6_slow"] <= slow["p99_ms_with_6_slow"] and slow["p99_ms_without_slow"] > 0
    runs = {(run["server"], run["route"], run["clients"]) for run in figures["runs"]}
    expected = {(server, route, clients) for server, route in
                [("ours", "/v2/predict?model=ab"), ("ours", "/RNA"), ("baseline", "/RNA")] for clients in (1, 2)}
    assert runs == expected
    for run in figures["runs"]:
        assert run["ok_200"] > 0 and run["errors"] == 0, run
        assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"]
        if run["server"] == "ours":
            assert run["log_check"]["passed"], run
    check = figures["log_check"]
    assert check["passed"] and check["wrk_ok_200"] == sum(r["ok_200"] for r in figures["runs"] if r["server"] == "ours") + slow["ok_200_with_slow"]
    assert check["wrk_ok_200"] <= check["logged_predictions"] <= check["wrk_ok_200"] + check["unanswered_at_stop"]
    assert [ratio["route"] for ratio in figures["ratios"]] == ["/v2/predict?model=ab", "/RNA"]
    assert all(ratio["throughput_vs_baseline"] > 0 for ratio in figures["ratios"])
    # every route was warmed up at the most clients before its measured runs, and its rows logged too
    assert [(w["server"], w["route"], w["clients"]) for w in figures["warmups"]] == [
        ("ours", "/v2/predict?model=ab", 2), ("ours", "/RNA", 2), ("baseline", "/RNA", 2)]
    assert all(w["ok_200"] > 0 for w in figures["warmups"])
    assert check["warmup_predictions"] >= sum(w["ok_200"] for w in figures["warmups"] if w["server"] == "ours")


@needs_wrk
def test_bench_serve_measures_named_models_one_by_one(tmp_path_factory, capsys):
    models_dir = served_folders(tmp_path_factory).mlp.parent
    capsys.readouterr()
    command = ["bench", "serve", "--model-dir", str(models_dir), "--model", "mlp,rf", "--model", "ab",
               "--seconds", "1", "--levels", "1,2", "--workers", "1", "--json"]
    assert main(command) == 0
    figures = json.loads(capsys.readouterr().out)
    routes = ["/v2/predict?model=mlp", "/v2/predict?model=rf", "/v2/predict?model=ab"]
    assert [(run["server"], run["route"], run["clients"]) for run in figures["runs"]] == [
        ("ours", route, clients) for route in routes for clients in (1, 2)]  # no /RNA, no baseline
    assert figures["ratios"] is None and figures["served_models"] == ["mlp", "rf"]
    assert [w["route"] for w in figures["warmups"]] == routes
    assert list(figures["per_model"]) == ["mlp", "rf", "ab"]
    for name, levels in figures["per_model"].items():
        assert [level["clients"] for level in levels] == [1, 2], name
        for level in levels:
            assert set(level) == {"clients", "requests_per_second", "latency_p50_ms", "latency_p99_ms"}
            assert level["requests_per_second"] > 0 and 0 < level["latency_p50_ms"] <= level["latency_p99_ms"]
    assert all(run["log_check"]["passed"] for run in figures["runs"]) and figures["log_check"]["passed"]


@pytest.mark.parametrize("args, says", [
    (["--model", "musicnn"], "--model musicnn: not served from"),
    (["--levels", "1,x"], "--levels takes whole numbers"),
])
def test_bench_serve_names_what_it_cannot_measure(tmp_path_factory, capsys, args, says):
    models_dir = served_folders(tmp_path_factory).mlp.parent
    capsys.readouterr()
    assert main(["bench", "serve", "--model-dir", str(models_dir), "--seconds", "1", *args]) == 2
    assert says in capsys.readouterr().err


def test_bench_serve_names_a_missing_model_folder(tmp_path, capsys):
    (tmp_path / "mlp").mkdir()
    assert main(["bench", "serve", "--model-dir", str(tmp_path), "--seconds", "1"]) == 2
    assert str(tmp_path / "rf") in capsys.readouterr().err


@needs_wrk
def test_bench_serve_flood_holds_the_flooder_at_its_limit(tmp_path_factory, capsys):
    """One client floods with 8 connections beside a steady one: the flood gets 429 (with Retry-After), the steady
    client only 200s, and the log holds exactly the 200 answers of both (the 429s were never computed)."""
    models_dir = served_folders(tmp_path_factory).mlp.parent
    capsys.readouterr()
    command = ["bench", "serve", "--model-dir", str(models_dir), "--seconds", "3", "--workers", "2", "--flood", "8",
               "--flood-steady-rate", "5", "--json"]
    assert main(command) == 0
    flood = json.loads(capsys.readouterr().out)["flood"]
    assert flood["flood_connections"] == 8 and flood["route"] == "/v2/predict?model=ab"
    assert flood["flood"]["statuses"].get("429", 0) > 0 and flood["met"]["flood_held_with_429"]
    assert flood["flooder_probe_after"]["status"] == 429 and int(flood["flooder_probe_after"]["retry_after"]) >= 1
    assert flood["steady_alone"]["statuses"] == {"200": 15} and flood["steady_beside_flood"]["statuses"] == {"200": 15}
    assert 0 < flood["steady_alone"]["latency_p50_ms"] <= flood["steady_alone"]["latency_p99_ms"]
    assert flood["p99_beside_vs_alone_ratio"] > 0 and flood["log_check"]["passed"]
