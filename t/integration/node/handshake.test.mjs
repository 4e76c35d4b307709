// Opening handshake seen through the ws client library.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import * as h from './helpers.mjs';

afterEach(() => h.closeAll());

test('selects voice.v1 among the offered subprotocols', async () => {
  const ws = h.connectRaw('/voice', ['chat.v2', 'voice.v1']);
  const upgrade = new Promise((resolve) => ws.once('upgrade', resolve));
  const client = await new Promise((resolve, reject) => {
    const c = new h.Client(ws);
    ws.once('open', () => resolve(c));
    ws.once('error', reject);
  });
  try {
    const res = await upgrade;
    assert.equal(res.statusCode, 101);
    assert.equal(res.headers['sec-websocket-protocol'], 'voice.v1');
    assert.equal(client.ws.protocol, 'voice.v1');
  } finally {
    client.terminate();
  }
});

test('refuses an upgrade that does not offer voice.v1 with 400', async () => {
  const ws = h.connectRaw('/voice', ['chat.v2']);
  const { status, type, body } = await new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the upgrade was accepted')));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      // nginx may keep the connection alive after a refusal; the socket
      // is closed here so that it does not hold the test process.
      const socket = req.socket;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        resolve({
          status: res.statusCode,
          type: res.headers['content-type'] ?? '',
          body: text,
        });
        socket.destroy();
      });
    });
  });
  assert.equal(status, 400);
  assert.match(type, /^text\/plain/);
  assert.notEqual(body.trim(), '', 'the refusal says why');
});
