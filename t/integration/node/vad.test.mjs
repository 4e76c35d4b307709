// voice_vad_events with real speech sent as a telephone would: espeak-ng
// speech (made at each run into the test work directory), at 8 kHz,
// mu-law encoded here, streamed in real time with silence around it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, describe, test } from 'node:test';
import * as h from './helpers.mjs';
import * as a from './audio.mjs';

const RATE = 8000;
const FRAME = RATE / a.FRAMES_PER_SECOND;
const VAD_SILENCE_MS = Number(process.env.VOICE_VAD_SILENCE_MS ?? 700);
// How long the microphone stays open after the recording, in silence,
// for the events expected.  Only against hanging.
const EXTRA_SILENCE_MS = 3000;

const clients = [];
after(() => clients.forEach((c) => c.terminate()));

// Speech from espeak-ng at 8 kHz, trimmed of the synthesiser's own
// silence at both ends.
function speech(name, text) {
  const dir = process.env.VOICE_TEST_WORKDIR;
  if (!dir) throw new Error('VOICE_TEST_WORKDIR is not set');
  mkdirSync(dir, { recursive: true });
  const wav = join(dir, `${name}.espeak.wav`);
  const raw = join(dir, `${name}.8k.raw`);
  if (!existsSync(raw)) {
    execFileSync('espeak-ng', ['-v', 'en-us', '-s', '160', '-w', wav, text]);
    execFileSync('sox', [wav, '-r', String(RATE), '-c', '1', '-b', '16',
      '-e', 'signed-integer', '-t', 'raw', raw]);
  }
  const samples = a.pcmSamples(readFileSync(raw));
  const level = 0.02 * 32767;
  let first = 0;
  let last = samples.length - 1;
  while (first < last && Math.abs(samples[first]) < level) first++;
  while (last > first && Math.abs(samples[last]) < level) last--;
  return samples.slice(first, last + 1);
}

// Streams silence, speech, silence as 20 ms mu-law frames, then silence
// until done(events) or EXTRA_SILENCE_MS; `at(i)` may send a message
// before frame i.  Returns the events with their arrival times.
async function stream(samples, done, at = null) {
  const { client } = await h.startSession('/voice-vad',
    a.sessionStart('mulaw', 'mulaw'));
  clients.push(client);
  const events = [];
  let finished = false;
  const reader = (async () => {
    for (;;) {
      const item = await client.next(60000);
      if (item.kind === 'close') return;
      if (item.kind !== 'text') continue;
      events.push({ at: item.at, event: JSON.parse(item.data) });
      if (done(events.map((e) => e.event))) finished = true;
    }
  })();
  reader.catch(() => {});
  const frames = a.framesOf('mulaw', samples);
  const quiet = a.mulawEncode(new Int16Array(FRAME));
  const extra = EXTRA_SILENCE_MS / a.FRAME_MS;
  const start = await a.paced(frames.length + extra, async (i) => {
    if (i >= frames.length && finished) return false;
    if (at) await at(i, client);
    await client.send(i < frames.length ? frames[i] : quiet);
    return true;
  });
  client.terminate();
  return { start, events };
}

function silence(seconds) {
  return new Int16Array(Math.round(RATE * seconds));
}

const speechEvents = (events) => events
  .filter((e) => e.type.startsWith('speech.')).map((e) => [e.type, e.turn]);
const states = (events) => events
  .filter((e) => e.type === 'state').map((e) => e.state);
const endedTurns = (n) => (events) => events
  .filter((e) => e.type === 'speech.ended').length >= n;

describe('voice activity on telephone audio', { concurrency: true }, () => {
  test('one spoken sentence is one turn', { timeout: 30000 }, async (t) => {
    const voice = speech('switch-off', 'Switch off the radio in the hall.');
    const samples = a.concatSamples([silence(1), voice, silence(1)]);
    const speechEnd = 1 + voice.length / RATE;
    const { start, events } = await stream(samples, endedTurns(1));
    const list = events.map((e) => e.event);
    assert.deepEqual(speechEvents(list),
      [['speech.started', 1], ['speech.ended', 1]], JSON.stringify(list));
    assert.deepEqual(states(list), ['transcribing', 'listening']);
    const ended = events.find((e) => e.event.type === 'speech.ended');
    assert.ok(ended.event.audio_ms >= (speechEnd - 0.2) * 1000
      && ended.event.audio_ms <= (speechEnd + VAD_SILENCE_MS / 1000 + 0.5)
      * 1000, `speech.ended at ${ended.event.audio_ms} ms, speech ends `
      + `at ${Math.round(speechEnd * 1000)} ms`);
    // A microphone sends a frame once its last sample is recorded: the
    // stream's sample 0 was heard one frame before the first send.
    const heard = start - a.FRAME_MS;
    const latency = ended.at - (heard + speechEnd * 1000) - VAD_SILENCE_MS;
    t.diagnostic(`mu-law 8 kHz: endpoint latency ${latency.toFixed(0)} ms `
      + '(speech.ended after the end of speech, less voice_vad_silence)');
  });

  test('input.commit ends the turn; the speech after it is the next turn',
    { timeout: 30000 }, async () => {
      const voice = speech('switch-off', 'Switch off the radio in the hall.');
      const samples = a.concatSamples([silence(1), voice, silence(1)]);
      // Half a second into the speech.
      const commitAt = Math.round(1.5 * a.FRAMES_PER_SECOND);
      let committed = -1;
      const { events } = await stream(samples, endedTurns(1),
        async (i, client) => {
          if (i === commitAt) {
            committed = performance.now();
            await client.sendJson({ type: 'input.commit' });
          }
        });
      const list = events.map((e) => e.event);
      const cut = events.findIndex((e) => e.at >= committed);
      assert.ok(cut > 0, JSON.stringify(list));
      const before = list.slice(0, cut);
      const afterCommit = list.slice(cut);
      assert.deepEqual(speechEvents(before), [['speech.started', 1]],
        JSON.stringify(list));
      assert.equal(states(afterCommit)[0], 'listening', JSON.stringify(list));
      // No event of turn 1 after the commit; speech goes on as turn 2.
      assert.deepEqual(speechEvents(afterCommit),
        [['speech.started', 2], ['speech.ended', 2]], JSON.stringify(list));
    });
});
