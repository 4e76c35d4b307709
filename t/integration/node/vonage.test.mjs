// voice_protocol vonage with a client that behaves as the Vonage Voice
// API's WebSocket does; only audio may come back.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import * as h from './helpers.mjs';
import * as a from './audio.mjs';
import { vonageCall, vonageConnected } from './phone.mjs';

afterEach(() => h.closeAll());

const FREQ_TOLERANCE_HZ = 3;
const MIN_SNR = 60;   // measured about 90 dB: PCM through the resamplers

function check(t, rate, freq, { frames, got, texts, code }) {
  assert.deepEqual(texts, [], 'JSON came back to a Vonage client');
  assert.equal(code, 1000);
  got.forEach((f, i) => assert.equal(f.length, rate / 50 * 2,
    `frame ${i} is ${f.length} bytes`));
  const samples = a.pcmSamples(Buffer.concat(got));
  const { freq: heard, snr } = a.toneReport(samples, rate, freq);
  t.diagnostic(`vonage ${rate} Hz, ${freq} Hz tone: ${got.length} of `
    + `${frames.length} frames back, ${heard.toFixed(1)} Hz, `
    + `SNR ${snr.toFixed(1)} dB`);
  assert.ok(Math.abs(heard - freq) <= FREQ_TOLERANCE_HZ, `${heard} Hz`);
  assert.ok(snr >= MIN_SNR, `SNR ${snr.toFixed(1)} dB`);
}

test('L16 at 16 kHz comes back sample-exact in 640-byte frames',
  { timeout: 30000 }, async (t) => {
    const r = await vonageCall(16000, 1000);
    check(t, 16000, 1000, r);
    assert.equal(r.got.length, r.frames.length);
    assert.ok(Buffer.concat(r.got).equals(Buffer.concat(r.frames)));
  });

test('L16 at 8 kHz comes back in 320-byte frames', { timeout: 30000 },
  async (t) => {
    // Up to 16 kHz and back: the resamplers hold back a few samples, so
    // the last frame waits for more audio.
    const r = await vonageCall(8000, 440, { short: 1 });
    check(t, 8000, 440, r);
  });

test('L16 at 24 kHz comes back in 960-byte frames', { timeout: 30000 },
  async (t) => {
    const r = await vonageCall(24000, 1000, { short: 1 });
    check(t, 24000, 1000, r);
  });

test('binary before websocket:connected closes 1008', { timeout: 20000 },
  async () => {
    const client = await h.connect('/vonage', []);
    await client.send(Buffer.alloc(640));
    const { messages, close } = await client.untilClose();
    assert.deepEqual(messages, []);
    assert.equal(close.code, 1008);
  });

test('an unsupported rate closes 1008', { timeout: 20000 }, async () => {
  const client = await h.connect('/vonage', []);
  await client.send(vonageConnected(44100));
  await client.send(Buffer.alloc(1764));
  const { messages, close } = await client.untilClose();
  assert.deepEqual(messages, []);
  assert.equal(close.code, 1008);
});
