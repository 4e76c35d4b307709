// Converted echo between formats, Opus included, checked by decoding
// what comes back with codecs that are not the server's: mu-law written
// in audio.mjs, Opus from opusscript.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import * as h from './helpers.mjs';
import * as a from './audio.mjs';

// Tests here run side by side, so a finished one must not drop the
// connections of the others: each closes its own, and whatever is left
// goes at the end.
after(() => h.closeAll());

const SECONDS = 1.2;
const FRAMES = Math.round(SECONDS * a.FRAMES_PER_SECOND);
// Frames the resampler's delay and the padding at session.end may add
// or take away.
const SLACK = 2;

// Lower bounds of the SNR of the echoed tone, set well under what was
// measured: PCM through the resamplers 90-93 dB, G.711 34-37 dB (its
// quantisation alone), Opus at the client's 64 kbit/s and through the
// server's encoder 41-48 dB.
const MIN_SNR = { pcm: 60, mulaw: 28, opus: 25 };
const FREQ_TOLERANCE_HZ = 3;

function snrBound(inp, out) {
  const kinds = [inp, out].map((f) => (f === 'opus' ? 'opus'
    : f === 'mulaw' ? 'mulaw' : 'pcm'));
  return Math.min(...kinds.map((k) => MIN_SNR[k]));
}

// An encoder that keeps a pure tone a pure tone: CELT (music) at a
// bitrate where the waveform survives.
function toneEncoder() {
  const enc = a.opusEncoder();
  enc.setBitrate(64000);
  enc.encoderCTL(4024, 3002);  // OPUS_SET_SIGNAL, OPUS_SIGNAL_MUSIC
  return enc;
}

// Streams SECONDS of a tone in `inp` as real-time 20 ms frames, ends the
// session and returns everything that came back, decoded.
async function echo(inp, out, freq) {
  const { client, started } = await h.startSession('/voice',
    a.sessionStart(inp, out));
  const frames = a.framesOf(inp, a.tone(freq, a.rateOf(inp), SECONDS),
    inp === 'opus' ? toneEncoder() : null);
  let messages;
  let close;
  try {
    await a.paced(frames.length, (i) => client.send(frames[i]));
    await client.sendJson({ type: 'session.end' });
    ({ messages, close } = await client.untilClose(h.WAIT_MS));
  } finally {
    client.terminate();
  }
  const packets = messages.filter((m) => m.kind === 'binary')
    .map((m) => m.data);
  const texts = messages.filter((m) => m.kind === 'text')
    .map((m) => JSON.parse(m.data));

  let samples;
  const decodedLengths = [];
  if (out === 'opus') {
    const dec = a.opusDecoder(a.OPUS_RATE);
    samples = a.concatSamples(packets.map((p) => {
      const pcm = a.pcmSamples(dec.decode(p));
      decodedLengths.push(pcm.length);
      return pcm;
    }));
  } else if (out === 'mulaw') {
    samples = a.mulawDecode(Buffer.concat(packets));
  } else {
    samples = a.pcmSamples(Buffer.concat(packets));
  }
  return { started, frames, packets, texts, close, samples, decodedLengths };
}

const PAIRS = [
  ['pcm16k', 'mulaw', 440],
  ['mulaw', 'pcm16k', 1000],
  ['pcm48k', 'pcm16k', 1000],
  ['pcm8k', 'pcm24k', 440],
  ['pcm16k', 'opus', 440],
  ['opus', 'pcm16k', 1000],
  ['opus', 'opus', 440],
  ['mulaw', 'mulaw', 1000],
];

describe('converted echo in every format, paced playout',
  { concurrency: true }, () => {
  for (const [inp, out, freq] of PAIRS) {
    test(`${inp} -> ${out}, ${freq} Hz`, { timeout: 30000 }, async (t) => {
      const r = await echo(inp, out, freq);
      const rate = a.rateOf(out);

      assert.deepEqual(r.started.audio.input,
        { ...a.FORMATS[inp], channels: 1 });
      assert.equal(r.started.audio.output.encoding, a.FORMATS[out].encoding);
      assert.equal(r.started.audio.output.sample_rate, rate);
      assert.deepEqual(r.texts, [{ type: 'state', state: 'closed' }]);
      assert.equal(r.close.code, 1000);

      const raw = inp === out;
      if (raw) {
        // Same format both ways: the frames come back as they were sent.
        assert.equal(r.packets.length, r.frames.length);
        r.packets.forEach((p, i) => assert.ok(p.equals(r.frames[i]),
          `frame ${i} differs from what was sent`));
      } else {
        assert.ok(Math.abs(r.packets.length - FRAMES) <= SLACK,
          `${r.packets.length} frames for ${FRAMES} sent`);
      }

      if (out === 'opus') {
        r.packets.forEach((p, i) => {
          assert.equal(a.opusPacketMs(p), 20, `packet ${i} TOC`);
          assert.equal(r.decodedLengths[i], a.OPUS_RATE / 50,
            `packet ${i} decodes to ${r.decodedLengths[i]} samples`);
        });
      } else if (!raw) {
        const size = a.frameBytes(out);
        r.packets.forEach((p, i) => assert.equal(p.length, size,
          `frame ${i} is ${p.length} bytes`));
      }

      const { freq: got, snr } = a.toneReport(r.samples, rate, freq);
      t.diagnostic(`${inp} -> ${out}: ${r.packets.length} frames, `
        + `${got.toFixed(1)} Hz, SNR ${snr.toFixed(1)} dB`);
      assert.ok(Math.abs(got - freq) <= FREQ_TOLERANCE_HZ,
        `dominant frequency ${got.toFixed(1)} Hz, sent ${freq} Hz`);
      assert.ok(snr >= snrBound(inp, out),
        `SNR ${snr.toFixed(1)} dB under ${snrBound(inp, out)} dB`);
    });
  }

  for (const ms of [10, 40, 60]) {
    test(`Opus packets of ${ms} ms in, 20 ms frames out`, { timeout: 30000 },
      async (t) => {
        const enc = toneEncoder();
        const per = (a.OPUS_RATE / 1000) * ms;
        const samples = a.tone(700, a.OPUS_RATE, SECONDS);
        const packets = [];
        for (let i = 0; i + per <= samples.length; i += per) {
          packets.push(enc.encode(a.pcmBytes(samples.subarray(i, i + per)),
            per));
        }
        assert.equal(a.opusPacketMs(packets[0]), ms);
        const { client } = await h.startSession('/voice',
          a.sessionStart('opus', 'pcm16k'));
        let messages;
        let close;
        try {
          await a.paced(packets.length, (i) => client.send(packets[i]), ms);
          await client.sendJson({ type: 'session.end' });
          ({ messages, close } = await client.untilClose(h.WAIT_MS));
        } finally {
          client.terminate();
        }
        assert.equal(close.code, 1000);
        const frames = messages.filter((m) => m.kind === 'binary')
          .map((m) => m.data);
        assert.ok(Math.abs(frames.length - FRAMES) <= SLACK,
          `${frames.length} frames for ${SECONDS} s`);
        frames.forEach((f, i) => assert.equal(f.length, 640, `frame ${i}`));
        const r = a.toneReport(a.pcmSamples(Buffer.concat(frames)), 16000,
          700);
        t.diagnostic(`opus ${ms} ms packets -> pcm16k: ${frames.length} `
          + `frames, ${r.freq.toFixed(1)} Hz, SNR ${r.snr.toFixed(1)} dB`);
        assert.ok(Math.abs(r.freq - 700) <= FREQ_TOLERANCE_HZ);
        assert.ok(r.snr >= MIN_SNR.opus, `SNR ${r.snr.toFixed(1)} dB`);
      });
  }

  test('paced playout: 2 s sent at once come out as 100 Opus packets, '
    + 'in order', { timeout: 30000 }, async (t) => {
    const steps = Array.from({ length: 10 }, (_, k) => 500 + 150 * k);
    const frames = a.framesOf('pcm16k', a.staircase(steps, 16000, 0.2));
    assert.equal(frames.length, 100);
    const { client } = await h.startSession('/voice-burst',
      a.sessionStart('pcm16k', 'opus'));
    let messages;
    try {
      for (const f of frames) await client.send(f);
      await client.sendJson({ type: 'session.end' });
      ({ messages } = await client.untilClose(h.WAIT_MS));
    } finally {
      client.terminate();
    }
    const packets = messages.filter((m) => m.kind === 'binary');
    assert.ok(Math.abs(packets.length - frames.length) <= SLACK,
      `${packets.length} packets for ${frames.length} frames`);
    // Never more than voice_playout_lead ahead of real time (and the
    // millisecond of nginx's clock).
    const lead = Number(process.env.VOICE_PLAYOUT_LEAD_MS ?? 80);
    const ahead = Math.max(...packets.map((p, k) => packets[0].at
      + a.FRAME_MS * k - p.at));
    t.diagnostic(`burst to Opus: ${packets.length} packets, at most `
      + `${ahead.toFixed(1)} ms ahead of real time`);
    assert.ok(ahead <= lead + 3, `${ahead.toFixed(1)} ms ahead`);

    const dec = a.opusDecoder();
    const samples = a.concatSamples(packets.map((p) => {
      assert.equal(a.opusPacketMs(p.data), 20);
      return a.pcmSamples(dec.decode(p.data));
    }));
    const start = a.onset(samples, a.OPUS_RATE);
    const heard = steps.map((_, k) => {
      const from = start + Math.round(a.OPUS_RATE * (k * 0.2 + 0.05));
      return Math.round(a.dominantFrequency(
        samples.subarray(from, from + a.OPUS_RATE / 10), a.OPUS_RATE));
    });
    steps.forEach((want, k) => assert.ok(Math.abs(heard[k] - want) <= 10,
      `step ${k}: expected ${want} Hz, heard ${heard}`));
  });
});

test('an invalid Opus packet is a recoverable error; the session goes on',
  { timeout: 20000 }, async () => {
    const { client } = await h.startSession('/voice',
      a.sessionStart('opus', 'pcm16k'));
    const frames = a.framesOf('opus', a.tone(440, a.OPUS_RATE, 0.6),
      toneEncoder());
    const half = frames.length / 2;
    // Code 3 (a count of frames follows) with a count of zero.
    const bad = Buffer.from([0x03, 0x00]);
    await a.paced(frames.length + 1, (i) => {
      if (i === half) return client.send(bad);
      return client.send(frames[i < half ? i : i - 1]);
    });
    await client.sendJson({ type: 'session.end' });
    const { messages, close } = await client.untilClose();
    const texts = messages.filter((m) => m.kind === 'text')
      .map((m) => JSON.parse(m.data));
    const errors = texts.filter((t) => t.type === 'error');
    assert.equal(errors.length, 1, JSON.stringify(texts));
    assert.equal(errors[0].code, 'PROTOCOL_VIOLATION');
    assert.equal(errors[0].recoverable, true);
    assert.deepEqual(texts.at(-1), { type: 'state', state: 'closed' });
    assert.equal(close.code, 1000);

    const packets = messages.filter((m) => m.kind === 'binary')
      .map((m) => m.data);
    assert.ok(Math.abs(packets.length - frames.length) <= SLACK,
      `${packets.length} frames back for ${frames.length} good ones`);
    const samples = a.pcmSamples(Buffer.concat(packets));
    const { freq } = a.toneReport(samples, 16000, 440, 0.05, 0.2);
    assert.ok(Math.abs(freq - 440) <= FREQ_TOLERANCE_HZ, `${freq} Hz`);
  });
