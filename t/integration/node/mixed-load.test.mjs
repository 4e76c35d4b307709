// Fifty sessions at once in mixed formats (Opus included) and dialects,
// each with a tone of its own: every one gets only its own tone back.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as h from './helpers.mjs';
import * as a from './audio.mjs';
import { TwilioCall, vonageCall } from './phone.mjs';

const SESSIONS = 50;
const SECONDS = 1.0;
const FRAMES = SECONDS * a.FRAMES_PER_SECOND;
const SLACK = 2;
const FREQ_TOLERANCE_HZ = 3;
// Another session's tone would be noise at this one's frequency; each
// bound is well under what the kind measures alone.
const MIN_SNR = { pcm: 60, mulaw: 28, opus: 25 };

const KINDS = [
  ['v1', 'pcm16k', 'opus'],
  ['v1', 'opus', 'pcm16k'],
  ['v1', 'opus', 'opus'],
  ['v1', 'pcm16k', 'mulaw'],
  ['v1', 'mulaw', 'pcm16k'],
  ['v1', 'pcm48k', 'pcm16k'],
  ['v1', 'pcm8k', 'pcm24k'],
  ['twilio', 'mulaw', 'mulaw'],
  ['vonage', 'pcm16k', 'pcm16k'],
  ['vonage', 'pcm8k', 'pcm8k'],
];

const open = [];
after(() => open.forEach((c) => c.terminate()));

// 300 Hz to 2995 Hz, 55 Hz apart: inside every format's band.
const frequency = (i) => 300 + 55 * i;

function toneEncoder() {
  const enc = a.opusEncoder();
  enc.setBitrate(64000);
  enc.encoderCTL(4024, 3002);  // OPUS_SET_SIGNAL, OPUS_SIGNAL_MUSIC
  return enc;
}

async function voiceV1(inp, out, freq) {
  const { client } = await h.startSession('/voice', a.sessionStart(inp, out));
  open.push(client);
  const frames = a.framesOf(inp, a.tone(freq, a.rateOf(inp), SECONDS),
    inp === 'opus' ? toneEncoder() : null);
  await a.paced(frames.length, (i) => client.send(frames[i]));
  await client.sendJson({ type: 'session.end' });
  const { messages, close } = await client.untilClose(h.WAIT_MS);
  const problems = [];
  const texts = messages.filter((m) => m.kind === 'text').map((m) => m.data);
  if (texts.join() !== '{"type":"state","state":"closed"}') {
    problems.push(`text messages ${texts}`);
  }
  if (close.code !== 1000) problems.push(`close ${close.code}`);
  return { got: messages.filter((m) => m.kind === 'binary')
    .map((m) => m.data), problems };
}

async function twilio(i, freq) {
  const call = await TwilioCall.open(100 + i);
  open.push(call);
  await call.start();
  const frames = a.framesOf('mulaw', a.tone(freq, 8000, SECONDS));
  await a.paced(frames.length,
    (k) => call.sendRaw(call.mediaMessage(frames[k])));
  await call.stop();
  const code = await call.finish();
  const problems = [...call.problems, ...call.checkMarks()];
  if (code !== 1000) problems.push(`close ${code}`);
  return { got: call.media, problems };
}

async function vonage(i, rate, freq) {
  const r = await vonageCall(rate, freq, { short: 1, seconds: SECONDS,
    tag: `load-${i}` });
  const problems = [];
  if (r.texts.length) problems.push(`text messages ${r.texts}`);
  if (r.code !== 1000) problems.push(`close ${r.code}`);
  return { got: r.got, problems, atLeast: true };
}

function decode(out, got) {
  if (out === 'opus') {
    const dec = a.opusDecoder();
    return a.concatSamples(got.map((p) => a.pcmSamples(dec.decode(p))));
  }
  if (out === 'mulaw') return a.mulawDecode(Buffer.concat(got));
  return a.pcmSamples(Buffer.concat(got));
}

async function session(i) {
  const [kind, inp, out] = KINDS[i % KINDS.length];
  const freq = frequency(i);
  const label = `session ${i} (${kind} ${inp} -> ${out}, ${freq} Hz)`;
  let r;
  if (kind === 'v1') r = await voiceV1(inp, out, freq);
  else if (kind === 'twilio') r = await twilio(i, freq);
  else r = await vonage(i, a.rateOf(inp), freq);

  const problems = r.problems.map((p) => `${label}: ${p}`);
  const count = r.got.length;
  if (r.atLeast ? count < FRAMES : Math.abs(count - FRAMES) > SLACK) {
    problems.push(`${label}: ${count} frames back for ${FRAMES}`);
  }
  const rate = out === 'opus' ? a.OPUS_RATE : a.rateOf(out);
  const samples = decode(out, r.got);
  if (out === 'opus') {
    if (samples.length !== count * (a.OPUS_RATE / 50)) {
      problems.push(`${label}: ${samples.length} samples from ${count} `
        + 'packets');
    }
  } else if (inp !== out || kind !== 'v1') {
    const sizes = new Set(r.got.map((f) => f.length));
    if (sizes.size !== 1 || !sizes.has(a.frameBytes(out))) {
      problems.push(`${label}: frame sizes ${[...sizes]}`);
    }
  }
  let report = null;
  try {
    report = a.toneReport(samples, rate, freq, 0.1, 0.3);
  } catch (err) {
    problems.push(`${label}: ${err.message}`);
  }
  if (report) {
    const kindOf = (f) => (f === 'opus' ? 'opus'
      : f === 'mulaw' ? 'mulaw' : 'pcm');
    const bound = Math.min(MIN_SNR[kindOf(inp)], MIN_SNR[kindOf(out)]);
    if (Math.abs(report.freq - freq) > FREQ_TOLERANCE_HZ) {
      problems.push(`${label}: heard ${report.freq.toFixed(1)} Hz`);
    }
    if (report.snr < bound) {
      problems.push(`${label}: SNR ${report.snr.toFixed(1)} dB`);
    }
  }
  return { key: `${kind} ${inp}->${out}`, snr: report?.snr, problems };
}

test('50 sessions of mixed formats and dialects each hear their own tone',
  { timeout: 60000 }, async (t) => {
    const results = await Promise.all(
      Array.from({ length: SESSIONS }, (_, i) => session(i)
        .catch((err) => ({ problems: [`session ${i}: ${err.message}`] }))));
    const worst = new Map();
    for (const r of results) {
      if (r.snr !== undefined) {
        worst.set(r.key, Math.min(worst.get(r.key) ?? Infinity, r.snr));
      }
    }
    t.diagnostic('lowest SNR by kind: ' + [...worst].sort()
      .map(([k, v]) => `${k} ${v.toFixed(1)} dB`).join(', '));
    assert.deepEqual(results.flatMap((r) => r.problems), []);
  });
