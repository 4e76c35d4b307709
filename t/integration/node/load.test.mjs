// Many sessions at once, each streaming real-time sized audio frames.

import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, test } from 'node:test';
import * as h from './helpers.mjs';

afterEach(() => h.closeAll());

const SESSIONS = 100;
const FRAME_BYTES = 640;      // 20 ms of 16 kHz mono pcm_s16le
const FRAME_INTERVAL_MS = 20;
const FRAMES = 500;           // 10 seconds

async function streamOne(sid, client, t0) {
  const problems = [];
  const expected = [];
  for (let seq = 0; seq < FRAMES; seq++) {
    expected.push(h.audioFrame(sid, seq, FRAME_BYTES));
  }
  let got = 0;
  let stop = false;

  const reader = (async () => {
    for (;;) {
      const item = await client.next(h.WAIT_MS);
      if (item.kind === 'close') return item;
      if (item.kind === 'text') {
        const event = JSON.parse(item.data);
        if (event.type !== 'state' || event.state !== 'closed') {
          problems.push(`unexpected ${item.data}`);
        }
        continue;
      }
      if (got >= FRAMES) {
        problems.push(`extra ${h.describeFrame(item.data)}`);
        continue;
      }
      if (!item.data.equals(expected[got])) {
        problems.push(`echo ${got}: expected ${h.describeFrame(expected[got])}`
          + `, got ${h.describeFrame(item.data)}`);
        stop = true;
        return null;
      }
      got += 1;
    }
  })();
  reader.catch(() => {});

  let close = null;
  try {
    for (let seq = 0; seq < FRAMES && !stop && !client.closed; seq++) {
      // Pacing of the workload on a fixed schedule from t0.
      const delay = t0 + seq * FRAME_INTERVAL_MS - performance.now();
      if (delay > 0) await sleep(delay);
      await client.send(expected[seq]);
    }
    if (!stop && !client.closed) await client.sendJson({ type: 'session.end' });
    close = await reader;
  } catch (err) {
    problems.push(String(err));
  } finally {
    client.terminate();
  }
  if (got !== FRAMES && problems.length === 0) {
    problems.push(`got ${got} of ${FRAMES} echoes`);
  }
  if (close && close.code !== 1000 && problems.length === 0) {
    problems.push(`close code ${close.code} instead of 1000`);
  }
  return problems;
}

test('100 sessions, 10 s of 20 ms frames each: no loss, no reordering, '
  + 'no cross-session bleed', { timeout: 90000 }, async () => {
  const opened = await Promise.allSettled(
    [...Array(SESSIONS).keys()].map(() => h.startSession()));
  const failed = opened.filter((r) => r.status === 'rejected');
  const clients = opened.filter((r) => r.status === 'fulfilled')
    .map((r) => r.value.client);
  if (failed.length > 0) {
    clients.forEach((c) => c.terminate());
    assert.fail(`${failed.length} of ${SESSIONS} sessions did not start: `
      + `${failed[0].reason}`);
  }

  const t0 = performance.now() + 100;
  const results = await Promise.all(
    clients.map((client, sid) => streamOne(sid, client, t0)));
  const elapsed = performance.now() - t0;

  const bad = results.map((p, sid) => ({ sid, p })).filter((r) => r.p.length);
  assert.equal(bad.length, 0, `${bad.length} sessions failed: `
    + bad.slice(0, 5).map((r) => `session ${r.sid}: `
      + r.p.slice(0, 3).join(', ')).join('; '));
  assert.ok(elapsed >= FRAMES * FRAME_INTERVAL_MS - FRAME_INTERVAL_MS);
});
