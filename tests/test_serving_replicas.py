"""Two `instrument-id serve` replicas sharing one prediction log on a real PostgreSQL server."""

from __future__ import annotations

import collections
import concurrent.futures
import json

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("ai_edge_litert.interpreter")
pytest.importorskip("psycopg")

from postgres_fixture import postgres_server, postgres_url  # noqa: E402,F401
from serve_process import call, metric_total, running_serve  # noqa: E402
from serving_fixture import app_config, encode, folders, music_clip, needs_training  # noqa: E402,F401 (fixtures)

pytestmark = needs_training


def test_two_replicas_log_every_answer_keep_clients_on_their_arm_and_report_both(folders, postgres_url, tmp_path, capsys):
    """160 A/B predictions and 8 compares spread over two replicas (2 workers each): the database holds exactly
    the answered prediction ids, each client id got one arm from both replicas, feedback given to one replica
    scores a prediction the other answered, and both replicas report the same sums over all of it."""
    import psycopg

    config_path = tmp_path / "serve.json"
    config_path.write_text(json.dumps(app_config(folders, postgres_url)))
    clips = [encode(music_clip(seconds, seed=i), 44100, "WAV", "PCM_16") for i, seconds in enumerate((0.5, 1.0, 2.0))]
    with running_serve(config_path, tmp_path, name="replica0") as first, \
            running_serve(config_path, tmp_path, name="replica1") as second:
        replicas = [first, second]

        def predict(i: int) -> tuple[int, str, int, dict]:
            replica, client = i % 2, f"listener-{(i // 2) % 20}"  # every client meets both replicas
            status, body = call(f"{replicas[replica].base}/v2/predict", clips[i % 3],
                                {"Content-Type": "audio/wav", "X-Client-Id": client})
            return replica, client, status, body

        def compare(i: int) -> tuple[int, dict]:
            return call(f"{replicas[i % 2].base}/v2/compare", clips[i % 3], {"Content-Type": "audio/wav"})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            predictions = list(pool.map(predict, range(160)))
            compares = list(pool.map(compare, range(8)))
        assert {status for _, _, status, _ in predictions} == {200} and {status for status, _ in compares} == {200}

        arms_of_client = collections.defaultdict(set)
        replicas_of_client = collections.defaultdict(set)
        for replica, client, _, body in predictions:
            arms_of_client[client].add(body["arm"])
            replicas_of_client[client].add(replica)
        assert all(len(replicas_of_client[c]) == 2 for c in arms_of_client) and len(arms_of_client) == 20
        assert all(len(arms) == 1 for arms in arms_of_client.values()), dict(arms_of_client)

        from_first = [body for replica, _, _, body in predictions if replica == 0][:6]
        for body in from_first:  # feedback to the other replica
            feedback = json.dumps({"prediction_id": body["prediction_id"], "instruments": ["piano", "violin"]}).encode()
            assert call(f"{second.base}/v2/feedback", feedback, {"Content-Type": "application/json"})[0] == 200

        answered = {body["prediction_id"] for _, _, _, body in predictions}
        answered |= {model["prediction_id"] for _, body in compares for model in body["models"]}
        with psycopg.connect(postgres_url) as connection:
            logged = {row[0] for row in connection.execute("SELECT id FROM predictions")}
        reports = [call(f"{replica.base}/v2/ab/report")[1]["arms"] for replica in replicas]
        unlogged = sum(metric_total(replica.metrics(), "instrument_id_predictions_unlogged_total") for replica in replicas)

    with capsys.disabled():
        print(f"\ntwo replicas on PostgreSQL: {len(answered)} answers sent, {len(logged)} rows logged, "
              f"{unlogged:.0f} unlogged; report counts A={reports[0]['A']['count']} B={reports[0]['B']['count']}")
    assert logged == answered and len(answered) == 160 + 8 * 2
    assert unlogged == 0
    assert reports[0] == reports[1]
    per_arm = collections.Counter(body["arm"] for _, _, _, body in predictions)
    assert {arm: reports[0][arm]["count"] for arm in "AB"} == {"A": per_arm["A"], "B": per_arm["B"]}
    assert sum(reports[0][arm]["feedback"]["n"] for arm in "AB") == 6
    assert reports[0]["A"]["agreement"]["B"]["clips"] == 8
