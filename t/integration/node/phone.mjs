// Phone gateway clients for the Node integration tests: Twilio Media
// Streams and the Vonage WebSocket, each speaking as the real gateway
// does.

import { performance } from 'node:perf_hooks';
import * as h from './helpers.mjs';
import * as a from './audio.mjs';

export const MARK_EVERY = 10;

function open(path) {
  // Gateways offer no subprotocol: no Sec-WebSocket-Protocol header.
  const ws = h.connectRaw(path, []);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function sendOn(ws, data) {
  return new Promise((resolve, reject) => {
    ws.send(data, (err) => (err ? reject(err) : resolve()));
  });
}

// One call's media stream, as Twilio would drive it.
export class TwilioCall {
  constructor(ws, tag) {
    this.ws = ws;
    const hex = (n) => n.toString(16).padStart(30, '0');
    this.streamSid = `MZ${hex(0x7e570000 + tag)}`;
    this.callSid = `CA${hex(0xca110000 + tag)}`;
    this.accountSid = `AC${hex(0xacc0)}`;
    this.seq = 0;
    this.chunk = 0;
    this.received = [];
    this.problems = [];
    this.media = [];
    this.marks = [];      // { name, before: media frames before it }
    this.acked = [];
    this.playedUntil = 0;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code) => resolve(code));
    });
    ws.on('message', (data, isBinary) => this.take(data, isBinary));
    ws.on('error', (err) => this.problems.push(`socket error ${err}`));
  }

  static async open(tag, path = '/twilio') {
    const call = new TwilioCall(await open(path), tag);
    await call.send({ event: 'connected', protocol: 'Call',
      version: '1.0.0' });
    return call;
  }

  nextSeq() {
    this.seq += 1;
    return String(this.seq);
  }

  send(message) {
    return sendOn(this.ws, JSON.stringify(message));
  }

  sendRaw(data) {
    return sendOn(this.ws, data);
  }

  start({ rate = 8000, channels = 1, encoding = 'audio/x-mulaw' } = {}) {
    return this.send({
      event: 'start',
      sequenceNumber: this.nextSeq(),
      start: {
        accountSid: this.accountSid,
        streamSid: this.streamSid,
        callSid: this.callSid,
        tracks: ['inbound'],
        mediaFormat: { encoding, sampleRate: rate, channels },
        customParameters: { caller: 'integration' },
      },
      streamSid: this.streamSid,
    });
  }

  mediaMessage(payload) {
    this.chunk += 1;
    return JSON.stringify({
      event: 'media',
      sequenceNumber: this.nextSeq(),
      media: {
        track: 'inbound',
        chunk: String(this.chunk),
        timestamp: String((this.chunk - 1) * a.FRAME_MS),
        payload: Buffer.from(payload).toString('base64'),
      },
      streamSid: this.streamSid,
    });
  }

  dtmf(digit) {
    return this.send({ event: 'dtmf', streamSid: this.streamSid,
      sequenceNumber: this.nextSeq(),
      dtmf: { track: 'inbound_track', digit } });
  }

  stop() {
    return this.send({ event: 'stop', sequenceNumber: this.nextSeq(),
      streamSid: this.streamSid,
      stop: { accountSid: this.accountSid, callSid: this.callSid } });
  }

  take(data, isBinary) {
    this.received.push(data);
    if (isBinary) {
      this.problems.push(`binary frame of ${data.length} bytes`);
      return;
    }
    const text = data.toString('utf8');
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      this.problems.push(`not JSON: ${text.slice(0, 80)}`);
      return;
    }
    const keys = (o) => Object.keys(o ?? {}).sort().join(',');
    if (event.streamSid !== this.streamSid) {
      this.problems.push(`streamSid of ${text.slice(0, 120)}`);
    }
    if (event.event === 'media') {
      if (keys(event) !== 'event,media,streamSid'
        || keys(event.media) !== 'payload') {
        this.problems.push(`media shape ${text.slice(0, 120)}`);
        return;
      }
      const p = event.media.payload;
      if (typeof p !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(p)
        || p.length % 4) {
        this.problems.push('payload is not base64');
        return;
      }
      const payload = Buffer.from(p, 'base64');
      if (payload.length !== 160) {
        this.problems.push(`payload of ${payload.length} bytes`);
      }
      this.media.push(payload);
      // Twilio plays each 20 ms chunk after the ones before it.
      this.playedUntil = Math.max(this.playedUntil, performance.now())
        + a.FRAME_MS;
    } else if (event.event === 'mark') {
      if (keys(event) !== 'event,mark,streamSid'
        || keys(event.mark) !== 'name') {
        this.problems.push(`mark shape ${text.slice(0, 120)}`);
        return;
      }
      const { name } = event.mark;
      this.marks.push({ name, before: this.media.length });
      // Answered once the audio before it has played, as Twilio does.
      setTimeout(() => this.ack(name),
        Math.max(0, this.playedUntil - performance.now()));
    } else {
      this.problems.push(`unexpected message ${text.slice(0, 120)}`);
    }
  }

  ack(name) {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.acked.push(name);
    this.send({ event: 'mark', sequenceNumber: this.nextSeq(),
      streamSid: this.streamSid, mark: { name } }).catch(() => {});
  }

  // Marks are 1, 2, 3... each after ten more media frames.
  checkMarks() {
    const problems = [];
    this.marks.forEach(({ name, before }, i) => {
      if (name !== String(i + 1)) problems.push(`mark ${i} named ${name}`);
      if (before !== MARK_EVERY * (i + 1)) {
        problems.push(`mark ${name} after ${before} media frames`);
      }
    });
    if (this.marks.length !== Math.floor(this.media.length / MARK_EVERY)) {
      problems.push(`${this.marks.length} marks for ${this.media.length} `
        + 'media frames');
    }
    return problems;
  }

  async finish(timeoutMs = h.WAIT_MS) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error('call still open after '
        + `${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  terminate() {
    this.ws.terminate();
  }
}

export function vonageConnected(rate, headers = {}) {
  return JSON.stringify({ event: 'websocket:connected',
    'content-type': `audio/l16;rate=${rate}`, ...headers });
}

// Connects as Vonage does, streams a tone then `tail` s of silence (a
// DTMF event and an unknown event half way), reads until all but `short`
// frames are back and hangs up with a close frame.
export async function vonageCall(rate, freq, { short = 0, seconds = 1.0,
  tail = 0.2, tag = 'call' } = {}) {
  const ws = await open('/vonage');
  const got = [];
  const texts = [];
  let enough;
  const enoughP = new Promise((resolve) => { enough = resolve; });
  const closed = new Promise((resolve) => {
    ws.on('close', (code) => {
      enough();
      resolve(code);
    });
  });
  ws.on('error', () => {});
  try {
    await sendOn(ws, vonageConnected(rate, { 'X-Call-Id': tag,
      caller: '447700900000' }));
    const samples = a.concatSamples([a.tone(freq, rate, seconds),
      new Int16Array(Math.round(rate * tail))]);
    const name = `pcm${rate / 1000}k`;
    const frames = a.framesOf(name, samples);
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        texts.push(data.toString('utf8'));
        return;
      }
      got.push(Buffer.from(data));
      if (got.length >= frames.length - short) enough();
    });
    const half = Math.floor(frames.length / 2);
    await a.paced(frames.length, async (i) => {
      if (i === half) {
        await sendOn(ws, JSON.stringify({ event: 'websocket:dtmf',
          digit: '5', duration: 260 }));
        await sendOn(ws, JSON.stringify({ event: 'websocket:something' }));
      }
      await sendOn(ws, frames[i]);
    });
    let timer;
    await Promise.race([enoughP, new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${got.length} of `
        + `${frames.length} frames back`)), h.WAIT_MS);
    })]).finally(() => clearTimeout(timer));
    ws.close(1000);
    const code = await Promise.race([closed, new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), h.WAIT_MS);
    })]).finally(() => clearTimeout(timer));
    return { frames, got, texts, code };
  } finally {
    ws.terminate();
  }
}
