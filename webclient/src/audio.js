// Sounds made with WebAudio oscillators (no audio files): the ring tone of
// an incoming call, the ringback heard while the other side rings, and short
// key tones. LevelMeter measures the loudness of a microphone stream.

// Dual-tone frequencies of the keypad (ITU-T Q.23).
const DTMF = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477],
  4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
  7: [852, 1209], 8: [852, 1336], 9: [852, 1477],
  '*': [941, 1209], 0: [941, 1336], '#': [941, 1477],
};

// A tone is two sine waves through one gain; cadence is a list of
// [seconds on, seconds off] repeated every sum(cadence) seconds.
const RING = { freqs: [440, 480], cadence: [[0.4, 0.2], [0.4, 2.0]], volume: 0.2 };
const RINGBACK = { freqs: [440, 480], cadence: [[2.0, 4.0]], volume: 0.1 };

export class Sounds {
  #Ctx;
  #ctx = null;
  #playing = null; // { stop() } of the ring or ringback

  constructor(AudioContextClass = globalThis.AudioContext || globalThis.webkitAudioContext) {
    this.#Ctx = AudioContextClass;
  }

  // context creates the AudioContext on first use. Browsers start it
  // suspended until the user has interacted with the page; unlock() from a
  // click or key press resumes it.
  context() {
    if (!this.#ctx && this.#Ctx) this.#ctx = new this.#Ctx();
    return this.#ctx;
  }

  unlock() {
    const ctx = this.context();
    if (ctx && ctx.state === 'suspended') ctx.resume().catch(() => {});
  }

  startRing() {
    this.#start(RING, 'ring');
  }

  startRingback() {
    this.#start(RINGBACK, 'ringback');
  }

  // playing is 'ring', 'ringback' or null.
  get playing() {
    return this.#playing ? this.#playing.kind : null;
  }

  stop() {
    if (this.#playing) {
      this.#playing.stop();
      this.#playing = null;
    }
  }

  // key plays the tone of one keypad key for 120 ms.
  key(digit) {
    const freqs = DTMF[digit];
    const ctx = this.context();
    if (!freqs || !ctx || ctx.state !== 'running') return;
    const t = ctx.currentTime;
    const tone = makeTone(ctx, freqs);
    envelope(tone.gain.gain, t, 0.12, 0.08);
    tone.stopAt(t + 0.15);
  }

  #start(spec, kind) {
    this.stop();
    const ctx = this.context();
    if (!ctx) return;
    const tone = makeTone(ctx, spec.freqs);
    const period = spec.cadence.reduce((sum, [on, off]) => sum + on + off, 0);
    let next = ctx.currentTime + 0.05;
    // Schedule one period ahead, topped up by a timer: the gain follows the
    // cadence on the audio clock, so timer jitter cannot be heard.
    const schedule = () => {
      while (next < ctx.currentTime + period + 0.5) {
        let t = next;
        for (const [on, off] of spec.cadence) {
          envelope(tone.gain.gain, t, on, spec.volume);
          t += on + off;
        }
        next = t;
      }
    };
    schedule();
    const timer = setInterval(schedule, 500);
    this.#playing = {
      kind,
      stop() {
        clearInterval(timer);
        tone.gain.gain.cancelScheduledValues(0);
        tone.gain.gain.setValueAtTime(0, ctx.currentTime);
        tone.stopAt(ctx.currentTime + 0.05);
      },
    };
  }
}

function makeTone(ctx, freqs) {
  const gain = ctx.createGain();
  gain.gain.value = 0;
  gain.connect(ctx.destination);
  const oscs = freqs.map((f) => {
    const o = ctx.createOscillator();
    o.type = 'sine';
    o.frequency.value = f;
    // Two tones at full scale would clip: each gets half.
    const half = ctx.createGain();
    half.gain.value = 0.5;
    o.connect(half).connect(gain);
    o.start();
    return o;
  });
  return {
    gain,
    stopAt(t) {
      for (const o of oscs) o.stop(t);
      oscs[0].onended = () => gain.disconnect();
    },
  };
}

// envelope switches gain on at t for `on` seconds, with 10 ms ramps so the
// edges do not click.
function envelope(param, t, on, volume) {
  param.setValueAtTime(0, t);
  param.linearRampToValueAtTime(volume, t + 0.01);
  param.setValueAtTime(volume, t + on - 0.01);
  param.linearRampToValueAtTime(0, t + on);
}

// LevelMeter calls onLevel(0..1) ten times a second with the loudness of
// stream's audio: RMS in dBFS, -60 dB and below as 0, 0 dB as 1, with a
// slow fall so that speech reads steadily.
export class LevelMeter {
  #timer;
  #source;

  constructor(ctx, stream, onLevel) {
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    this.#source = ctx.createMediaStreamSource(stream);
    this.#source.connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let shown = 0;
    this.#timer = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const rms = Math.sqrt(sum / buf.length);
      const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
      const level = Math.min(1, Math.max(0, (db + 60) / 60));
      shown = level > shown ? level : Math.max(level, shown - 0.08);
      onLevel(shown);
    }, 100);
  }

  stop() {
    clearInterval(this.#timer);
    this.#source.disconnect();
  }
}
