"""Long and live audio: `instrument-id analyze` (files of any length, bounded memory) and `listen` (PCM on stdin)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import make_musicnet_fixture, midi_to_hz
from edge_model_fixture import band_notes
from instrument_id.audio import load_mono
from instrument_id.cli import main
from instrument_id.instruments import column_names
from instrument_id.streaming import WindowFeatureStream, stream_features
from instrument_id.timeline import StreamAnalyzer, WaveformEnvelope, analyze_signal
from model_zoo import load_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOP_SECONDS = 0.5


def band_audio(seconds: float, rate_hz: int, seed: int) -> np.ndarray:
    """(samples,) sines in each instrument's pitch band, as the training corpus plays them."""
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    y = np.zeros_like(t)
    for start, end, _program, note in band_notes(np.random.default_rng(seed), int(np.ceil(seconds))):
        inside = (t >= start) & (t < end)
        y[inside] += 0.2 * np.sin(2 * np.pi * midi_to_hz(note) * t[inside])
    return (y / max(1.0, np.abs(y).max() / 0.9)).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A logistic-regression folder trained by the real CLI on a tiny band-note corpus (loads in a blink)."""
    root = tmp_path_factory.mktemp("analyze-model")
    rng = np.random.default_rng(3)
    recordings = [{"id": str(3000 + i), "split": "train" if i < 8 else "test", "seconds": 8, "notes": band_notes(rng, 8)}
                  for i in range(10)]
    corpus = make_musicnet_fixture(root / "corpus", recordings)
    features = root / "features.npz"
    assert main(["features", "--data", str(corpus), "--out", str(features), "--augment", "0", "--split", "official",
                 "--jobs", "1"]) == 0
    assert main(["train", "--features", str(features), "--model", "lr", "--out", str(root / "models"), "--quiet"]) == 0
    return root / "models" / "lr"


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=np.float64)


def _covered_seconds(starts: np.ndarray, ends: np.ndarray, duration: float) -> float:
    """Length of the union of [start, end) spans, measured on a 1 ms grid (independent of the code under test)."""
    t = np.arange(0.0, duration, 1e-3) + 5e-4
    covered = np.zeros(len(t), bool)
    for start, end in zip(starts, ends):
        covered |= (t >= start) & (t < end)
    return covered.sum() * 1e-3


def test_analyze_stereo_flac_writes_csv_json_png_equal_to_scoring_stream_features(model_dir, tmp_path, capsys):
    mono = band_audio(30.0, 44100, seed=11)
    left_right = np.stack([mono, 0.5 * mono], axis=1)  # (samples, 2)
    audio = tmp_path / "concert.flac"
    sf.write(audio, left_right, 44100, subtype="PCM_16")
    prefix = tmp_path / "out" / "concert"
    assert main(["analyze", str(audio), "--model", str(model_dir), "--hop", str(HOP_SECONDS), "--out", str(prefix),
                 "--quiet"]) == 0
    out = capsys.readouterr().out

    header, table = _read_csv(prefix.with_suffix(".csv"))
    report = json.loads(prefix.with_suffix(".json").read_text())
    assert prefix.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert header[:2] == ["start_seconds", "end_seconds"] and len(header) == 2 + 2 * len(column_names())
    probabilities, decisions = table[:, 2::2], table[:, 3::2].astype(bool)  # (n, 11) each

    model = load_model(model_dir)
    params = model.params
    starts, X = stream_features(load_mono(audio, params), params, HOP_SECONDS)  # the whole file at once
    expected = model.predict_proba_features(X)
    assert len(table) == len(starts) == report["n_windows"]
    np.testing.assert_allclose(table[:, 0], starts, atol=1e-6)
    np.testing.assert_allclose(table[:, 1], np.minimum(starts + params.window_seconds, 30.0), atol=1e-6)
    np.testing.assert_allclose(probabilities, expected, atol=2e-5)
    clear = np.abs(expected - model.pipeline.thresholds) > 1e-4  # ties at a threshold may fall either way
    assert (decisions == model.pipeline.decide(expected))[clear].all()
    assert 0 < decisions.sum() < decisions.size, "the band-note model should find some instruments, not all"

    windows = report["windows"]
    np.testing.assert_allclose(np.array(windows["probabilities"]), probabilities, atol=2e-6)
    assert np.array_equal(np.array(windows["decisions"], bool), decisions)
    assert report["model"]["version"] == model.version and report["model"]["runtime"] == "zoo"
    assert report["settings"]["hop_seconds"] == pytest.approx(WindowFeatureStream(params, HOP_SECONDS).hop_seconds)
    assert report["sample_rate_hz"] == 44100 and report["channels"] == 2 and report["duration_seconds"] == pytest.approx(30.0)
    for j, name in enumerate(column_names()):
        item = report["summary"][name]
        mine = decisions[:, j]
        seconds = _covered_seconds(table[mine, 0], table[mine, 1], 30.0)
        assert item["seconds"] == pytest.approx(seconds, abs=0.01), name
        assert item["present"] == bool(mine.any())
        if mine.any():
            assert item["first_seconds"] == pytest.approx(table[mine, 0].min(), abs=1e-3)
            assert item["last_seconds"] == pytest.approx(table[mine, 1].max(), abs=1e-3)
            assert name in out
    assert "x real time" in out and "instruments present" in out


def test_analyze_runs_a_converted_folder_on_the_edge_runtime(tmp_path_factory, tmp_path, capsys):
    pytest.importorskip("tensorflow")  # to build the shared converted MLP folder; analyze itself never imports it
    from edge_model_fixture import shared_edge_fixture
    from model_zoo.tflite_model import EdgeModel

    folder = shared_edge_fixture(tmp_path_factory).model_dir
    audio = tmp_path / "duet.wav"
    sf.write(audio, band_audio(12.0, 22050, seed=21), 22050)
    assert main(["analyze", str(audio), "--model", str(folder), "--out", str(tmp_path / "duet"), "--quiet",
                 "--no-plot"]) == 0
    report = json.loads((tmp_path / "duet.json").read_text())
    assert report["model"]["runtime"] == "tflite" and report["model"]["tflite_file"] == "model_float32.tflite"
    edge = EdgeModel(folder / "model_float32.tflite")
    _, X = stream_features(load_mono(audio, edge.params), edge.params, HOP_SECONDS)
    probabilities, decisions = edge.predict_rows(edge.pipeline.transform(X))
    np.testing.assert_allclose(np.array(report["windows"]["probabilities"]), probabilities, atol=2e-5)
    assert np.array_equal(np.array(report["windows"]["decisions"], bool), decisions)
    assert "(tflite, version" in capsys.readouterr().out


def test_analyze_and_listen_run_the_shipped_musicnn_model_on_whole_windows(tmp_path, capsys):
    pytest.importorskip("ai_edge_litert.interpreter")
    from dataclasses import replace

    from instrument_id.audio import frame_windows
    from model_zoo.loader import open_model, shipped_model_dir

    folder = shipped_model_dir("musicnn")
    audio = tmp_path / "duet.wav"
    sf.write(audio, band_audio(7.0, 44100, seed=22), 44100)
    assert main(["analyze", str(audio), "--model", str(folder), "--out", str(tmp_path / "duet"), "--quiet",
                 "--no-plot"]) == 0
    report = json.loads((tmp_path / "duet.json").read_text())
    assert report["model"]["takes_audio"] and report["model"]["feature_set"].startswith("musicnn")
    model = open_model(folder)
    hop = report["settings"]["hop_seconds"]  # on the STFT frame grid, as for the 26 features
    windows = frame_windows(load_mono(audio, model.params), replace(model.params, hop_seconds=hop))
    probabilities, decisions = model.predict_windows(windows)  # the same windows, scored in one batch
    assert len(report["windows"]["start_seconds"]) == len(windows) > 5
    np.testing.assert_allclose(np.array(report["windows"]["probabilities"]), probabilities, atol=1e-5)
    assert np.array_equal(np.array(report["windows"]["decisions"], bool), decisions)
    # named by its folder: trained as an MLP head, it used to print as "model mlp [musicnn]"
    assert "model musicnn [musicnn] (tflite, version" in capsys.readouterr().out
    assert report["model"]["label"] == "musicnn" and report["model"]["name"] == "mlp"


def test_short_file_is_one_padded_window_with_a_warning(model_dir, tmp_path, capsys):
    audio = tmp_path / "blip.wav"
    sf.write(audio, band_audio(0.7, 22050, seed=2), 22050)
    assert main(["analyze", str(audio), "--model", str(model_dir), "--out", str(tmp_path / "blip"), "--quiet",
                 "--no-plot"]) == 0
    assert "shorter than the 2 s window" in capsys.readouterr().err
    report = json.loads((tmp_path / "blip.json").read_text())
    assert report["n_windows"] == 1 and report["padded"]
    assert report["windows"]["end_seconds"] == [pytest.approx(0.7, abs=1e-4)]
    assert not (tmp_path / "blip.png").exists()


@pytest.mark.parametrize("case", ["empty", "corrupt", "missing", "no model"])
def test_bad_input_is_one_line_and_exit_2(case, model_dir, tmp_path, capsys):
    audio, model = tmp_path / "x.wav", model_dir
    if case == "empty":
        sf.write(audio, np.zeros(0, np.float32), 22050)
    elif case == "corrupt":
        audio.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(200)))
    elif case == "no model":
        sf.write(audio, band_audio(3.0, 22050, seed=1), 22050)
        model = tmp_path / "no-such-model"
    assert main(["analyze", str(audio), "--model", str(model), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(model if case == "no model" else audio) in err
    assert {"empty": "0 samples", "corrupt": "not a readable audio file", "missing": "not found",
            "no model": "no model folder"}[case] in err
    assert not (tmp_path / "r.csv").exists()


def test_stream_analyzer_batching_and_block_sizes_do_not_change_the_timeline(model_dir):
    model = load_model(model_dir)
    y = band_audio(9.0, 16000, seed=5)  # resampled to the model's 22050 Hz as a stream
    one_block = analyze_signal([y], 16000, model, model.params, HOP_SECONDS, batch_windows=256)
    blocks = [y[i : i + 777] for i in range(0, len(y), 777)]
    live = analyze_signal(blocks, 16000, model, model.params, HOP_SECONDS, batch_windows=1)
    np.testing.assert_allclose(live.probabilities, one_block.probabilities, atol=1e-5)
    np.testing.assert_allclose(live.starts, one_block.starts)
    analyzer = StreamAnalyzer(model, model.params, 16000, HOP_SECONDS, batch_windows=1)
    assert len(analyzer.push(y[: 16000 * 2])) == 0  # 2 s exactly: the last frame's look-ahead is still missing
    assert len(analyzer.push(y[16000 * 2 : 16000 * 2 + 1600])) == 1


def test_waveform_envelope_is_min_max_per_column_in_bounded_memory():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(1_234_567).astype(np.float32)
    envelope = WaveformEnvelope(rate_hz=1000, max_columns=50, first_column_samples=8)
    position = 0
    while position < len(y):
        size = int(rng.integers(1, 40_000))
        envelope.add(y[position : position + size])
        position += size
    edges, mins, maxs = envelope.result()
    assert 50 <= len(mins) <= 101 and edges[-1] == pytest.approx(len(y) / 1000)
    bounds = np.rint(edges * 1000).astype(int)
    for k in range(len(mins)):
        assert mins[k] == y[bounds[k] : bounds[k + 1]].min() and maxs[k] == y[bounds[k] : bounds[k + 1]].max()


class ListenProcess:
    """`instrument-id listen -` in a subprocess; stdout lines and stderr collected with arrival times."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "instrument_id.cli", "listen", "-", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.lines: list[tuple[float, str]] = []
        self.stderr: list[str] = []
        self.ready = threading.Event()
        self._threads = [threading.Thread(target=self._read_stdout), threading.Thread(target=self._read_stderr)]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.append((time.perf_counter(), line.decode()))

    def _read_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr.append(line.decode())
            if line.startswith(b"listening:"):
                self.ready.set()
        self.ready.set()

    def feed(self, chunks: list[bytes], pace_seconds: float | None) -> list[float]:
        """Write the chunks (every pace_seconds, or at once); return the time each chunk's write began (taken before
        the write: on a loaded machine a line can arrive before this thread runs again after writing)."""
        assert self.ready.wait(120), "listen did not start"
        written, start = [], time.perf_counter()
        for i, chunk in enumerate(chunks):
            if pace_seconds is not None:
                time.sleep(max(0.0, start + i * pace_seconds - time.perf_counter()))
            written.append(time.perf_counter())
            self.proc.stdin.write(chunk)
        self.proc.stdin.close()
        return written

    def wait(self) -> int:
        code = self.proc.wait(120)
        for thread in self._threads:
            thread.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code


def test_listen_s16le_stereo_44k_matches_the_file_path_and_skips_an_odd_trailing_byte(model_dir, tmp_path):
    mono = band_audio(6.3, 44100, seed=8)
    pcm = np.round(np.stack([mono, -mono], axis=1) * 32767).astype("<i2")  # (samples, 2) interleaved
    folder = shutil.copytree(model_dir, tmp_path / "studio-lr")  # trained as lr, named by its folder
    listen = ListenProcess(["--rate", "44100", "--channels", "2", "--format", "s16le", "--model", str(folder),
                            "--hop", str(HOP_SECONDS), "--json"])
    listen.feed([pcm.tobytes() + b"\x01"], pace_seconds=None)
    assert listen.wait() == 0, "".join(listen.stderr)
    assert any("skipped 1 trailing byte" in line for line in listen.stderr)
    assert any(line.startswith("listening:") and "model studio-lr [seed26]" in line for line in listen.stderr)

    model = load_model(model_dir)
    heard = (pcm.astype(np.float32).mean(axis=1) / 32768).astype(np.float32)
    starts, X = stream_features(soxr.resample(heard, 44100, model.params.sample_rate_hz, quality="HQ"), model.params,
                                HOP_SECONDS)
    results = [json.loads(line) for _, line in listen.lines]
    assert len(results) == len(starts) == 9
    np.testing.assert_allclose([r["window_start_seconds"] for r in results], starts, atol=1e-4)
    got = np.array([[r["probabilities"][name] for name in column_names()] for r in results])
    np.testing.assert_allclose(got, model.predict_proba_features(X), atol=2e-4)


def test_listen_f32le_paced_in_real_time_survives_garbage_and_answers_while_the_stream_runs(model_dir):
    rate_hz, chunk_frames = 22050, 1024
    y = band_audio(4.2, rate_hz, seed=9)
    y[rate_hz : rate_hz + 3000:7] = np.nan  # garbage: NaN and inf samples, and absurd finite values
    y[rate_hz + 3000 : rate_hz + 3100] = np.inf
    y[rate_hz + 3100 : rate_hz + 3110] = 1e30
    raw = y.astype("<f4").tobytes()
    chunks = [raw[i : i + 4 * chunk_frames] for i in range(0, len(raw), 4 * chunk_frames)]
    listen = ListenProcess(["--rate", str(rate_hz), "--format", "f32le", "--model", str(model_dir),
                            "--hop", str(HOP_SECONDS), "--json", "--chunk-frames", str(chunk_frames)])
    written = listen.feed(chunks, pace_seconds=chunk_frames / rate_hz)
    assert listen.wait() == 0, "".join(listen.stderr)

    garbage = [line for line in listen.stderr if "garbage" in line]
    assert len(garbage) == 1 and "NaN/infinite" in garbage[0] and "clipped 10" in garbage[0]
    params = load_model(model_dir).params
    stream = WindowFeatureStream(params, HOP_SECONDS)
    hop_samples = stream.hop_frames * params.stft_hop_samples
    n_windows = 1 + (len(y) - params.window_samples) // hop_samples
    results = [json.loads(line) for _, line in listen.lines]
    assert len(results) == n_windows == 5
    # live, not at EOF: each line comes after the chunk that completes its window was written, and (all but the
    # last) before the stream's last chunk was; how fast is a benchmark's question, not a test's
    for k, (arrived, _line) in enumerate(listen.lines):
        # the window's last frame is centred n_fft/2 before the last sample it needs
        needed = (k * stream.hop_frames + params.n_frames - 1) * params.stft_hop_samples + params.n_fft // 2
        assert arrived >= written[(needed - 1) // chunk_frames]
        if k < n_windows - 1:
            assert arrived < written[-1], f"line {k} only came at the end of the stream"
    assert all(r["latency_ms"] >= 0 for r in results)  # listen's own clock: completing chunk read -> line flushed


def test_analyze_memory_stays_bounded_on_a_20_minute_file(model_dir, tmp_path):
    rate_hz = 22050
    short, long = tmp_path / "one_minute.wav", tmp_path / "twenty_minutes.wav"
    rng = np.random.default_rng(4)
    minute = (0.1 * rng.standard_normal(60 * rate_hz)).astype(np.float32)
    sf.write(short, minute, rate_hz, subtype="PCM_16")
    with sf.SoundFile(long, "w", rate_hz, 1, subtype="PCM_16") as handle:
        for _ in range(20):
            handle.write(minute)
    script = (
        "import resource, sys\n"
        "from instrument_id.cli import main\n"
        "peaks = []\n"
        "for name in sys.argv[2:]:\n"
        "    assert main(['analyze', name, '--model', sys.argv[1], '--quiet', '--no-plot']) == 0\n"
        "    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "print('PEAKS', *peaks)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(model_dir), str(short), str(long)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after_short_kib, after_long_kib = map(int, done.stdout.split("PEAKS")[1].split())
    whole_file_mib = 20 * 60 * rate_hz * 4 / 2**20  # the float32 signal a whole-file read would hold: 101 MiB
    growth_mib = (after_long_kib - after_short_kib) / 1024
    assert growth_mib < 20, f"peak RSS grew {growth_mib:.1f} MiB (a whole-file read needs {whole_file_mib:.0f} MiB)"
    report = json.loads(long.with_suffix(".json").read_text())
    assert report["n_windows"] == 1 + (20 * 60 * rate_hz - 44100) // 11264


def test_bench_analyze_times_the_three_ways_on_a_synthesized_recording(model_dir, tmp_path, capsys):
    assert main(["bench", "analyze", "--minutes", "0.3", "--model", str(model_dir), "--librosa-windows", "3",
                 "--workdir", str(tmp_path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    info = sf.info(tmp_path / "long.wav")
    assert figures["audio_seconds"] == pytest.approx(info.duration, abs=0.01) and info.duration >= 24
    hop_samples = WindowFeatureStream(load_model(model_dir).params, HOP_SECONDS).hop_frames * 512
    assert figures["n_windows"] == 1 + (round(info.duration * 22050) - 44100) // hop_samples
    assert figures["naive"]["n_windows"] == figures["n_windows"] and figures["librosa"]["extrapolated"]
    assert figures["decision_agreement_with_naive"] > 0.9  # only edge frames differ between the two feature paths
    assert figures["streaming"]["real_time_factor"] > 1 and figures["speedup_vs_naive"] > 0
    assert figures["naive_numpy_path"]["n_windows"] == figures["n_windows"] and figures["speedup_vs_naive_numpy_path"] > 0
    assert 0.0 <= figures["window_macro_f1"] <= 1.0 and figures["model"]["version"] == load_model(model_dir).version


def test_figure_outlines_cover_exactly_the_shaded_cells_of_decided_windows():
    from instrument_id.timeline import Timeline
    from tflite.analyze_plot import cell_edges, decided_cell_spans, timeline_png

    starts = np.arange(10) * 0.5  # 2 s windows every 0.5 s
    decisions = np.zeros((10, 11), dtype=bool)
    decisions[2:5, 0] = True  # one run of three windows
    decisions[[7], 1] = True
    probabilities = np.where(decisions, 0.9, 0.1).astype(np.float32)
    timeline = Timeline(starts=starts, ends=starts + 2.0, probabilities=probabilities, decisions=decisions,
                        duration_seconds=6.5, hop_seconds=0.5, window_seconds=2.0)
    edges = cell_edges(timeline)
    np.testing.assert_allclose(edges[:3], [0.75, 1.25, 1.75])  # cells centred on window middles, one hop wide
    assert decided_cell_spans(timeline, 0) == [(edges[2], edges[5])] == [(1.75, 3.25)]
    assert decided_cell_spans(timeline, 1) == [(edges[7], edges[8])]
    assert decided_cell_spans(timeline, 2) == []
    assert timeline.segments(0) == [(1.0, 4.0)]  # the reported span stays the union of whole windows
    assert timeline_png(timeline, (np.linspace(0, 6.5, 11), -np.ones(10), np.ones(10)), "t")[:4] == b"\x89PNG"
