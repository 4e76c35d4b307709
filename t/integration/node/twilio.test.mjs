// voice_protocol twilio with a client that behaves as Twilio Media
// Streams does; only Twilio's own messages may come back.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as h from './helpers.mjs';
import * as a from './audio.mjs';
import { TwilioCall } from './phone.mjs';

const calls = [];
after(() => calls.forEach((c) => c.terminate()));

const SLACK = 2;
const FREQ_TOLERANCE_HZ = 3;
// mu-law in, mu-law out through 16 kHz: measured 34-37 dB.
const MIN_SNR = 28;

async function openCall(tag) {
  const call = await TwilioCall.open(tag);
  calls.push(call);
  return call;
}

function checkTone(t, call, freq, sent) {
  assert.ok(Math.abs(call.media.length - sent) <= SLACK,
    `${call.media.length} media back for ${sent} sent`);
  const { freq: got, snr } = a.toneReport(
    a.mulawDecode(Buffer.concat(call.media)), 8000, freq);
  t.diagnostic(`twilio ${freq} Hz: ${call.media.length} media back, `
    + `${got.toFixed(1)} Hz, SNR ${snr.toFixed(1)} dB`);
  assert.ok(Math.abs(got - freq) <= FREQ_TOLERANCE_HZ, `heard ${got} Hz`);
  assert.ok(snr >= MIN_SNR, `SNR ${snr.toFixed(1)} dB`);
}

test('a Twilio call echoes its tone in Twilio messages only',
  { timeout: 30000 }, async (t) => {
    const call = await openCall(1);
    await call.start();
    const payloads = a.framesOf('mulaw', a.tone(1000, 8000, 1.5));
    const half = payloads.length / 2;
    await a.paced(payloads.length, async (i) => {
      if (i === half) await call.dtmf('7');
      await call.sendRaw(call.mediaMessage(payloads[i]));
    });
    await call.stop();
    assert.equal(await call.finish(), 1000);
    assert.deepEqual(call.problems, []);
    assert.deepEqual(call.checkMarks(), []);
    assert.ok(call.acked.length > 0, 'no mark was due before the close');
    assert.deepEqual(call.acked,
      call.marks.slice(0, call.acked.length).map((m) => m.name));
    checkTone(t, call, 1000, payloads.length);
  });

test('bad base64, a binary frame and bad JSON are dropped; '
  + 'a neighbour is unaffected', { timeout: 30000 }, async (t) => {
  const noisy = await openCall(2);
  const clean = await openCall(3);
  await noisy.start({ rate: '8000', channels: '1' });
  await clean.start();
  const noisyAudio = a.framesOf('mulaw', a.tone(600, 8000, 1.2));
  const cleanAudio = a.framesOf('mulaw', a.tone(1800, 8000, 1.2));
  const bad = new Map([
    [8, JSON.stringify({ event: 'media', sequenceNumber: '77',
      streamSid: noisy.streamSid, media: { track: 'inbound', chunk: '77',
        timestamp: '0', payload: 'this is !!! not base64' } })],
    [16, Buffer.from([0xde, 0xad, 0xbe, 0xef])],
    [24, '{"event": "media" "media": {}}'],
    [32, JSON.stringify({ event: 'surprise', streamSid: noisy.streamSid })],
  ]);
  await Promise.all([
    a.paced(noisyAudio.length, async (i) => {
      if (bad.has(i)) await noisy.sendRaw(bad.get(i));
      await noisy.sendRaw(noisy.mediaMessage(noisyAudio[i]));
    }).then(() => noisy.stop()),
    a.paced(cleanAudio.length,
      (i) => clean.sendRaw(clean.mediaMessage(cleanAudio[i])))
      .then(() => clean.stop()),
  ]);
  assert.deepEqual(await Promise.all([noisy.finish(), clean.finish()]),
    [1000, 1000]);
  for (const call of [noisy, clean]) {
    assert.deepEqual(call.problems, []);
    assert.deepEqual(call.checkMarks(), []);
  }
  checkTone(t, noisy, 600, noisyAudio.length);
  checkTone(t, clean, 1800, cleanAudio.length);
});

test('media before start closes 1008 with nothing else',
  { timeout: 20000 }, async () => {
    const call = await openCall(4);
    await call.sendRaw(call.mediaMessage(Buffer.alloc(160, 0xff)));
    assert.equal(await call.finish(), 1008);
    assert.deepEqual(call.received, []);
  });

test('a start that is not mu-law 8 kHz mono closes 1008',
  { timeout: 20000 }, async () => {
    for (const [tag, format] of [[5, { encoding: 'audio/x-l16' }],
      [6, { rate: '16000' }], [7, { channels: '2' }]]) {
      const call = await openCall(tag);
      await call.start(format);
      await call.sendRaw(call.mediaMessage(Buffer.alloc(160, 0xff)));
      assert.equal(await call.finish(), 1008, JSON.stringify(format));
      assert.deepEqual(call.received, [], JSON.stringify(format));
    }
  });
