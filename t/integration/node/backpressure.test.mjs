// A client that stops reading, on /voice-slow (16k voice_send_buffer,
// short voice_send_timeout, large echo buffer).

import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, test } from 'node:test';
import * as h from './helpers.mjs';

afterEach(() => h.closeAll());

// While paused, the stalled client sends this much audio at once: twice
// what the kernel buffers on loopback can hold for a client that does not
// read (the server's socket send buffer grows to 4 MiB), so the server's
// own send queue must overflow.  Each frame is far below the 16k queue of
// /voice-slow, since a frame bigger than the queue could never be sent
// even to a client that reads.
const STALL_FRAMES = 2048;
const STALL_FRAME_BYTES = 4096;

// Neighbour echoes that must arrive while the other client is stalled.
const NEIGHBOUR_ECHOES_DURING_STALL = 20;

// Neighbour frames sent after the stalled client's last frame whose
// echoes must be back before it reads again: by then every echo of the
// stalled client has fallen due and met the full queue.
const NEIGHBOUR_FRAMES_AFTER_STALL = 3;

function stallFrames(tag) {
  const frames = [];
  for (let seq = 0; seq < STALL_FRAMES; seq++) {
    frames.push(h.audioFrame(tag, seq, STALL_FRAME_BYTES));
  }
  return frames;
}

// A second session streaming 20 ms frames and reading its echoes.
class Neighbour {
  constructor(client) {
    this.client = client;
    this.sent = [];
    this.got = [];
    this.duringStall = 0;
    this.stalled = true;
    this.finish = false;
    this.waiter = null;
  }

  async write() {
    const t0 = performance.now();
    for (let seq = 0; !this.finish; seq++) {
      const f = h.audioFrame(22, seq);
      await this.client.send(f);
      this.sent.push(f);
      // Real-time pacing of the neighbour's audio.
      const delay = t0 + (seq + 1) * 20 - performance.now();
      if (delay > 0) await sleep(delay);
    }
    await this.client.sendJson({ type: 'session.end' });
  }

  async read() {
    try {
      for (;;) {
        const item = await this.client.next(h.WAIT_MS);
        if (item.kind === 'close') return item;
        if (item.kind !== 'binary') continue;
        this.got.push(item.data);
        if (this.stalled) this.duringStall += 1;
        this.wake();
      }
    } finally {
      this.done = true;
      this.wake();
    }
  }

  wake() {
    if (this.waiter && (this.done || this.got.length >= this.waiter.count)) {
      this.waiter.resolve();
      this.waiter = null;
    }
  }

  async waitEchoes(count) {
    if (!this.done && this.got.length < count) {
      await new Promise((resolve) => { this.waiter = { count, resolve }; });
    }
    assert.ok(this.got.length >= count,
      `the neighbour session stopped at ${this.got.length} echoes`);
  }
}

test('a stalled reader gets one BACKPRESSURE; its neighbour keeps flowing',
  { timeout: 60000 }, async () => {
    const { client: stalled } = await h.startSession('/voice-slow');
    const neighbour = new Neighbour(
      (await h.startSession('/voice-slow')).client);

    stalled.ws.pause();
    const reading = neighbour.read();
    reading.catch(() => {});
    const writing = neighbour.write();
    writing.catch(() => {});
    const frames = stallFrames(21);
    try {
      for (const f of frames) await stalled.send(f);
      await neighbour.waitEchoes(Math.max(
        neighbour.sent.length + NEIGHBOUR_FRAMES_AFTER_STALL,
        NEIGHBOUR_ECHOES_DURING_STALL));
    } finally {
      neighbour.stalled = false;
      stalled.ws.resume();
    }

    await stalled.sendJson({ type: 'session.end' });
    const { messages, close } = await stalled.untilClose(30000);
    neighbour.finish = true;
    await writing;
    const neighbourClose = await reading;

    const infos = messages.filter((m) => m.kind === 'text')
      .map((m) => JSON.parse(m.data)).filter((m) => m.type === 'info');
    const bp = infos.filter((m) => m.code === 'BACKPRESSURE');
    const echoed = messages.filter((m) => m.kind === 'binary')
      .map((m) => m.data);
    assert.equal(bp.length, 1, `${bp.length} BACKPRESSURE infos for one `
      + `stall (${echoed.length} of ${frames.length} frames echoed); infos: `
      + JSON.stringify(infos.slice(0, 3)));
    assert.equal(typeof bp[0].message, 'string');

    assert.ok(echoed.length < frames.length,
      'nothing was dropped: the stall did not overflow');
    // What came back is the burst with frames left out, never altered or
    // reordered.
    let pos = 0;
    for (const e of echoed) {
      while (pos < frames.length && !frames[pos].equals(e)) pos++;
      assert.ok(pos < frames.length,
        `echo out of order or altered: ${h.describeFrame(e)}`);
      pos++;
    }
    assert.equal(close.code, 1000);

    assert.ok(neighbour.duringStall >= NEIGHBOUR_ECHOES_DURING_STALL);
    assert.equal(neighbour.got.length, neighbour.sent.length,
      'the neighbour session lost audio');
    neighbour.got.forEach((g, i) => assert.ok(g.equals(neighbour.sent[i]),
      `neighbour echo ${i} altered or reordered`));
    assert.equal(neighbourClose.code, 1000);
  });

test('a client that never reads is disconnected after voice_send_timeout',
  { timeout: 60000 }, async () => {
    const { client } = await h.startSession('/voice-slow');
    client.ws.pause();
    const pausedAt = performance.now();
    for (const f of stallFrames(23)) await client.send(f);

    // Keep audio flowing, so the server always has echoes waiting for a
    // client that takes none: a stall with nothing pending costs the
    // server nothing and is not what the timeout is for.  Once the server
    // has closed the connection, the next frame is answered with a reset.
    const deadline = pausedAt + h.SLOW_SEND_TIMEOUT_MS + 8000;
    let seq = STALL_FRAMES;
    while (!client.closed && performance.now() < deadline) {
      client.ws.send(h.audioFrame(23, seq++, STALL_FRAME_BYTES), () => {});
      await Promise.race([client.closedPromise, sleep(50)]);
    }
    assert.ok(client.closed, 'a client that never reads is still connected '
      + `${((performance.now() - pausedAt) / 1000).toFixed(1)} s after it `
      + 'stopped reading');
    assert.ok(client.closed.at - pausedAt
      >= h.SLOW_SEND_TIMEOUT_MS - h.TIMER_TOLERANCE_MS,
    'disconnected before voice_send_timeout');
  });
