// Shared helpers for the Node integration tests (ws client library).
//
// run.py starts nginx with the voice module and passes its address and
// settings in VOICE_TEST_URL, VOICE_ECHO_DELAY_MS,
// VOICE_SLOW_ECHO_DELAY_MS and VOICE_SLOW_SEND_TIMEOUT_MS.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

function envMs(name) {
  const value = process.env[name];
  if (value === undefined) {
    throw new Error(`${name} is not set: run the tests through run.py`);
  }
  return Number(value);
}

export const BASE_URL = process.env.VOICE_TEST_URL;
export const ECHO_DELAY_MS = envMs('VOICE_ECHO_DELAY_MS');
export const SLOW_ECHO_DELAY_MS = envMs('VOICE_SLOW_ECHO_DELAY_MS');
export const SLOW_SEND_TIMEOUT_MS = envMs('VOICE_SLOW_SEND_TIMEOUT_MS');

// nginx keeps time in whole milliseconds, so a timer may fire up to one
// millisecond early.
export const TIMER_TOLERANCE_MS = 1;

// Guard against hanging; never a latency assertion.
export const WAIT_MS = 10000;

export const SUBPROTOCOL = 'voice.v1';

export function url(path) {
  if (!BASE_URL) throw new Error('VOICE_TEST_URL is not set');
  return BASE_URL + path;
}

// Connections still open; closeAll() drops them after each test so a
// failed test leaves no session behind to hold the test process.
const openClients = new Set();

export function closeAll() {
  for (const client of openClients) client.terminate();
  openClients.clear();
}

// A WebSocket with an inbox: every message and the close are queued as
// they happen, so a test awaits them in order and misses nothing.
export class Client {
  constructor(ws) {
    this.ws = ws;
    openClients.add(this);
    this.queue = [];
    this.waiters = [];
    this.closed = null;
    this.closedPromise = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    ws.on('message', (data, isBinary) => {
      this.push({
        kind: isBinary ? 'binary' : 'text',
        data: isBinary ? Buffer.from(data) : data.toString('utf8'),
        at: performance.now(),
      });
    });
    ws.on('close', (code, reason) => {
      openClients.delete(this);
      // ws reports 1006 when no close frame came.
      this.closed = {
        code,
        reason: reason.toString(),
        at: performance.now(),
      };
      this.push({ kind: 'close', ...this.closed });
      this.resolveClosed(this.closed);
    });
    ws.on('error', (err) => {
      this.error = err;
    });
  }

  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.queue.push(item);
  }

  // The next message (or the close), failing after timeoutMs.
  next(timeoutMs = WAIT_MS) {
    if (this.queue.length > 0) {
      const item = this.queue.shift();
      // The close stays visible to later calls.
      if (item.kind === 'close') this.queue.unshift(item);
      return Promise.resolve(item);
    }
    if (this.closed) return Promise.resolve({ kind: 'close', ...this.closed });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`nothing received within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      this.waiters.push(done);
    });
  }

  async nextJson(timeoutMs = WAIT_MS) {
    const item = await this.next(timeoutMs);
    if (item.kind !== 'text') {
      throw new Error(`expected a text frame, got ${describe(item)}`);
    }
    return JSON.parse(item.data);
  }

  async nextBinary(timeoutMs = WAIT_MS) {
    const item = await this.next(timeoutMs);
    if (item.kind !== 'binary') {
      throw new Error(`expected a binary frame, got ${describe(item)}`);
    }
    return item;
  }

  // Every message up to the close; the close itself is returned apart.
  async untilClose(timeoutMs = WAIT_MS) {
    const messages = [];
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(`still open after ${timeoutMs} ms, `
          + `${messages.length} messages received`);
      }
      const item = await this.next(left);
      if (item.kind === 'close') return { messages, close: item };
      messages.push(item);
    }
  }

  send(data, options = {}) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, options, (err) => (err ? reject(err) : resolve()));
    });
  }

  sendJson(obj) {
    return this.send(JSON.stringify(obj));
  }

  terminate() {
    this.ws.terminate();
  }
}

function describe(item) {
  if (item.kind === 'binary') return `${item.data.length} binary bytes`;
  if (item.kind === 'text') return `text ${item.data}`;
  return `close ${item.code}`;
}

export function connectRaw(path = '/voice', protocols = [SUBPROTOCOL],
  options = {}) {
  return new WebSocket(url(path), protocols, {
    maxPayload: 0,
    handshakeTimeout: WAIT_MS,
    ...options,
  });
}

export function connect(path = '/voice', protocols = [SUBPROTOCOL],
  options = {}) {
  return new Promise((resolve, reject) => {
    const ws = connectRaw(path, protocols, options);
    const client = new Client(ws);
    ws.once('open', () => resolve(client));
    ws.once('error', reject);
  });
}

export async function startSession(path = '/voice', start = null) {
  const client = await connect(path);
  try {
    await client.sendJson(start ?? { type: 'session.start' });
    const started = await client.nextJson();
    if (started.type !== 'session.started') {
      throw new Error('expected session.started, got '
        + JSON.stringify(started));
    }
    const state = await client.nextJson();
    if (state.type !== 'state' || state.state !== 'streaming') {
      throw new Error('expected state streaming, got '
        + JSON.stringify(state));
    }
    return { client, started };
  } catch (err) {
    client.terminate();
    throw err;
  }
}

// Payload unique to (session, seq): a readable header, then a digest of
// both, so a frame from another session never matches.
export function audioFrame(session, seq, size = 640) {
  const head = Buffer.alloc(6);
  head.writeUInt16BE(session, 0);
  head.writeUInt32BE(seq, 2);
  const digest = createHash('sha512').update(head).digest();
  const out = Buffer.alloc(size);
  head.copy(out, 0, 0, Math.min(6, size));
  for (let off = 6; off < size; off += digest.length) {
    digest.copy(out, off, 0, Math.min(digest.length, size - off));
  }
  return out;
}

export function describeFrame(buf) {
  if (buf.length >= 6) {
    return `frame (session ${buf.readUInt16BE(0)}, seq ${buf.readUInt32BE(2)}, `
      + `${buf.length} bytes)`;
  }
  return `frame of ${buf.length} bytes`;
}

// Watches the raw bytes the server sends on a client socket and records
// the header of every frame (server frames are never masked), so a test
// can tell one whole frame from a fragmented message.
export function recordFrames(client) {
  const frames = [];
  let pending = Buffer.alloc(0);
  client.ws._socket.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      if (pending.length < 2) return;
      const fin = (pending[0] & 0x80) !== 0;
      const opcode = pending[0] & 0x0f;
      let len = pending[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (pending.length < 4) return;
        len = pending.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (pending.length < 10) return;
        len = Number(pending.readBigUInt64BE(2));
        off = 10;
      }
      if (pending[1] & 0x80) off += 4;
      if (pending.length < off + len) return;
      frames.push({ fin, opcode, length: len });
      pending = pending.subarray(off + len);
    }
  });
  return frames;
}

export const OP_TEXT = 1;
export const OP_BINARY = 2;
