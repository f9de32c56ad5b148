// Runs on the audio thread: posts each 128-sample block of the microphone, mixed to mono, to the page.
class CaptureProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels.length > 0) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true; // keep capturing until the page disconnects the node
  }
}

registerProcessor("capture", CaptureProcessor);
