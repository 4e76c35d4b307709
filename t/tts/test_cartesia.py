"""The Cartesia engine against the TTS mock's Cartesia WebSocket.

Every reply is spoken by the mock as one tone per phrase; the tests read
what the module asked for from the mock's records and what the client
heard from its binary frames.
"""

import asyncio
import time

import ttstest as tt
from ttstest import new_id

# two phrases and more: sentences of different lengths
TWO = "Hello there, this is the first sentence. And here comes the second one."
THREE = ("The first phrase is short. The second phrase is a little longer "
         "than that. And the third one ends it.")
LONG = " ".join("Sentence number %d goes on for a while." % i
                for i in range(1, 9))


def cartesia(recs):
    return [r for r in recs if r["provider"] == "cartesia"]


def requests(rec, context=None):
    """The requests (not cancels) the module sent on a connection."""
    out = []
    for m in rec["messages"]:
        msg = m.get("msg")
        if not isinstance(msg, dict) or "cancel" in msg:
            continue
        if context is None or msg.get("context_id") == context:
            out.append(msg)
    return out


def contexts(rec):
    """Context ids in the order their first request came."""
    seen = []
    for msg in requests(rec):
        if msg["context_id"] not in seen:
            seen.append(msg["context_id"])
    return seen


def phrases(rec, context):
    return [p for p in rec["phrases"] if p["context"] == context]


async def connection(tag, cond=None, what=None):
    """The one Cartesia connection whose requests mention tag."""
    recs = await tt.tts_records(tag, cond, what=what)
    recs = cartesia(recs)
    if len(recs) != 1:
        raise AssertionError("expected one connection for %s, got %d"
                             % (tag, len(recs)))
    return recs[0]


async def done_connection(tag, reply_text_turn=None):
    """Waits until the connection mentioning tag has a context in state
    done; returns the record and that context's id."""
    def cond(recs):
        return any(c.get("state") == "done"
                   for r in recs for c in r.get("contexts", {}).values())
    rec = await connection(tag, cond, "a context done")
    done = [cid for cid, c in rec["contexts"].items()
            if c.get("state") == "done"]
    return rec, done[0]


class Request(tt.TtsTestCase):
    """What the module asks for: the handshake and each request."""

    async def check_reply(self, path, rate, asked_rate):
        tag = new_id()
        text = "%s Hello %s, how are you today? I am fine, thanks." % (
            "Reply", tag)
        s = await tt.start(path, self, rate=rate)
        reply = await s.speak(text)
        rec, cid = await done_connection(tag)

        self.assertEqual(rec["violations"], [])
        self.assertEqual(rec["path"], "/tts/websocket")
        self.assertEqual(rec["auth"], "ok")

        reqs = requests(rec, cid)
        self.assertGreaterEqual(len(reqs), 2)
        first, last = reqs[0], reqs[-1]
        for r in reqs[:-1]:
            self.assertIs(r["continue"], True, r)
            self.assertIs(r["add_timestamps"], True, r)
            self.assertEqual(r["output_format"],
                             {"container": "raw", "encoding": "pcm_s16le",
                              "sample_rate": asked_rate})
            self.assertNotEqual(r["transcript"].strip(), "")
        # the context ends with an empty transcript
        self.assertEqual(last["transcript"], "")
        self.assertIs(last["continue"], False)
        # the phrases together are the reply
        said = "".join(r["transcript"] for r in reqs)
        self.assertEqual(" ".join(said.split()), " ".join(text.split()))
        self.assertEqual(rec["contexts"][cid]["state"], "done")
        self.assertEqual(rec["contexts"][cid]["sample_rate"], asked_rate)

        # what the client heard is what the mock said, in order
        heard = tt.tones(reply.samples(), rate)
        expected = [p["freq"] for p in phrases(rec, cid)]
        self.assertTrue(tt.same_tones(heard, expected),
                        "heard %r, expected %r" % (heard, expected))
        await s.end()
        return rec, first

    async def test_bearer_defaults(self):
        rec, first = await self.check_reply("/cartesia", 16000, 16000)
        self.assertEqual(rec["auth_style"], "bearer")
        self.assertEqual(rec["version"], "2024-11-13")
        self.assertEqual(first["model_id"], "sonic-2")
        self.assertEqual(first["voice"], {"mode": "id",
                                          "id": "mock-voice-1"})
        self.assertEqual(first["language"], "en")
        self.assertIsNone(rec["headers"].get("x-api-key"))

    async def test_x_api_key_and_settings(self):
        rec, first = await self.check_reply("/cartesia-xkey", 24000, 24000)
        self.assertEqual(rec["auth_style"], "x-api-key")
        self.assertIsNone(rec["headers"].get("authorization"))
        self.assertEqual(rec["version"], "2025-04-16")
        self.assertEqual(first["model_id"], "sonic-mock")
        self.assertEqual(first["voice"], {"mode": "id",
                                          "id": "mock-voice-2"})
        self.assertEqual(first["language"], "de")

    async def test_rate_8000(self):
        await self.check_reply("/cartesia", 8000, 8000)

    async def test_rate_48000_asks_16000(self):
        # Cartesia has no 48 kHz raw PCM: 16 kHz, resampled
        await self.check_reply("/cartesia", 48000, 16000)

    async def test_connects_ahead(self):
        """The socket opens at session start, before any reply."""
        st = await tt.tts_state()
        last = max([r["id"] for r in st["connections"]] or [0])
        s = await tt.start("/cartesia", self)
        recs = await tt.wait_record(
            tt.TTS_MOCK_PORT,
            lambda st: [r for r in st["connections"]
                        if r["id"] > last and r["provider"] == "cartesia"],
            lambda recs: len(recs) >= 1, what="a new connection")
        # opened with nothing to say yet
        self.assertEqual(recs[0]["handshake"]["status"], 101)
        self.assertEqual(recs[0]["messages"], [])
        tag = new_id()
        await s.speak("Ahead %s. Two phrases." % tag)
        rec = await connection(tag)
        self.assertEqual(rec["id"], recs[0]["id"])
        await s.end()


class Audio(tt.TtsTestCase):
    """The client's side of a spoken reply."""

    async def test_frames_states_and_done(self):
        tag = new_id()
        s = await tt.start("/cartesia", self)
        mark = await s.say(tt.say_text("%s %s" % (THREE, tag)))
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.audio.done")
        await s.listening(mark)

        frames = reply.frames()
        self.assertTrue(frames)
        for _, f in frames:
            self.assertEqual(len(f) % 2, 0)
        # after the audio done: no more audio of the reply
        done_at = s.index_of(reply.end)
        self.assertEqual(s.frames(done_at + 1, None)[:1], [])

        states = reply.states()
        self.assertIn("speaking", states)
        self.assertIn("listening", states)
        self.assertLess(states.index("speaking"),
                        len(states) - 1 - states[::-1].index("listening"))
        self.assertIsNotNone(reply.event("response.text.done"))

        rec, cid = await done_connection(tag)
        ph = phrases(rec, cid)
        self.assertGreaterEqual(len(ph), 3)
        heard = tt.tones(reply.samples(), 16000)
        self.assertTrue(tt.same_tones(heard, [p["freq"] for p in ph]),
                        "heard %r, expected %r"
                        % (heard, [p["freq"] for p in ph]))
        # every sample the mock sent reached the client (same rate)
        sent = sum(p["samples"] for p in ph)
        got = len(reply.samples())
        self.assertGreaterEqual(got, sent)
        await s.end()

    async def test_paced_at_real_time(self):
        """The mock sends five times faster than real time; the client
        gets audio no faster than it plays."""
        tag = new_id()
        s = await tt.start("/cartesia", self)
        reply = await s.speak("%s %s" % (LONG, tag))
        frames = reply.frames()
        dur = tt.duration(reply, 16000)
        span = frames[-1][0] - frames[0][0]
        print("    %.2f s of audio over %.2f s" % (dur, span))
        self.assertGreater(dur, 3.0)
        # a lead of a second at most is allowed for
        self.assertGreaterEqual(span, dur - 1.0)
        await s.end()

    async def test_first_audio_before_the_text_ends(self):
        """A slow LLM: the first phrase is spoken while the reply is still
        being written."""
        tag = new_id()
        s = await tt.start("/cartesia", self)
        mark = await s.say(tt.say_text("%s %s" % (THREE, tag), slow=True))
        first, _ = await s.first_audio(mark)
        done = await s.wait_type("response.text.done", mark)
        done_at = [t for t, m in s.events if m is done][0]
        self.assertLess(first, done_at)
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.audio.done")
        # the context took its phrases one by one
        rec, cid = await done_connection(tag)
        self.assertGreaterEqual(len(phrases(rec, cid)), 3)
        await s.end()

    async def test_backpressure(self):
        """The mock sends a long reply at once (no pacing): the module
        stops reading while the client's queue is full, resumes, and
        every phrase arrives whole."""
        tag = new_id()
        s = await tt.start("/cartesia", self)
        reply = await s.speak("%s %s" % (LONG, tag), tts_script="fast")
        rec, cid = await done_connection(tag)
        ph = phrases(rec, cid)
        heard = tt.tone_runs(reply.samples(), 16000)
        self.assertTrue(tt.same_tones([f for f, _ in heard],
                                      [p["freq"] for p in ph]),
                        "heard %r, expected %r" % (heard, ph))
        # each phrase lasts its length (a few cycles lost at each joint)
        for (f, n), p in zip(heard, ph):
            self.assertAlmostEqual(n, p["samples"], delta=200)
        await s.end()

    async def test_next_turns(self):
        """Three replies in a row on one socket, one context each."""
        tag = new_id()
        s = await tt.start("/cartesia", self)
        for i in range(3):
            await s.speak("Turn %d of %s. It has two phrases." % (i, tag))
        rec = await connection(tag, lambda recs: len(cartesia(recs)) == 1
                               and len(contexts(cartesia(recs)[0])) == 3
                               and all(c["state"] == "done" for c in
                                       cartesia(recs)[0]["contexts"]
                                       .values()))
        ids = contexts(rec)
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(rec["violations"], [])
        await s.end()


class Cancel(tt.TtsTestCase):

    async def cancel_mid_reply(self, script):
        tag = new_id()
        s = await tt.start("/cartesia", self)
        mark = await s.say(tt.say_text("%s %s" % (tag, LONG),
                                       tts_script=script))
        await s.first_audio(mark)
        sent = time.time()
        await s.send_json({"type": "response.cancel"})
        intr = await s.wait_type("response.interrupted", mark)
        self.assertEqual(intr["reason"], "cancel")
        at = s.index_of(intr)

        # the mock saw the cancel for the reply's context
        rec = await connection(tag, lambda recs: any(
            r.get("cancels") for r in cartesia(recs)), "a cancel")
        cid = contexts(rec)[0]
        self.assertEqual([c["context"] for c in rec["cancels"]], [cid])
        self.assertEqual(rec["contexts"][cid]["state"], "cancelled")
        print("    cancel seen %.0f ms after the client sent it"
              % ((rec["cancels"][0]["wall"] - sent) * 1000))

        # the heard text is a beginning of the reply
        spoken = intr.get("spoken_text", "").split()
        full = ("mock:%s %s %s" % (script, tag, LONG)).split()
        self.assertEqual(spoken, full[:len(spoken)])

        # the next reply: nothing of the old one comes before or inside it
        tag2 = new_id()
        mark2 = await s.say(tt.say_text("Next reply %s. Two phrases." % tag2))
        reply = await s.spoken(mark2)
        self.assertEqual(reply.end["type"], "response.audio.done")
        stray = [f for f in s.frames(at + 1) if f[0] < reply.frames()[0][0]]
        self.assertEqual(stray, [])
        rec = await connection(tag, lambda recs: any(
            c.get("state") == "done"
            for r in cartesia(recs) for c in r["contexts"].values()))
        cid2 = [c for c in contexts(rec) if c != cid][0]
        heard = tt.tones(reply.samples(), 16000)
        expected = [p["freq"] for p in phrases(rec, cid2)]
        self.assertTrue(tt.same_tones(heard, expected),
                        "heard %r, expected %r" % (heard, expected))
        self.assertEqual(rec["violations"], [])
        await s.end()
        return rec, cid

    async def test_cancel(self):
        rec, cid = await self.cancel_mid_reply("realtime")
        c = rec["contexts"][cid]
        self.assertEqual(c["chunks_after_cancel"], 0)

    async def test_late_chunks_ignored(self):
        """The provider still sends two chunks of the cancelled context:
        none reaches the client."""
        rec, cid = await self.cancel_mid_reply("late_cancel")
        self.assertGreaterEqual(rec["contexts"][cid]["chunks_after_cancel"],
                                1)


class Failures(tt.TtsTestCase):
    """A failed reply: TTS_FAIL, the text goes on, the next reply speaks."""

    async def failed_then_spoken(self, path, script=None, text=TWO):
        tag = new_id()
        s = await tt.start(path, self)
        mark = await s.say(tt.say_text("%s %s" % (tag, text),
                                       tts_script=script))
        err = await s.wait_type("error", mark)
        self.assertEqual(err["code"], "TTS_FAIL")
        self.assertIs(err["recoverable"], True)
        done = await s.wait_type("response.text.done", mark)
        self.assertIn(tag, done["text"])
        await s.listening(mark)

        tag2 = new_id()
        reply = await s.speak("After the failure %s. It speaks." % tag2)
        self.assertTrue(reply.frames())
        recs = cartesia(await tt.tts_records(tag2))
        rec = recs[-1]
        cid = [c for c, v in rec["contexts"].items()
               if v["state"] == "done"][-1]
        heard = tt.tones(reply.samples(), 16000)
        expected = [p["freq"] for p in phrases(rec, cid)]
        self.assertTrue(tt.same_tones(heard, expected),
                        "heard %r, expected %r" % (heard, expected))
        await s.end()
        return err, tag

    async def test_error_midstream(self):
        await self.failed_then_spoken("/cartesia", "error_midstream")

    async def test_close_1011(self):
        await self.failed_then_spoken("/cartesia", "close_1011")

    async def test_drop(self):
        await self.failed_then_spoken("/cartesia", "drop")

    async def test_stall(self):
        """Silence with the socket open: the glue's timeout ends the
        reply; the next one gets a fresh socket."""
        err, tag = await self.failed_then_spoken("/cartesia-short", "stall")
        rec = cartesia(await tt.tts_records(tag))[0]
        self.assertEqual(rec["faults"][0]["fault"], "stall")

    async def test_refused_401_then_accepted(self):
        err, _ = await self.failed_then_spoken("/cartesia-401")
        self.assertIn("key", err["message"])

    async def test_refused_500_then_accepted(self):
        await self.failed_then_spoken("/cartesia-500")

    async def test_wrong_key_no_hammering(self):
        """Every reply fails, with one handshake at most per reply."""
        st = await tt.tts_state()
        before = len([r for r in st["connections"]
                      if r.get("auth") == "wrong"])
        s = await tt.start("/cartesia-wrongkey", self)
        for i in range(3):
            mark = await s.say(tt.say_text("Wrong key %d." % i))
            err = await s.wait_type("error", mark)
            self.assertEqual(err["code"], "TTS_FAIL")
            self.assertIs(err["recoverable"], True)
            self.assertIn("key", err["message"])
            await s.wait_type("response.text.done", mark)
            await s.listening(mark)
        st = await tt.tts_state()
        tried = len([r for r in st["connections"]
                     if r.get("auth") == "wrong"]) - before
        print("    %d handshakes for 3 replies" % tried)
        self.assertGreaterEqual(tried, 1)
        self.assertLessEqual(tried, 4)
        # the session goes on
        self.assertIsNone(s.close_code)
        await s.end()

    async def test_unreachable(self):
        s = await tt.start("/cartesia-dead", self)
        mark = await s.say(tt.say_text("Nobody listens."))
        err = await s.wait_type("error", mark)
        self.assertEqual(err["code"], "TTS_FAIL")
        self.assertIs(err["recoverable"], True)
        await s.wait_type("response.text.done", mark)
        self.assertIsNone(s.close_code)
        await s.end()


class Concurrency(tt.TtsTestCase):

    async def test_twenty_sessions(self):
        """Twenty sessions at once, each with its own text length: each
        hears its own phrases only."""
        n = 20
        tags = [new_id() for _ in range(n)]
        sessions = await asyncio.gather(*[
            tt.start("/cartesia", self) for _ in range(n)])

        async def one(i, s):
            words = " ".join(["word"] * (i + 1))
            text = "Session %s says %s. Then it stops here." % (tags[i],
                                                                words)
            return await s.speak(text, timeout=60)

        replies = await asyncio.gather(*[one(i, s)
                                         for i, s in enumerate(sessions)])
        for i, reply in enumerate(replies):
            rec, cid = await done_connection(tags[i])
            ph = phrases(rec, cid)
            heard = tt.tone_runs(reply.samples(), 16000)
            self.assertTrue(tt.same_tones([f for f, _ in heard],
                                          [p["freq"] for p in ph]),
                            "session %d heard %r, expected %r"
                            % (i, heard, ph))
            for (f, got), p in zip(heard, ph):
                self.assertAlmostEqual(got, p["samples"], delta=200)
        await asyncio.gather(*[s.end() for s in sessions])
