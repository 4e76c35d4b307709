// Audio for the Node integration tests: tones, G.711 mu-law, a
// spectrum, the signal-to-noise ratio of an echoed tone, real-time
// pacing, and Opus through opusscript (libopus built to WebAssembly,
// pinned in package-lock.json; nothing here shares code with the server).

import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(import.meta.url);
const OpusScript = require('opusscript');

export const FRAME_MS = 20;
export const FRAMES_PER_SECOND = 1000 / FRAME_MS;
export const OPUS_RATE = 48000;

// voice.v1 formats by short name, as session.start takes them.
export const FORMATS = {
  pcm8k: { encoding: 'pcm_s16le', sample_rate: 8000 },
  pcm16k: { encoding: 'pcm_s16le', sample_rate: 16000 },
  pcm24k: { encoding: 'pcm_s16le', sample_rate: 24000 },
  pcm48k: { encoding: 'pcm_s16le', sample_rate: 48000 },
  mulaw: { encoding: 'mulaw', sample_rate: 8000 },
  opus: { encoding: 'opus', sample_rate: 48000 },
};

export function rateOf(name) {
  return FORMATS[name].sample_rate;
}

export function sessionStart(inp, out) {
  return {
    type: 'session.start',
    audio: {
      input: { ...FORMATS[inp], channels: 1 },
      output: { ...FORMATS[out] },
    },
  };
}

// Bytes of one 20 ms frame of a PCM or mu-law format.
export function frameBytes(name) {
  const samples = rateOf(name) / FRAMES_PER_SECOND;
  return FORMATS[name].encoding === 'pcm_s16le' ? samples * 2 : samples;
}

// ---- signals ------------------------------------------------------------

export function tone(freq, rate, seconds, amplitude = 0.5) {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  const w = (2 * Math.PI * freq) / rate;
  for (let i = 0; i < n; i++) {
    out[i] = Math.round(amplitude * 32767 * Math.sin(w * i));
  }
  return out;
}

// A tone stepping through freqs, stepSeconds each, phase continuous.
export function staircase(freqs, rate, stepSeconds, amplitude = 0.5) {
  const per = Math.round(rate * stepSeconds);
  const out = new Int16Array(per * freqs.length);
  let phase = 0;
  freqs.forEach((f, k) => {
    const w = (2 * Math.PI * f) / rate;
    for (let i = 0; i < per; i++) {
      out[k * per + i] = Math.round(amplitude * 32767
        * Math.sin(phase + w * i));
    }
    phase = (phase + w * per) % (2 * Math.PI);
  });
  return out;
}

export function pcmBytes(samples) {
  const buf = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) buf.writeInt16LE(samples[i], i * 2);
  return buf;
}

export function pcmSamples(buf) {
  if (buf.length % 2) throw new Error(`odd pcm_s16le length ${buf.length}`);
  const out = new Int16Array(buf.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = buf.readInt16LE(i * 2);
  return out;
}

// ---- G.711 mu-law -------------------------------------------------------

const MULAW_BIAS = 0x84;
const MULAW_CLIP = 32635;

export function mulawEncodeOne(sample) {
  let sign = 0;
  let s = sample;
  if (s < 0) {
    s = -s;
    sign = 0x80;
  }
  s = Math.min(s, MULAW_CLIP) + MULAW_BIAS;
  let exponent = 7;
  for (let mask = 0x4000; exponent > 0 && !(s & mask); mask >>= 1) {
    exponent -= 1;
  }
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

export function mulawDecodeOne(byte) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 0x07;
  const magnitude = ((((u & 0x0f) << 3) + MULAW_BIAS) << exponent)
    - MULAW_BIAS;
  return u & 0x80 ? -magnitude : magnitude;
}

export function mulawEncode(samples) {
  const out = Buffer.alloc(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = mulawEncodeOne(samples[i]);
  return out;
}

export function mulawDecode(buf) {
  const out = new Int16Array(buf.length);
  for (let i = 0; i < buf.length; i++) out[i] = mulawDecodeOne(buf[i]);
  return out;
}

// ---- Opus ---------------------------------------------------------------

export function opusEncoder(rate = OPUS_RATE) {
  return new OpusScript(rate, 1, OpusScript.Application.AUDIO);
}

export function opusDecoder(rate = OPUS_RATE) {
  return new OpusScript(rate, 1);
}

// Milliseconds of audio in an Opus packet, read from its TOC byte and
// frame count (RFC 6716, section 3.1), or null when the packet is not
// well formed enough to tell.
export function opusPacketMs(packet) {
  if (packet.length < 1) return null;
  const config = packet[0] >> 3;
  let frameMs;
  if (config < 12) frameMs = [10, 20, 40, 60][config % 4];
  else if (config < 16) frameMs = [10, 20][config % 2];
  else frameMs = [2.5, 5, 10, 20][config % 4];
  const code = packet[0] & 0x03;
  let frames;
  if (code === 0) frames = 1;
  else if (code === 1 || code === 2) frames = 2;
  else {
    if (packet.length < 2) return null;
    frames = packet[1] & 0x3f;
  }
  return frames * frameMs;
}

// ---- formats ------------------------------------------------------------

// Cuts samples at the format's rate into 20 ms frames in that format.
export function framesOf(name, samples, encoder = null) {
  const per = rateOf(name) / FRAMES_PER_SECOND;
  const frames = [];
  for (let i = 0; i + per <= samples.length; i += per) {
    const chunk = samples.subarray(i, i + per);
    const enc = FORMATS[name].encoding;
    if (enc === 'mulaw') frames.push(mulawEncode(chunk));
    else if (enc === 'opus') frames.push(encoder.encode(pcmBytes(chunk), per));
    else frames.push(pcmBytes(chunk));
  }
  return frames;
}

// ---- analysis -----------------------------------------------------------

export function rms(samples, from = 0, to = samples.length) {
  if (to <= from) return 0;
  let sum = 0;
  for (let i = from; i < to; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / (to - from));
}

// First 5 ms block reaching `threshold` of the loudest block's RMS.
export function onset(samples, rate, threshold = 0.25) {
  const block = Math.max(1, Math.floor(rate / 200));
  const levels = [];
  for (let i = 0; i + block <= samples.length; i += block) {
    levels.push(rms(samples, i, i + block));
  }
  const top = Math.max(0, ...levels);
  if (top < 1) return null;
  const i = levels.findIndex((l) => l >= threshold * top);
  return i < 0 ? null : i * block;
}

function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j |= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size *= 2) {
    const half = size / 2;
    const a = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const wr = Math.cos(a * k);
        const wi = Math.sin(a * k);
        const p = start + k;
        const q = p + half;
        const tr = re[q] * wr - im[q] * wi;
        const ti = re[q] * wi + im[q] * wr;
        re[q] = re[p] - tr;
        im[q] = im[p] - ti;
        re[p] += tr;
        im[p] += ti;
      }
    }
  }
}

// Strongest spectral peak (Hann window, parabolic interpolation) over
// the largest power-of-two prefix of samples, at most 16384.
export function dominantFrequency(samples, rate) {
  let n = 1;
  while (n * 2 <= Math.min(samples.length, 16384)) n *= 2;
  if (n < 256) throw new Error(`${samples.length} samples are too few`);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += samples[i];
  mean /= n;
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    re[i] = (samples[i] - mean)
      * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)));
  }
  fft(re, im);
  const mag = (k) => Math.hypot(re[k], im[k]);
  let best = 1;
  for (let k = 2; k < n / 2 - 1; k++) if (mag(k) > mag(best)) best = k;
  const a = Math.log(mag(best - 1) + 1e-9);
  const b = Math.log(mag(best) + 1e-9);
  const c = Math.log(mag(best + 1) + 1e-9);
  const d = a - 2 * b + c;
  const shift = d ? (0.5 * (a - c)) / d : 0;
  return ((best + shift) * rate) / n;
}

function det3(m) {
  return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
    - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
    + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

// Least-squares fit of offset + a cos + b sin at freq: [power of the
// sinusoid, power of what the fit leaves].
function fit(samples, rate, freq) {
  const n = samples.length;
  const w = (2 * Math.PI * freq) / rate;
  const cos = new Float64Array(n);
  const sin = new Float64Array(n);
  let sc = 0; let ss = 0; let cc = 0; let s2 = 0; let cs = 0;
  let x1 = 0; let xc = 0; let xs = 0;
  for (let i = 0; i < n; i++) {
    const c = Math.cos(w * i);
    const s = Math.sin(w * i);
    const x = samples[i];
    cos[i] = c;
    sin[i] = s;
    sc += c; ss += s; cc += c * c; s2 += s * s; cs += c * s;
    x1 += x; xc += x * c; xs += x * s;
  }
  const m = [[n, sc, ss], [sc, cc, cs], [ss, cs, s2]];
  const v = [x1, xc, xs];
  const d = det3(m);
  const [off, a, b] = [0, 1, 2].map((col) => det3(m.map((row, r) => row
    .map((e, k) => (k === col ? v[r] : e)))) / d);
  let residual = 0;
  for (let i = 0; i < n; i++) {
    const e = samples[i] - off - a * cos[i] - b * sin[i];
    residual += e * e;
  }
  return [(a * a + b * b) / 2, residual / n];
}

export function tonePower(samples, rate, freq) {
  return fit(samples, rate, freq)[0];
}

// Signal-to-noise ratio (dB) of a tone at exactly freq: the fitted
// sinusoid against everything else but a constant offset.  Only a tone
// at exactly freq scores high: a resampler that drifts fails.
export function snrDb(samples, rate, freq) {
  const [fitted, residual] = fit(samples, rate, freq);
  return 10 * Math.log10(Math.max(fitted, 1e-9) / Math.max(residual, 1e-9));
}

// The echoed tone away from its edges: from `skip` s after the onset,
// `length` s long (or what there is, keeping `skip` off the end).
export function steadyPart(samples, rate, skip = 0.1, length = 0.5) {
  const start = onset(samples, rate);
  if (start === null) {
    throw new Error(`silent echo (${samples.length} samples)`);
  }
  const begin = start + Math.floor(rate * skip);
  const end = Math.min(begin + Math.floor(rate * length),
    samples.length - Math.floor(rate * skip));
  if (end - begin < rate / 20) {
    throw new Error(`echoed tone too short: ${samples.length - start} `
      + `samples after its onset at ${start}`);
  }
  return samples.subarray(begin, end);
}

export function toneReport(samples, rate, freq, skip = 0.1, length = 0.5) {
  const part = steadyPart(samples, rate, skip, length);
  return { freq: dominantFrequency(part, rate), snr: snrDb(part, rate, freq) };
}

// ---- real-time sending --------------------------------------------------

// Calls send(i) at start + i * interval ms (absolute deadlines, so the
// pace does not drift), until count calls or one that returns false.
// Returns the performance.now() of the start.
export async function paced(count, send, intervalMs = FRAME_MS,
  start = performance.now()) {
  for (let i = 0; i < count; i++) {
    const delay = start + i * intervalMs - performance.now();
    if (delay > 0) await sleep(delay);
    if (await send(i) === false) break;
  }
  return start;
}

export function concatSamples(parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Int16Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
