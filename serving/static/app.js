// The instrument-id page: a clip (file or microphone) -> /v2/compare (every A/B arm) -> bars, agreement, feedback;
// a clip longer than one window also -> /v2/analyze?plot=1 -> the timeline figure. No framework, no build step.
"use strict";

const MAX_RECORD_SECONDS = 60; // 16-bit PCM at 48 kHz in base64 stays under the default 10 MB upload limit
const $ = (id) => document.getElementById(id);
const state = { models: [], arms: [], windowSeconds: 2, predictions: [] };

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const KEY_STORAGE = "instrument-id-api-key"; // sessionStorage: gone when the tab closes, never sent elsewhere

// fetch + JSON (with the API key, when one was given); a non-2xx answer throws ApiError with the server's message
async function api(path, options = {}) {
  let response;
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) options = { ...options, headers: { ...(options.headers || {}), "X-API-Key": key } };
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, `cannot reach the server (${error.message})`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body && body.error ? body.error : response.statusText);
  return body;
}

// a DOM element with text and children; text always goes through textContent, never HTML
function el(tag, className, text, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  node.append(...children);
  return node;
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(what, error) {
  const status = error.status ? ` (HTTP ${error.status})` : "";
  $("error").textContent = `${what} failed${status}: ${error.message}`;
  $("error").hidden = false;
}

function clearOutput() {
  $("error").hidden = true;
  for (const id of ["results", "feedback", "timeline"]) $(id).hidden = true;
  $("feedback-status").textContent = "";
}

const percent = (p) => `${Math.round(100 * p)}%`;
const column = (entry) => `${entry.instrument}(${entry.program})`;

async function loadModels() {
  try {
    const body = await api("v2/models");
    state.models = body.models;
    state.arms = body.ab.arms;
    state.windowSeconds = Math.max(...body.models.map((m) => m.params.window_seconds));
    $("models-line").textContent = "A/B arms: " +
      state.arms.map((arm) => `${arm.name} → ${arm.model} (${percent(arm.weight)})`).join(", ") + ".";
    const options = state.models.map((m) => {
      const option = el("option", null, `${m.name} (${m.feature_set.name}, ${m.runtime})`);
      option.value = m.name;
      return option;
    });
    $("timeline-model").append(...options);
  } catch (error) {
    $("models-line").textContent = "";
    if (error.status === 401) {
      $("models-line").textContent = "This server needs an API key: enter it above.";
    } else if (error.status === 403) {
      $("models-line").textContent = "Your key may predict; the list of models needs an admin key.";
    } else {
      showError("Loading the models", error);
    }
  }
}

function setUpKey() {
  const input = $("api-key");
  input.value = sessionStorage.getItem(KEY_STORAGE) || "";
  input.addEventListener("change", () => {
    const key = input.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    $("error").hidden = true;
    $("timeline-model").replaceChildren($("timeline-model").firstElementChild || "");
    loadModels();
  });
}

// one bar per instrument: label, probability bar with the decision threshold marked, value, present or not
function barRow(entry, threshold, disagree) {
  const fill = el("span", "bar-fill");
  fill.style.width = percent(entry.probability);
  const track = el("span", "bar-track", null, [fill]);
  track.setAttribute("aria-hidden", "true");
  if (threshold !== undefined) {
    const tick = el("span", "bar-threshold");
    tick.style.left = percent(threshold);
    tick.title = `threshold ${percent(threshold)}`;
    track.append(tick);
  }
  const verdict = entry.decision ? "present" : "absent";
  const row = el("li", `bar-row ${verdict}${disagree ? " disagree" : ""}`, null, [
    el("span", "bar-label", column(entry)), track,
    el("span", "bar-value", `${percent(entry.probability)} ${entry.decision ? "✓" : ""}`),
  ]);
  row.setAttribute("aria-label", `${column(entry)}: ${percent(entry.probability)}, ${verdict}` +
    (disagree ? ", the arms disagree" : ""));
  return row;
}

function armCard(prediction, disagreeing) {
  const model = state.models.find((m) => m.name === prediction.model) || {};
  const title = prediction.arm ? `Arm ${prediction.arm} · ${prediction.model}` : `${prediction.model} (no arm)`;
  const detail = `${model.runtime || ""} · version ${prediction.model_version} · ` +
    `${prediction.latency_ms.model.toFixed(2)} ms`;
  const found = prediction.instruments.length ? prediction.instruments.join(", ") : "none above its threshold";
  const bars = prediction.results.map((entry) =>
    barRow(entry, (model.thresholds || {})[column(entry)], disagreeing.includes(entry.instrument)));
  const card = el("article", "arm", null, [
    el("h3", null, title), el("p", "hint", detail),
    el("p", "found", null, [el("strong", null, "Present: "), found]),
    el("ul", "bars", null, bars),
  ]);
  card.setAttribute("aria-label", title);
  return card;
}

function showComparison(body) {
  state.predictions = body.models;
  const disagreeing = body.agreement.disagreeing;
  $("clip-line").textContent = `${body.clip_seconds.toFixed(2)} s clip · features ` +
    `${body.latency_ms.features.toFixed(1)} ms · total ${body.latency_ms.total.toFixed(1)} ms` +
    (body.warnings.length ? ` · ${body.warnings.join("; ")}` : "");
  $("agreement").textContent = body.agreement.all_agree
    ? "The arms agree on every instrument."
    : `The arms disagree on: ${disagreeing.join(", ")}.`;
  $("agreement").className = `agreement ${body.agreement.all_agree ? "agree" : "differ"}`;
  $("arms").replaceChildren(...body.models.map((prediction) => armCard(prediction, disagreeing)));
  $("results").hidden = false;

  const predicted = new Set(body.models.flatMap((m) => m.instruments));
  const boxes = body.models[0].results.map((entry) => {
    const box = el("input");
    box.type = "checkbox";
    box.value = column(entry);
    box.checked = predicted.has(entry.instrument);
    return el("label", "truth-choice", null, [box, ` ${column(entry)}`]);
  });
  $("truth").replaceChildren(...boxes);
  $("feedback").hidden = false;
}

async function sendFeedback() {
  const instruments = [...$("truth").querySelectorAll("input:checked")].map((box) => box.value);
  $("feedback-status").textContent = "Sending…";
  try {
    for (const prediction of state.predictions) {
      await api("v2/feedback", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prediction_id: prediction.prediction_id, instruments }),
      });
    }
    const arms = state.predictions.map((p) => p.arm || p.model).join(", ");
    $("feedback-status").textContent = `Feedback recorded for ${state.predictions.length} predictions (${arms}): ` +
      (instruments.length ? instruments.join(", ") : "no instrument") + ".";
  } catch (error) {
    $("feedback-status").textContent = "";
    showError("Sending feedback", error);
  }
}

function showTimeline(body) {
  const image = $("timeline-image");
  image.src = `data:image/png;base64,${body.plot_png_base64}`;
  image.alt = `Timeline of the ${body.duration_seconds.toFixed(1)} s recording: each instrument's probability ` +
    "per window, darker is likelier; red outlines mark where it is judged present.";
  $("timeline-line").textContent = `${body.model} (arm ${body.arm || "none"}), ${body.n_windows} windows of ` +
    `${body.window_seconds} s every ${body.hop_seconds.toFixed(3)} s, analyzed in ` +
    `${(body.latency_ms.analysis / 1000).toFixed(2)} s (${body.real_time_factor}× real time).`;
  const present = Object.entries(body.summary).filter(([, item]) => item.present);
  const lines = present.length ? present.map(([name, item]) =>
    `${name}: ${item.seconds.toFixed(1)} s, from ${item.first_seconds.toFixed(1)} s to ${item.last_seconds.toFixed(1)} s`)
    : ["none of the 11 anywhere (no instrument above its threshold)"];
  $("timeline-summary").replaceChildren(...lines.map((line) => el("li", null, line)));
  $("timeline").hidden = false;
}

// a clip as a fetch body: a file as multipart, a recording as JSON 16-bit PCM
async function analyzeClip(makeRequest, label) {
  clearOutput();
  setStatus(`Predicting ${label}…`);
  let clipSeconds = null;
  try {
    const body = await api("v2/compare", makeRequest());
    showComparison(body);
    clipSeconds = body.clip_seconds;
    setStatus(`Predicted ${label}.`);
  } catch (error) {
    setStatus("");
    showError("Prediction", error);
    if (error.status !== 413) return; // too big to compare side by side, but maybe not to analyze as a stream
  }
  if (clipSeconds !== null && clipSeconds <= state.windowSeconds) return;
  const arm = state.arms[0];
  const chosen = $("timeline-model").value; // a model by name, or "" for the first A/B arm
  setStatus(`Analyzing the timeline of ${label}…`);
  try {
    const query = chosen ? `model=${encodeURIComponent(chosen)}` : arm ? `arm=${encodeURIComponent(arm.name)}` : "";
    showTimeline(await api(`v2/analyze?${query}&plot=1`, makeRequest()));
    setStatus(`Predicted ${label}; timeline ready.`);
  } catch (error) {
    setStatus("");
    showError("Timeline analysis", error);
  }
}

function useFile(file) {
  if (!file) return;
  analyzeClip(() => {
    const form = new FormData();
    form.append("audio", file, file.name);
    return { method: "POST", body: form };
  }, file.name);
}

// --- microphone: an AudioWorklet copies PCM blocks; Stop sends them as 16-bit PCM in JSON ---

const recorder = { stream: null, context: null, node: null, chunks: [], timer: null, started: 0 };

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function pcmBody(chunks, sampleRate) {
  const length = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const pcm = new Int16Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) pcm[offset + i] = Math.max(-1, Math.min(1, chunk[i])) * 32767;
    offset += chunk.length;
  }
  const bytes = new Uint8Array(pcm.buffer); // little-endian on every platform browsers run on
  return JSON.stringify({ pcm_base64: toBase64(bytes), sample_rate: sampleRate, channels: 1, format: "s16le" });
}

async function startRecording() {
  $("record-button").disabled = true; // until the microphone is open: a second click must not open another
  try {
    recorder.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    recorder.context = new AudioContext();
    await recorder.context.audioWorklet.addModule("static/capture-worklet.js");
  } catch (error) {
    stopTracks();
    recorder.context = null;
    showError("Opening the microphone", error);
    return;
  } finally {
    $("record-button").disabled = false;
  }
  clearOutput();
  recorder.chunks = [];
  recorder.node = new AudioWorkletNode(recorder.context, "capture");
  recorder.node.port.onmessage = (event) => recorder.chunks.push(event.data);
  recorder.context.createMediaStreamSource(recorder.stream).connect(recorder.node);
  recorder.node.connect(recorder.context.destination); // pulled by the graph; it outputs silence
  recorder.started = Date.now();
  recorder.timer = setInterval(() => {
    const seconds = (Date.now() - recorder.started) / 1000;
    $("record-time").textContent = `recording: ${seconds.toFixed(1)} s`;
    if (seconds >= MAX_RECORD_SECONDS) stopRecording();
  }, 100);
  $("record-button").textContent = "Stop and predict";
  $("record-button").setAttribute("aria-pressed", "true");
  setStatus("Recording…");
}

function stopTracks() {
  if (recorder.stream) recorder.stream.getTracks().forEach((track) => track.stop());
  recorder.stream = null;
}

function stopRecording() {
  clearInterval(recorder.timer);
  recorder.node.disconnect();
  stopTracks();
  const sampleRate = recorder.context.sampleRate;
  recorder.context.close();
  recorder.context = null;
  const chunks = recorder.chunks;
  const seconds = chunks.reduce((sum, chunk) => sum + chunk.length, 0) / sampleRate;
  $("record-button").textContent = "Record from the microphone";
  $("record-button").setAttribute("aria-pressed", "false");
  $("record-time").textContent = `last recording: ${seconds.toFixed(1)} s`;
  const body = pcmBody(chunks, sampleRate);
  analyzeClip(() => ({ method: "POST", headers: { "Content-Type": "application/json" }, body }),
    `the ${seconds.toFixed(1)} s recording`);
}

function setUp() {
  setUpKey();
  loadModels();
  $("file-input").addEventListener("change", (event) => useFile(event.target.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    useFile(event.dataTransfer.files[0]);
  });
  $("record-button").addEventListener("click", () => (recorder.context ? stopRecording() : startRecording()));
  $("feedback-button").addEventListener("click", sendFeedback);
  if (!window.AudioWorkletNode || !navigator.mediaDevices) {
    $("record-button").disabled = true;
    $("record-time").textContent = "recording needs a browser with AudioWorklet, on https or localhost";
  }
}

document.addEventListener("DOMContentLoaded", setUp);
