// Sessions held open across `nginx -s quit`, driven by run.py.
//
// Usage: node shutdown-clients.mjs COUNT
// Prints "ready" once COUNT sessions echo, then waits for the server to
// end them; prints one "problem: ..." line per fault and exits 1 if any.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import * as h from './helpers.mjs';

const count = Number(process.argv[2] || 4);

async function openOne(sid) {
  const { client } = await h.startSession('/voice');
  const f = h.audioFrame(sid, 0);
  await client.send(f);
  const echo = await client.nextBinary();
  if (!echo.data.equals(f)) throw new Error(`session ${sid} did not echo`);
  return client;
}

// Reads until the server closes, streaming 20 ms frames meanwhile when
// `stream`; `flowing` resolves once the stream's first echo is back (at
// once for a session that does not stream).
async function watch(client, sid, stream, flowing) {
  const problems = [];
  const sent = [];
  const got = [];
  const infos = [];
  let stop = false;

  const writer = stream ? (async () => {
    const t0 = performance.now();
    for (let seq = 1; !stop && !client.closed; seq++) {
      const f = h.audioFrame(sid, seq);
      if (client.ws.readyState !== client.ws.OPEN) return;
      client.ws.send(f, () => {});
      sent.push(f);
      const delay = t0 + seq * 20 - performance.now();
      await Promise.race([client.closedPromise, sleep(Math.max(0, delay))]);
    }
  })() : Promise.resolve();

  if (!stream) flowing();
  const onMessage = (data, isBinary) => { if (isBinary) flowing(); };
  client.ws.on('message', onMessage);
  try {
    const { messages, close } = await client.untilClose(30000);
    for (const m of messages) {
      if (m.kind === 'binary') got.push(m.data);
      else infos.push(JSON.parse(m.data));
    }
    const shutdown = infos.filter((m) => m.type === 'info'
      && m.code === 'SERVER_SHUTDOWN');
    if (shutdown.length !== 1) {
      problems.push(`SERVER_SHUTDOWN infos: ${shutdown.length} `
        + `(texts: ${JSON.stringify(infos)})`);
    }
    const others = infos.filter((m) => !shutdown.includes(m));
    if (others.length) problems.push(`unexpected ${JSON.stringify(others)}`);
    if (close.code !== 1001) {
      problems.push(`close code ${close.code} instead of 1001`);
    }
    if (!got.every((g, i) => i < sent.length && g.equals(sent[i]))) {
      problems.push('echoes during shutdown lost or reordered');
    }
  } catch (err) {
    problems.push(String(err));
  } finally {
    flowing();
    client.ws.off('message', onMessage);
    stop = true;
    await writer;
    client.terminate();
  }
  return problems.map((p) => `session ${sid}: ${p}`);
}

const clients = [];
try {
  for (let i = 0; i < count; i++) clients.push(await openOne(800 + i));
} catch (err) {
  console.log(`problem: could not open the sessions: ${err}`);
  clients.forEach((c) => c.terminate());
  process.exit(1);
}
const flows = clients.map(() => {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
});
const watchers = clients.map((c, i) => watch(c, 800 + i, i % 2 === 0,
  flows[i].resolve));
await Promise.all(flows.map((f) => f.promise));
console.log('ready');

const problems = (await Promise.all(watchers)).flat();
for (const p of problems) console.log(`problem: ${p}`);
process.exit(problems.length ? 1 : 0);
