"""The web page in a real browser: headless Chromium (Playwright) driving `instrument-id serve` on loopback.

Upload -> bars of both A/B arms -> feedback -> the A/B report counts it; a dropped 6 s file -> its timeline; a bad
file -> the API's error on the page; the microphone (Chromium's fake device) -> a prediction. The screenshot of
the page after a prediction goes to $ARTIFACTS_DIR/screenshot.png when that is set (docs/ holds the README's copy).
"""

from __future__ import annotations

import base64
import json
import math
import os
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; scripts/setup.sh installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'instrument-id[test]')")
pytest.importorskip("flask")
pytest.importorskip("ai_edge_litert.interpreter")

from instrument_id.instruments import column_names  # noqa: E402
from serve_process import running_serve  # noqa: E402
from serving_fixture import app_config, encode, music_clip, needs_training, served_folders  # noqa: E402

pytestmark = needs_training
LAUNCH_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",  # the microphone: a beeping fake device
]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`instrument-id serve --workers 1` on a free loopback port with the test models; yields its base URL."""
    folders = served_folders(tmp_path_factory)
    root = tmp_path_factory.mktemp("web_server")
    config_path = root / "serve.json"
    config_path.write_text(json.dumps(app_config(folders, root / "log.sqlite")))
    with running_serve(config_path, root, workers=1) as running:
        yield running.base


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page at / (microphone allowed); fails the test on any JavaScript error or console error."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, permissions=["microphone"])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(f"console: {message.text}") if message.type == "error" else None)
    page.goto(f"{server}/")
    sync_api.expect(page.locator("#models-line")).to_contain_text("A/B arms: A → mlp (50%), B → rf (50%)")
    yield page
    context.close()
    assert not [p for p in problems if "the server responded with a status of 4" not in p], problems


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def shown_percent(probability: float) -> str:
    return f"{math.floor(100 * probability + 0.5)}%"  # JavaScript's Math.round


def check_bars(page, compare: dict) -> None:
    """Each arm's card shows its model, the 11 instruments in class order, the probabilities and the decisions."""
    cards = page.locator("article.arm")
    sync_api.expect(cards).to_have_count(len(compare["models"]))
    for card, prediction in zip(cards.all(), compare["models"]):
        sync_api.expect(card.locator("h3")).to_have_text(f"Arm {prediction['arm']} · {prediction['model']}")
        rows = card.locator(".bar-row")
        assert rows.locator(".bar-label").all_text_contents() == column_names()
        values = [text.replace("✓", "").strip() for text in rows.locator(".bar-value").all_text_contents()]
        assert values == [shown_percent(entry["probability"]) for entry in prediction["results"]]
        present = card.locator(".bar-row.present .bar-label").all_text_contents()
        assert present == [f"{e['instrument']}({e['program']})" for e in prediction["results"] if e["decision"]]
        found = ", ".join(prediction["instruments"]) or "none above its threshold"
        sync_api.expect(card.locator(".found")).to_have_text(f"Present: {found}")
    agreement = compare["agreement"]
    expected = ("The arms agree on every instrument." if agreement["all_agree"]
                else f"The arms disagree on: {', '.join(agreement['disagreeing'])}.")
    sync_api.expect(page.locator("#agreement")).to_have_text(expected)


def test_upload_shows_both_arms_and_feedback_reaches_the_ab_report(page, server, tmp_path):
    clip_path = tmp_path / "two_seconds.wav"
    clip_path.write_bytes(encode(music_clip(2.0, seed=11), 44100, "WAV", "PCM_16"))
    with page.expect_response(lambda response: "/v2/compare" in response.url) as answer:
        page.locator("#file-input").set_input_files(clip_path)
    assert answer.value.status == 200
    compare = answer.value.json()
    check_bars(page, compare)
    sync_api.expect(page.locator("#status")).to_have_text("Predicted two_seconds.wav.")
    assert page.locator("#timeline").is_hidden()  # one window long: no timeline

    predicted = {name for m in compare["models"] for name in m["instruments"]}
    boxes = page.locator("#truth input[type=checkbox]")
    sync_api.expect(boxes).to_have_count(11)
    checked = {box.get_attribute("value").split("(")[0] for box in boxes.all() if box.is_checked()}
    assert checked == predicted  # prefilled with what the arms predicted
    page.get_by_role("checkbox", name="violin(41)").check()
    truth = predicted | {"violin"}
    before = get_json(f"{server}/v2/ab/report")["arms"]
    page.get_by_role("button", name="Send feedback").click()
    sync_api.expect(page.locator("#feedback-status")).to_contain_text("Feedback recorded for 2 predictions (A, B)")
    report = get_json(f"{server}/v2/ab/report")["arms"]
    for prediction in compare["models"]:
        scores, earlier = report[prediction["arm"]]["feedback"], before[prediction["arm"]]["feedback"]
        mine = set(prediction["instruments"])
        assert scores["n"] == earlier["n"] + 1
        assert scores["true_positives"] - earlier["true_positives"] == len(mine & truth)
        assert scores["false_positives"] - earlier["false_positives"] == len(mine - truth)
        assert scores["false_negatives"] - earlier["false_negatives"] == len(truth - mine)


def dropped_file(page, name, wav):
    """A DataTransfer holding the WAV bytes as a file, as a drag-and-drop hands it to the page."""
    return page.evaluate_handle(
        """([encoded, name]) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "audio/wav" }));
            return transfer;
        }""", [base64.b64encode(wav).decode(), name])


def test_a_dropped_long_file_shows_its_timeline(page, tmp_path):
    wav = encode(music_clip(6.0, seed=12), 44100, "WAV", "PCM_16")
    dropped = dropped_file(page, "six_seconds.wav", wav)
    with page.expect_response(lambda response: "/v2/analyze" in response.url) as answer:
        page.locator("#drop-zone").dispatch_event("drop", {"dataTransfer": dropped})
    assert answer.value.status == 200
    timeline = answer.value.json()
    assert timeline["arm"] == "A" and timeline["duration_seconds"] == pytest.approx(6.0, abs=1e-3)
    sync_api.expect(page.locator("#timeline")).to_be_visible()
    image = page.locator("#timeline-image")
    sync_api.expect(image).to_have_attribute("alt", "Timeline of the 6.0 s recording: each instrument's probability "
                                                    "per window, darker is likelier; red outlines mark where it is judged present.")
    page.wait_for_function("document.getElementById('timeline-image').naturalWidth > 0")
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [1400, 650]
    present = [(name, item) for name, item in timeline["summary"].items() if item["present"]]
    expected = [f"{name}: {item['seconds']:.1f} s, from {item['first_seconds']:.1f} s to {item['last_seconds']:.1f} s"
                for name, item in present] or ["none of the 11 anywhere (no instrument above its threshold)"]
    assert page.locator("#timeline-summary li").all_text_contents() == expected
    assert page.locator("article.arm").count() == 2  # the side-by-side prediction is shown too
    sync_api.expect(page.locator("#status")).to_have_text("Predicted six_seconds.wav; timeline ready.")
    folder = Path(os.environ.get("ARTIFACTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / "screenshot.png", full_page=True)
    assert (folder / "screenshot.png").read_bytes().startswith(b"\x89PNG")


def test_a_file_that_is_not_audio_shows_the_apis_error(page, tmp_path):
    notes = tmp_path / "notes.wav"
    notes.write_text("these are my notes, not audio\n" * 20)
    with page.expect_response(lambda response: "/v2/compare" in response.url) as answer:
        page.locator("#file-input").set_input_files(notes)
    assert answer.value.status == 400
    message = answer.value.json()["error"]
    error = page.get_by_role("alert")
    sync_api.expect(error).to_be_visible()
    sync_api.expect(error).to_have_text(f"Prediction failed (HTTP 400): {message}")
    assert "not a readable audio file" in message
    assert page.locator("#results").is_hidden()


def test_recording_from_the_microphone_gives_a_prediction(page):
    record = page.get_by_role("button", name="Record from the microphone")
    record.click()
    sync_api.expect(page.locator("#record-button")).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(2500)
    with page.expect_response(lambda response: "/v2/compare" in response.url) as answer:
        page.get_by_role("button", name="Stop and predict").click()
    assert answer.value.status == 200
    compare = answer.value.json()
    assert 2.0 < compare["clip_seconds"] < 4.0
    check_bars(page, compare)
    sync_api.expect(page.locator("#record-button")).to_have_attribute("aria-pressed", "false")


def test_the_timeline_model_can_be_chosen_on_the_page(page):
    choices = page.locator("#timeline-model option")
    sync_api.expect(choices).to_have_count(3)  # the A/B router's first arm, then every served model by name
    assert choices.nth(2).get_attribute("value") == "rf" and "seed26" in choices.nth(2).inner_text()
    page.select_option("#timeline-model", "rf")
    wav = encode(music_clip(6.0, seed=13), 44100, "WAV", "PCM_16")
    dropped = dropped_file(page, "chosen.wav", wav)
    with page.expect_response(lambda response: "/v2/analyze" in response.url) as answer:
        page.locator("#drop-zone").dispatch_event("drop", {"dataTransfer": dropped})
    timeline = answer.value.json()
    assert answer.value.status == 200 and timeline["model"] == "rf" and timeline["arm"] is None
    sync_api.expect(page.locator("#timeline-line")).to_contain_text("rf (arm none)")
