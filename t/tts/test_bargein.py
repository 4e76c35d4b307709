"""Barge-in and cancellation of spoken replies: the session's side.

The replies are spoken by the Cartesia engine against the TTS mock (every
phrase a tone, 60 ms of audio per character) and written by the LLM mock's
"say" scripts, so a test knows the reply's text.  A client here behaves
like a microphone: it streams 20 ms frames of quiet noise in real time,
and a buzz with a voice's harmonics when it "speaks", which the module's
detector takes for speech.  Locations: t/tts/bargein.locations.in.
"""

import asyncio
import math
import os
import random
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ttstest as tt  # noqa: E402

RATE = 16000
FRAME = RATE // 50                  # samples in 20 ms
MS_PER_CHAR = 60                    # the mock's default pace

# what the tests make the assistant say: long enough to be cut, one
# sentence per phrase
SENTENCES = [
    "The first thing to know is where we start today",
    "After that we walk along the river to the old bridge",
    "The bridge was built a long time ago by the town",
    "On the far side there is a small market with fruit",
    "Most people stop there for a while before going on",
    "Then the road climbs up the hill towards the castle",
    "From the top you can see the whole valley below us",
    "We come back down by the other path through the woods",
]


def long_text(tag, n=len(SENTENCES)):
    """A reply of n sentences; the tag goes first, so the first phrase
    already names the session in the mocks' records."""
    return "%s. %s." % (tag, ". ".join(SENTENCES[:n]))


def pcm(samples):
    return struct.pack("<%dh" % len(samples), *samples)


def _quiet(seconds, seed=7):
    rnd = random.Random(seed)
    return pcm([rnd.randint(-30, 30) for _ in range(int(RATE * seconds))])


def _voiced(seconds, f0=130.0, seed=3):
    """A buzz with eleven harmonics whose loudness wobbles four times a
    second, plus a little noise: the detector's idea of a voice."""
    rnd = random.Random(seed)
    out = []
    for i in range(int(RATE * seconds)):
        t = i / RATE
        env = 0.6 + 0.4 * math.sin(2 * math.pi * 4 * t)
        v = sum(math.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 12))
        out.append(max(-32767, min(32767,
                                   int(3000 * env * v + rnd.randint(-40, 40)))))
    return pcm(out)


QUIET = _quiet(1.0)
VOICED = _voiced(2.0)


class Mic:
    """The client's microphone: 20 ms frames sent in real time, quiet
    unless speak() asks for speech.  The sleep only paces the frames."""

    def __init__(self, session):
        self.s = session
        self.left = 0               # frames of speech still to send
        self.voiced_at = []         # wall time of each speech frame sent
        self.done = asyncio.Event()
        self.done.set()
        self.task = asyncio.ensure_future(self.run())

    async def run(self):
        q = v = 0
        start = time.monotonic()
        i = 0
        while True:
            if self.left > 0:
                frame = VOICED[v:v + 2 * FRAME]
                v = (v + 2 * FRAME) % len(VOICED)
            else:
                frame = QUIET[q:q + 2 * FRAME]
                q = (q + 2 * FRAME) % len(QUIET)
            try:
                await self.s.ws.send(frame)
            except Exception:
                return
            if self.left > 0:
                self.voiced_at.append(time.time())
                self.left -= 1
                if self.left == 0:
                    self.done.set()
            i += 1
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))

    def speak(self, seconds):
        """Starts speech for this long; returns the event that is set when
        it has all been sent."""
        self.done.clear()
        self.left = int(round(seconds * 50))
        return self.done

    def stop(self):
        self.task.cancel()


def text_messages(s, since=0):
    return [m for _, m in s.events[since:] if isinstance(m, dict)]


def reply_text(s, turn):
    return "".join(m["delta"] for m in s.messages("response.text.delta",
                                                  turn=turn))


def llm_requests(tag):
    """The LLM mock's requests whose body mentions tag, in order."""
    return sorted(tt.llm_records_sync(tag), key=lambda r: r["id"])


async def llm_wait(tag, cond, what):
    return await tt.wait_record(
        tt.LLM_MOCK_PORT,
        lambda st: sorted([r for r in st["requests"]
                           if tag in (r.get("raw_body") or "")],
                          key=lambda r: r["id"]),
        cond, what=what)


def context_of(rec, tag):
    """The Cartesia context whose phrases mention tag."""
    for p in rec["phrases"]:
        if tag in p["text"]:
            return p["context"]
    return None


async def tts_context(tag, cond, what):
    """Long-polls the TTS mock until the connection that spoke tag
    satisfies cond(rec, context); returns (rec, context)."""
    def pick(st):
        for r in st["connections"]:
            c = context_of(r, tag)
            if c is not None:
                return (r, c)
        return None
    return await tt.tts_wait(pick, lambda v: v is not None and cond(*v),
                             what=what)


class BargeIn(tt.TtsTestCase):

    async def open(self, path="/barge"):
        s = await tt.start(path, self)
        mic = Mic(s)
        self.addCleanup(mic.stop)
        return s, mic

    async def speaking(self, s, mark):
        """Waits for state speaking and the reply's first audio."""
        await s.wait_type("state", mark, state="speaking")
        return await s.first_audio(mark)

    async def heard_for(self, s, mark, seconds):
        """Waits until this much of the reply's audio has arrived."""
        need = int(seconds * RATE * 2)

        def pred(x):
            return sum(len(f) for _, f in x.frames(mark)) >= need
        await s.wait_for(pred, what="%g s of audio" % seconds)

    def check_sequence(self, s, mark, reason):
        """From state interrupted on: response.interrupted, state
        cancelling, state listening, and no audio after
        response.interrupted.  Returns response.interrupted."""
        seq = []
        for m in text_messages(s, mark):
            if m["type"] == "state":
                seq.append("state " + m["state"])
            elif m["type"].startswith("response.") \
                    and m["type"] != "response.text.delta":
                seq.append(m["type"])
        self.assertIn("state interrupted", seq)
        i = seq.index("state interrupted")
        self.assertEqual(seq[i:i + 4], [
            "state interrupted", "response.interrupted", "state cancelling",
            "state listening"], "events: %r" % seq)
        self.assertEqual(seq[:i].count("state speaking"), 1, seq)
        self.assertNotIn("response.audio.done", seq)
        intr = s.messages("response.interrupted", mark)[0]
        self.assertEqual(intr["reason"], reason)
        return intr

    def check_spoken(self, s, mark, intr, prefix_chars):
        """spoken_text begins the reply, ends at a word boundary, and
        roughly matches the audio the client got (the mock's 60 ms a
        character; prefix_chars of the reply are not spoken)."""
        full = reply_text(s, intr["turn"])
        spoken = intr["spoken_text"]
        self.assertTrue(full.startswith(spoken),
                        "%r does not begin %r" % (spoken, full))
        if spoken:
            self.assertFalse(spoken[-1].isspace(), repr(spoken))
            if len(spoken) < len(full):
                self.assertTrue(full[len(spoken)] in " .,",
                                "cut inside a word: %r | %r"
                                % (spoken, full[len(spoken):]))
        frames = s.frames(mark, intr)
        audio_s = sum(len(f) for _, f in frames) / 2.0 / RATE
        played_s = intr_wall(s, intr) - frames[0][0] if frames else 0.0
        if audio_s > 1.0:
            self.assertTrue(spoken, "nothing heard after %.2f s" % audio_s)
        chars = len(spoken) - prefix_chars if spoken else 0
        expect = audio_s * 1000 / MS_PER_CHAR
        print("    heard %.2f s of audio (%.2f s since the first frame): "
              "%d characters, %.0f by the audio: %r" % (
                  audio_s, played_s, chars, expect, spoken))
        # within one phrase (at most voice_tts_max_phrase, 60) of the audio
        self.assertLessEqual(abs(chars - expect), 60,
                             "spoken %r after %.2f s of audio"
                             % (spoken, audio_s))
        return spoken, full

    async def no_audio_after(self, s, intr):
        """Ends the session (its queue is flushed first) and checks that no
        audio came after response.interrupted."""
        at = s.index_of(intr)
        await s.end()
        self.assertEqual(s.frames(at + 1), [])

    # ---- barge-in by voice ------------------------------------------------

    async def test_barge_in_by_voice(self):
        """Speech over a reply whose text still streams: the queue goes,
        the streams go, the user heard a beginning of it."""
        tag = tt.new_id("bv")
        s, mic = await self.open()
        mark = await s.say(tt.say_text(long_text(tag), slow=True))
        await self.speaking(s, mark)
        await self.heard_for(s, mark, 1.5)
        self.assertEqual(s.messages("response.text.done", mark), [],
                         "the reply was meant to be still streaming")
        mic.speak(1.0)
        intr = await s.wait_type("response.interrupted", mark)
        await s.wait_type("state", s.index_of(intr), state="listening")
        self.assertTrue(s.messages("speech.started", mark))
        self.check_sequence(s, mark, "barge_in")
        self.check_spoken(s, mark, intr, 0)

        # the speech engine learnt it: the context was cancelled
        rec, cid = await tts_context(
            tag, lambda r, c: any(x["context"] == c for x in r["cancels"]),
            "a cancel of the reply's context")
        self.assertEqual(rec["contexts"][cid]["state"], "cancelled")
        self.assertEqual(rec["violations"], [])
        # and so did the language model: its stream was closed
        reqs = await llm_wait(tag, lambda rs: rs and rs[0]["client_closed"],
                              "the LLM request closed by the client")
        self.assertEqual(reqs[0]["end"], "client_closed")
        await mic.done.wait()
        await self.no_audio_after(s, intr)

    async def test_response_cancel(self):
        """response.cancel while speaking: the same, reason cancel."""
        tag = tt.new_id("rc")
        s, mic = await self.open()
        mark = await s.say(tt.say_text(long_text(tag)))
        await self.speaking(s, mark)
        await self.heard_for(s, mark, 1.2)
        sent = time.time()
        await s.send_json({"type": "response.cancel"})
        intr = await s.wait_type("response.interrupted", mark)
        await s.wait_type("state", s.index_of(intr), state="listening")
        self.check_sequence(s, mark, "cancel")
        spoken, _ = self.check_spoken(s, mark, intr, 0)
        rec, cid = await tts_context(
            tag, lambda r, c: any(x["context"] == c for x in r["cancels"]),
            "a cancel of the reply's context")
        c = rec["cancels"][[x["context"] for x in rec["cancels"]].index(cid)]
        print("    the mock saw the cancel %.1f ms after the client sent "
              "response.cancel" % ((c["wall"] - sent) * 1000))
        self.assertEqual(rec["contexts"][cid]["chunks_after_cancel"], 0)
        await self.no_audio_after(s, intr)

    # ---- what the conversation remembers ----------------------------------

    async def test_memory_after_interruption(self):
        """The next turn's request carries only the heard part as the
        assistant's message."""
        tag = tt.new_id("mi")
        s, mic = await self.open()
        mark = await s.say(tt.say_text(long_text(tag)))
        await self.speaking(s, mark)
        await self.heard_for(s, mark, 1.5)
        mic.speak(0.6)
        intr = await s.wait_type("response.interrupted", mark)
        await s.wait_type("state", s.index_of(intr), state="listening")
        spoken = intr["spoken_text"]
        self.assertTrue(spoken)
        await mic.done.wait()

        tag2 = tt.new_id("mj")
        mark2 = await s.say(tt.say_text("Short one %s." % tag2))
        reply = await s.spoken(mark2)
        self.assertEqual(reply.end["type"], "response.audio.done")
        req = (await llm_wait(tag2, lambda rs: rs, "the second request"))[0]
        msgs = req["body"]["messages"]
        said = [m["content"] for m in msgs if m["role"] == "assistant"]
        self.assertEqual(said, [spoken], "the model was told %r" % said)
        self.assertEqual(req["violations"], [])
        await s.end()

    async def test_heard_to_the_end(self):
        """A reply heard to its end: response.audio.done, then listening;
        memory keeps all of it."""
        tag = tt.new_id("he")
        s, mic = await self.open()
        mark = await s.say(tt.say_text("%s. Two short phrases here." % tag))
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.audio.done")
        await s.listening(s.index_of(reply.end))
        states = [m["state"] for m in text_messages(s, mark)
                  if m["type"] == "state"]
        self.assertEqual(states[-2:], ["speaking", "listening"])
        self.assertEqual(s.messages("response.interrupted", mark), [])
        full = reply.event("response.text.done")["text"]

        tag2 = tt.new_id("hf")
        mark2 = await s.say(tt.say_text("Next %s." % tag2))
        await s.spoken(mark2)
        req = (await llm_wait(tag2, lambda rs: rs, "the second request"))[0]
        said = [m["content"] for m in req["body"]["messages"]
                if m["role"] == "assistant"]
        self.assertEqual(said, [full])
        await s.end()

    # ---- the directives ---------------------------------------------------

    async def test_barge_in_off(self):
        """voice_barge_in off: speech is heard (speech.started) but the
        reply goes on to its end."""
        tag = tt.new_id("bo")
        s, mic = await self.open("/barge-off")
        mark = await s.say(tt.say_text(long_text(tag, 3)))
        await self.speaking(s, mark)
        await self.heard_for(s, mark, 0.5)
        mic.speak(0.8)
        await s.wait_type("speech.started", mark)
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.audio.done")
        self.assertEqual(s.messages("response.interrupted", mark), [])
        # the speech came while the reply was being heard
        started = s.timed("speech.started")[-1][0]
        self.assertLess(started, reply.frames()[-1][0])
        await s.end()

    async def test_min_speech_400(self):
        """voice_barge_in_min_speech 400ms: 200 ms of speech is heard but
        does not interrupt; 600 ms does."""
        tag = tt.new_id("ms")
        s, mic = await self.open("/barge-400")
        mark = await s.say(tt.say_text(long_text(tag)))
        await self.speaking(s, mark)
        await self.heard_for(s, mark, 0.5)
        await mic.speak(0.2).wait()
        ended = await s.wait_type("speech.ended", mark)
        self.assertTrue(s.messages("speech.started", mark))
        intr = s.messages("response.interrupted", mark)
        self.assertEqual(intr, [], "200 ms of speech (sent from %.3f to "
                         "%.3f) interrupted at %.3f; speech events %r" % (
                             mic.voiced_at[0], mic.voiced_at[-1] + 0.02,
                             intr_wall(s, intr[0]) if intr else 0.0,
                             [(t, m) for t, m in s.events
                              if isinstance(m, dict)
                              and m["type"].startswith("speech.")]))
        # audio of the reply still comes after that speech ended
        at = s.index_of(ended)
        await s.wait_for(lambda x: x.frames(at), what="audio after it")
        self.assertEqual(s.messages("response.interrupted", mark), [])

        mic.speak(0.6)
        intr = await s.wait_type("response.interrupted", at)
        self.assertEqual(intr["reason"], "barge_in")
        await s.wait_type("state", s.index_of(intr), state="listening")
        self.check_sequence(s, mark, "barge_in")
        # not before 400 ms of the second speech had been sent
        first = [t for t in mic.voiced_at if t > ended_wall(s, ended)][0]
        self.assertGreaterEqual(intr_wall(s, intr) - first, 0.4 - 0.02)
        await mic.done.wait()
        await self.no_audio_after(s, intr)

    # ---- many interruptions -----------------------------------------------

    async def test_fifty_interruptions(self):
        """50 turns each cut short, by response.cancel or by speech: every
        turn ends, nothing of a cut turn is heard after its
        response.interrupted, and two turns' audio never interleave."""
        s, mic = await self.open()
        tag = tt.new_id("fi")
        for i in range(50):
            mark = await s.say(tt.say_text("%s n%d. %s." % (
                tag, i, SENTENCES[i % len(SENTENCES)])))
            await self.speaking(s, mark)
            if i % 5 == 4:
                mic.speak(0.3)
            else:
                await s.send_json({"type": "response.cancel"})
            end = await s.spoken(mark)
            self.assertNotEqual(end.end["type"], "error", end.end)
            await s.wait_type("state", s.index_of(end.end), state="listening")
            if i % 5 == 4:
                await mic.done.wait()
        self.check_turns(s)
        await s.end()
        self.check_turns(s)

    def check_turns(self, s):
        """Walks the events: each binary frame belongs to the turn whose
        state speaking came last, and none comes between a turn's
        response.interrupted (or audio.done) and the next state
        speaking."""
        turn = None
        live = False
        ends = 0
        for _, m in s.events:
            if isinstance(m, (bytes, bytearray)):
                self.assertTrue(live, "audio outside a spoken turn (after "
                                "turn %r ended)" % turn)
                continue
            if m.get("type") == "state" and m["state"] == "speaking":
                self.assertFalse(live, "speaking twice in turn %r" % turn)
                live = True
            elif m.get("type") in ("response.interrupted",
                                   "response.audio.done"):
                if "turn" in m:
                    turn = m["turn"]
                live = False
                ends += 1
        self.assertGreaterEqual(ends, 50)

    # ---- failures of the speech engine -----------------------------------

    async def failure(self, script):
        tag = tt.new_id("tf")
        s, mic = await self.open()
        mark = await s.say(tt.say_text(long_text(tag, 3), tts_script=script))
        err = await s.wait_type("error", mark)
        self.assertEqual(err["code"], tt.TTS_FAIL)
        self.assertTrue(err["recoverable"])
        await s.wait_type("response.text.done", mark)
        await s.listening(s.index_of(err))

        mark2 = await s.say(tt.say_text("After the failure %s." % tag))
        reply = await s.spoken(mark2)
        self.assertEqual(reply.end["type"], "response.audio.done")
        self.assertGreater(len(reply.frames()), 0)
        await s.end()

    async def test_tts_error_midstream(self):
        await self.failure("error_midstream")

    async def test_tts_close_1011(self):
        await self.failure("close_1011")

    async def test_tts_drop(self):
        await self.failure("drop")


def intr_wall(s, msg):
    for t, m in s.events:
        if m is msg:
            return t
    raise AssertionError("not received")


ended_wall = lambda s, msg: intr_wall(s, msg)  # noqa: E731


if __name__ == "__main__":
    unittest.main()
