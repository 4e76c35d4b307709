// Session lifecycle and control messages of voice.v1.

import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { afterEach, test } from 'node:test';
import * as h from './helpers.mjs';

afterEach(() => h.closeAll());

const T = { timeout: 20000 };

test('session.start is answered with session.started then streaming', T,
  async () => {
    const client = await h.connect('/voice');
    try {
      await client.sendJson({ type: 'session.start' });
      const started = await client.nextJson();
      assert.equal(started.type, 'session.started');
      assert.equal(typeof started.session_id, 'string');
      assert.notEqual(started.session_id, '');
      assert.equal(started.protocol, 'voice.v1');
      assert.equal(typeof started.audio, 'object');
      const { input, output } = started.audio;
      assert.equal(input.encoding, 'pcm_s16le');
      assert.equal(input.sample_rate, 16000);
      assert.equal(input.channels, 1);
      assert.equal(output.encoding, 'pcm_s16le');
      assert.equal(output.sample_rate, 16000);
      assert.deepEqual(await client.nextJson(),
        { type: 'state', state: 'streaming' });
    } finally {
      client.terminate();
    }
  });

test('session.start with explicit formats', T, async () => {
  const audio = {
    input: { encoding: 'pcm_s16le', sample_rate: 16000, channels: 1 },
    output: { encoding: 'pcm_s16le', sample_rate: 16000 },
  };
  const { client, started } = await h.startSession('/voice',
    { type: 'session.start', audio });
  try {
    assert.equal(started.audio.input.encoding, 'pcm_s16le');
    assert.equal(started.audio.input.sample_rate, 16000);
    assert.equal(started.audio.output.sample_rate, 16000);
    const frame = h.audioFrame(10, 1);
    await client.send(frame);
    assert.deepEqual((await client.nextBinary()).data, frame);
  } finally {
    client.terminate();
  }
});

test('binary before session.start: PROTOCOL_VIOLATION then close 1008', T,
  async () => {
    const client = await h.connect('/voice');
    await client.send(Buffer.from([0, 1, 2, 3]));
    const { messages, close } = await client.untilClose();
    assert.equal(messages.filter((m) => m.kind === 'binary').length, 0,
      'audio sent before session.start was echoed');
    assert.equal(messages.length, 1);
    const err = JSON.parse(messages[0].data);
    assert.equal(err.type, 'error');
    assert.equal(err.code, 'PROTOCOL_VIOLATION');
    assert.equal(err.recoverable, false);
    assert.equal(typeof err.message, 'string');
    assert.equal(close.code, 1008);
  });

test('bad JSON after session.start is a recoverable error', T, async () => {
  const { client } = await h.startSession();
  try {
    for (const bad of ['{"type": "session.start"', 'not json at all',
      JSON.stringify({ type: 'no.such.type' })]) {
      await client.send(bad);
      const err = await client.nextJson();
      assert.equal(err.type, 'error', `after ${bad}`);
      assert.equal(err.code, 'PROTOCOL_VIOLATION');
      assert.equal(err.recoverable, true);
    }
    // No reply to these in the echo pipeline: the audio comes back next.
    await client.sendJson({ type: 'input.commit' });
    await client.sendJson({ type: 'text.input', text: 'hello' });
    await client.sendJson({ type: 'response.cancel' });
    const frame = h.audioFrame(11, 1);
    await client.send(frame);
    assert.deepEqual((await client.nextBinary()).data, frame);
  } finally {
    client.terminate();
  }
});

test('ping is answered with a pong carrying the same payload', T,
  async () => {
    const { client } = await h.startSession();
    try {
      const payloads = [Buffer.alloc(0), Buffer.from('voice-ping'),
        Buffer.alloc(125, 0x5a)];
      for (const payload of payloads) {
        const pong = new Promise((resolve) => client.ws.once('pong', resolve));
        client.ws.ping(payload);
        const got = await Promise.race([pong, client.closedPromise]);
        assert.ok(Buffer.isBuffer(got), 'connection closed instead of pong');
        assert.deepEqual(got, payload);
      }
      // A ping while an echo is pending: both arrive.
      const frame = h.audioFrame(12, 1);
      await client.send(frame);
      const pong = new Promise((resolve) => client.ws.once('pong', resolve));
      client.ws.ping(Buffer.from('during-echo'));
      assert.deepEqual(await pong, Buffer.from('during-echo'));
      assert.deepEqual((await client.nextBinary()).data, frame);
    } finally {
      client.terminate();
    }
  });

test('session.end: pending echoes come back, then closed and 1000', T,
  async () => {
    const { client } = await h.startSession();
    const sent = [];
    for (let seq = 0; seq < 20; seq++) {
      const frame = h.audioFrame(13, seq, 320 + seq);
      sent.push({ frame, at: performance.now() });
      await client.send(frame);
    }
    await client.sendJson({ type: 'session.end' });
    const { messages, close } = await client.untilClose();
    const echoes = messages.filter((m) => m.kind === 'binary');
    assert.equal(echoes.length, sent.length);
    echoes.forEach((m, i) => {
      assert.deepEqual(m.data, sent[i].frame, `echo ${i}`);
      assert.ok(m.at >= sent[i].at + h.ECHO_DELAY_MS - h.TIMER_TOLERANCE_MS,
        `echo ${i} came before its delay`);
    });
    const last = messages[messages.length - 1];
    assert.equal(last.kind, 'text');
    assert.deepEqual(JSON.parse(last.data), { type: 'state', state: 'closed' });
    assert.equal(messages.filter((m) => m.kind === 'text').length, 1);
    assert.equal(close.code, 1000);
  });

test('audio sent while muted is not echoed; after unmute it is', T,
  async () => {
    const { client } = await h.startSession();
    const before = [0, 1, 2, 3, 4].map((s) => h.audioFrame(14, s));
    const muted = [...Array(10).keys()].map((s) => h.audioFrame(14, 100 + s));
    const after = [0, 1, 2, 3, 4].map((s) => h.audioFrame(14, 200 + s));

    for (const f of before) await client.send(f);
    for (const f of before) {
      assert.deepEqual((await client.nextBinary()).data, f);
    }

    await client.sendJson({ type: 'input.mute' });
    for (const f of muted) await client.send(f);
    await client.sendJson({ type: 'input.unmute' });
    for (const f of after) await client.send(f);
    await client.sendJson({ type: 'session.end' });

    const { messages, close } = await client.untilClose();
    const got = messages.filter((m) => m.kind === 'binary').map((m) => m.data);
    for (const g of got) {
      assert.ok(!muted.some((f) => f.equals(g)),
        `muted ${h.describeFrame(g)} was echoed`);
    }
    assert.deepEqual(got, after);
    assert.equal(close.code, 1000);
  });
