"""voice_vad_events with real speech: sentences spoken by espeak-ng (made
at each run into the test work directory), streamed in real time with
silence around them, and the events they give."""

import asyncio
import json
import os
import unittest

import audiotest as at
import voicetest as vt

RATE = at.SPEECH_RATE
VAD_SILENCE = int(os.environ.get("VOICE_VAD_SILENCE_MS", "700")) / 1000.0
SHORT_UTTERANCE = int(os.environ.get("VOICE_SHORT_UTTERANCE_MS",
                                     "500")) / 1000.0
# How long a client keeps its microphone open after the recording, in
# silence, waiting for the events it expects.  Only against hanging.
EXTRA_SILENCE = 3.0
LEAD_SILENCE = 1.0
TRAIL_SILENCE = 1.0

SENTENCE_1 = ("turn-on-the-lights", "Turn on the lights in the kitchen.")
SENTENCE_2 = ("weather-today", "What is the weather like today?")


def recording(parts):
    """Silence and sentences -> (samples, [(start s, end s) of speech])."""
    samples = at.silence(RATE, 0)
    spans = []
    for part in parts:
        if isinstance(part, float):
            samples.extend(at.silence(RATE, part))
        else:
            speech = at.speech(part[1], part[0])
            start = len(samples) / RATE
            samples.extend(speech)
            spans.append((start, len(samples) / RATE))
    return samples, spans


async def stream(path, samples, done, extra=EXTRA_SILENCE):
    """Stream samples as real-time 20 ms pcm_s16le frames, then silence
    until done(events) or `extra` seconds run out.  Returns (the loop
    time of the stream's start, [(arrival, event)] of the text messages
    after session.started and the first state)."""
    ws, _ = await vt.start_session(path)
    loop = asyncio.get_running_loop()
    events = []
    finished = asyncio.Event()

    async def reader():
        try:
            while True:
                msg = await ws.recv()
                if isinstance(msg, str):
                    events.append((loop.time(), json.loads(msg)))
                    if done([e for _, e in events]):
                        finished.set()
        except vt.ConnectionClosed:
            finished.set()

    reading = asyncio.ensure_future(reader())
    frames = at.frames_of("pcm16k", samples)
    quiet = at.pcm_bytes(at.silence(RATE, at.FRAME_MS / 1000.0))
    try:
        start = await at.send_paced(ws, frames)
        for i in range(int(extra * at.FRAMES_PER_SECOND)):
            if finished.is_set():
                break
            due = start + (len(frames) + i) * at.FRAME_MS / 1000.0
            delay = due - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(finished.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
            await ws.send(quiet)
        await ws.close()
    finally:
        reading.cancel()
    return start, events


def speech_events(events):
    return [(e["type"], e.get("turn")) for e in events
            if e.get("type", "").startswith("speech.")]


def states(events):
    return [e["state"] for e in events if e.get("type") == "state"]


def ended(count):
    return lambda events: sum(e.get("type") == "speech.ended"
                              for e in events) >= count


class VadTest(vt.VoiceTestCase):

    def check_turn(self, events, turn, span):
        """speech.started / speech.ended of `turn` with plausible stream
        positions for speech in `span` (seconds)."""
        started = [e for e in events if e.get("type") == "speech.started"
                   and e.get("turn") == turn]
        finished = [e for e in events if e.get("type") == "speech.ended"
                    and e.get("turn") == turn]
        self.assertEqual((len(started), len(finished)), (1, 1),
                         "turn %d in %r" % (turn, events))
        begin, end = span
        t_start = started[0].get("audio_ms")
        t_end = finished[0].get("audio_ms")
        self.assertIsInstance(t_start, int)
        self.assertIsInstance(t_end, int)
        # The detector may start a little early (the onset of a word is
        # quieter than the trim threshold) and confirms after some speech.
        self.assertGreaterEqual(t_start, (begin - 0.2) * 1000)
        self.assertLessEqual(t_start, end * 1000)
        # It ends after the speech and, at the latest, once the silence
        # has lasted voice_vad_silence (with some hangover).
        self.assertGreater(t_end, t_start)
        self.assertGreaterEqual(t_end, (end - 0.2) * 1000)
        self.assertLessEqual(t_end, (end + VAD_SILENCE + 0.5) * 1000)
        return t_start, t_end

    def report_latency(self, label, start, arrivals, events, span, turn):
        """Prints (asserts nothing about) the time from the end of the
        speech to speech.ended, less voice_vad_silence.  Like a
        microphone's, each frame goes out when its last sample has been
        recorded, so the stream's sample 0 was "heard" one frame before
        the first frame was sent."""
        arrival = next(t for t, e in arrivals
                       if e.get("type") == "speech.ended"
                       and e.get("turn") == turn)
        heard = start - at.FRAME_MS / 1000.0
        latency = arrival - (heard + span[1]) - VAD_SILENCE
        print("\n    %s: speech %.2f-%.2f s, endpoint latency %.0f ms "
              "(speech.ended after the end of speech, less "
              "voice_vad_silence)" % (label, span[0], span[1],
                                      latency * 1000), end=" ")
        return latency

    @vt.timed(30)
    async def test_one_sentence_is_one_turn(self):
        samples, spans = recording([LEAD_SILENCE, SENTENCE_1,
                                    TRAIL_SILENCE])
        # The same speech, at the same time, where voice_vad_events is
        # off: no event at all.
        (start, arrivals), (_, quiet) = await asyncio.gather(
            stream("/voice-vad", samples, ended(1)),
            stream("/voice", samples, lambda events: False,
                   extra=0))
        self.assertEqual(quiet, [], "events without voice_vad_events")
        events = [e for _, e in arrivals]
        self.assertEqual([e for e in events if e["type"] == "error"], [])
        self.assertEqual(speech_events(events),
                         [("speech.started", 1), ("speech.ended", 1)],
                         "events: %r" % events)
        self.assertEqual(states(events), ["transcribing", "listening"])
        self.assertLess(events.index({"type": "state",
                                      "state": "transcribing"}),
                        next(i for i, e in enumerate(events)
                             if e["type"] == "speech.ended"))
        t_start, t_end = self.check_turn(events, 1, spans[0])
        print("\n    one sentence: audio_ms started %d, ended %d"
              % (t_start, t_end), end=" ")
        self.report_latency("one sentence", start, arrivals, events,
                            spans[0], 1)

    @vt.timed(40)
    async def test_two_sentences_are_two_turns(self):
        samples, spans = recording([LEAD_SILENCE, SENTENCE_1, 1.5,
                                    SENTENCE_2, TRAIL_SILENCE])
        start, arrivals = await stream("/voice-vad", samples, ended(2))
        events = [e for _, e in arrivals]
        self.assertEqual([e for e in events if e["type"] == "error"], [])
        self.assertEqual(speech_events(events),
                         [("speech.started", 1), ("speech.ended", 1),
                          ("speech.started", 2), ("speech.ended", 2)],
                         "events: %r" % events)
        self.assertEqual(states(events), ["transcribing", "listening",
                                          "transcribing", "listening"])
        for turn in (1, 2):
            self.check_turn(events, turn, spans[turn - 1])
            self.report_latency("sentence %d of 2" % turn, start, arrivals,
                                events, spans[turn - 1], turn)

    @vt.timed(30)
    async def test_long_utterance_exceeds_max_utterance(self):
        samples, spans = recording([LEAD_SILENCE, SENTENCE_1,
                                    TRAIL_SILENCE])

        def errored(events):
            return any(e.get("type") == "error" for e in events)

        start, arrivals = await stream("/voice-vad-short", samples, errored)
        events = [e for _, e in arrivals]
        errors = [e for e in events if e.get("type") == "error"]
        self.assertGreaterEqual(len(errors), 1, "events: %r" % events)
        self.assertEqual(errors[0].get("code"), "MAX_DURATION_EXCEEDED")
        self.assertIs(errors[0].get("recoverable"), True)
        first = events.index(errors[0])
        before = events[:first]
        self.assertIn(("speech.started", 1), speech_events(before))
        self.assertEqual(states(before)[-1:], ["transcribing"])
        # The turn ends there: the state goes back to listening.
        self.assertIn("listening", states(events[first:]),
                      "events: %r" % events)
        # Not before the utterance could have lasted the limit.
        arrival = arrivals[first][0]
        self.assertGreaterEqual(arrival - start,
                                spans[0][0] + SHORT_UTTERANCE - 0.2)
        print("\n    max utterance: %s" % ", ".join(
            "%s %s" % (e["type"], e.get("turn", e.get("state",
                                                       e.get("code"))))
            for e in events), end=" ")


if __name__ == "__main__":
    unittest.main()
