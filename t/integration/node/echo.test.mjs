// The echo pipeline: content, order, delay and message boundaries.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { afterEach, test } from 'node:test';
import * as h from './helpers.mjs';

afterEach(() => h.closeAll());

// Bytes left unanswered at any time.  The server's echo delay line and
// send queue default to 64k; half of that keeps this test about order and
// content, not about the bounds.  A bigger frame is sent alone.
const WINDOW = 32 * 1024;

function echoSizes(count) {
  const edges = [1, 2, 3, 125, 126, 127, 128, 1000, 4095, 4096, 16384,
    32767, 32768, 65534, 65535, 65535];
  const sizes = [...edges];
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  while (sizes.length < count) {
    sizes.push(rand(2) ? 2 + rand(700) : 700 + rand(8300));
  }
  for (let i = sizes.length - 1; i > 0; i--) {
    const j = rand(i + 1);
    [sizes[i], sizes[j]] = [sizes[j], sizes[i]];
  }
  return sizes;
}

function distinctPayloads(sizes) {
  const seen = new Set();
  return sizes.map((size, i) => {
    for (;;) {
      const p = randomBytes(size);
      if (size >= 2) p.writeUInt16BE(i, 0);
      const key = p.toString('base64');
      if (!seen.has(key)) {
        seen.add(key);
        return p;
      }
    }
  });
}

test('200 frames come back unchanged, in order, after the echo delay',
  { timeout: 60000 }, async () => {
    const { client } = await h.startSession();
    const payloads = distinctPayloads(echoSizes(200));
    const sentAt = [];
    let outstanding = 0;
    let received = 0;
    let wake = null;
    const got = [];

    let readerDone = false;
    const reader = (async () => {
      try {
        while (received < payloads.length) {
          const item = await client.next();
          if (item.kind !== 'binary') {
            throw new Error(`waiting for echo ${received} `
              + `(${payloads[received].length} bytes), got ${item.kind} `
              + `${item.data ?? item.code}`);
          }
          got.push(item);
          outstanding -= payloads[received].length;
          received += 1;
          if (wake) wake();
        }
      } finally {
        // Wake the sender when reading stops early.
        readerDone = true;
        if (wake) wake();
      }
    })();
    reader.catch(() => {});

    for (let i = 0; i < payloads.length && !readerDone; i++) {
      const size = payloads[i].length;
      while (!readerDone && outstanding > 0 && outstanding + size > WINDOW) {
        await new Promise((resolve) => { wake = resolve; });
        wake = null;
      }
      if (readerDone) break;
      outstanding += size;
      sentAt[i] = performance.now();
      await client.send(payloads[i]);
    }
    await reader;

    assert.equal(got.length, payloads.length);
    got.forEach((item, i) => {
      if (!item.data.equals(payloads[i])) {
        const where = payloads.findIndex((p) => p.equals(item.data));
        assert.fail(`echo ${i}: expected frame ${i} (${payloads[i].length} `
          + `bytes), got ${where >= 0 ? `frame ${where}`
            : `${item.data.length} unknown bytes`}`);
      }
      const early = sentAt[i] + h.ECHO_DELAY_MS - h.TIMER_TOLERANCE_MS
        - item.at;
      assert.ok(early <= 0, `frame ${i} (${item.data.length} bytes) came back `
        + `${early.toFixed(1)} ms before the echo delay`);
    });
    client.terminate();
  });

test('a fragmented message comes back as one whole frame',
  { timeout: 20000 }, async () => {
    const { client } = await h.startSession();
    try {
      const frames = h.recordFrames(client);
      const parts = [h.audioFrame(15, 1, 700), h.audioFrame(15, 2, 1),
        Buffer.alloc(0), h.audioFrame(15, 3, 3000)];
      const whole = Buffer.concat(parts);
      const pong = new Promise((resolve) => client.ws.once('pong', resolve));
      for (let i = 0; i < parts.length; i++) {
        const fin = i === parts.length - 1;
        await client.send(parts[i], { binary: true, fin });
        // A control frame between fragments is allowed and answered.
        if (i === 1) client.ws.ping(Buffer.from('mid-message'));
      }
      const single = h.audioFrame(15, 4, 50);
      await client.send(single);

      assert.deepEqual(await pong, Buffer.from('mid-message'));
      assert.deepEqual((await client.nextBinary()).data, whole);
      assert.deepEqual((await client.nextBinary()).data, single);
      assert.deepEqual(frames.filter((f) => f.opcode !== 0xa), [
        { fin: true, opcode: h.OP_BINARY, length: whole.length },
        { fin: true, opcode: h.OP_BINARY, length: single.length },
      ], 'frames as sent by the server');
    } finally {
      client.terminate();
    }
  });

test('a fragmented session.start is understood', { timeout: 20000 },
  async () => {
    const client = await h.connect('/voice');
    try {
      const text = JSON.stringify({ type: 'session.start' });
      await client.send(text.slice(0, 4), { fin: false });
      await client.send(text.slice(4, 11), { fin: false });
      await client.send(text.slice(11), { fin: true });
      assert.equal((await client.nextJson()).type, 'session.started');
      assert.deepEqual(await client.nextJson(),
        { type: 'state', state: 'streaming' });
    } finally {
      client.terminate();
    }
  });

test('a frame over voice_max_frame_size closes with 1009',
  { timeout: 20000 }, async () => {
    const { client } = await h.startSession();
    await client.send(Buffer.alloc(64 * 1024 + 1));
    const { messages, close } = await client.untilClose();
    assert.equal(messages.filter((m) => m.kind === 'binary').length, 0);
    assert.equal(close.code, 1009);
  });
