"""The OpenAI speech engine (voice_tts openai) against the TTS mock.

One POST to /v1/audio/speech per phrase, answered with raw PCM16 at
24 kHz.  The tests check what the module asks for, what the client hears
(each phrase's tone, in order, converted to the client's rate), how the
requests of a reply follow each other, and how each provider failure
ends the reply while the session goes on.
"""

import array
import math
import sys

import ttstest as tt

RATE = 24000                    # what the provider sends
MS_PER_CHAR = 60                # the mock's default
KEY_LEN = len("tts-test-key-0123456789abcdef")


def synth(freq, samples, rate=RATE, amplitude=8000):
    """The mock's tone for a phrase, as s16le bytes."""
    w = 2.0 * math.pi * freq / rate
    a = array.array("h", (int(round(amplitude * math.sin(w * i)))
                          for i in range(samples)))
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def sentence_list(tag, n):
    """n sentences, each naming tag (so each request can be found), of
    different lengths."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    return ["%s %s %s." % (words[i % len(words)].capitalize(), tag,
                           " ".join(words[:i % 3 + 1]))
            for i in range(n)]


def sentences(tag, n):
    return " ".join(sentence_list(tag, n))


def said(text):
    """What the LLM mock's "say" script answers for text: it ends in one
    "." whatever the text ended with."""
    return text.rstrip(".!?") + "."


def end_sent(rec):
    """When the mock wrote the last chunk of a request's body."""
    return [e["wall"] for e in rec["sent"] if e["type"] == "end"][0]


def expected_freqs(recs):
    """The tones of the requests' phrases in order; two phrases in a row
    with the same tone (other sessions' requests took the numbers in
    between) sound as one."""
    out = []
    for r in recs:
        f = r["phrases"][0]["freq"]
        if not out or out[-1] != f:
            out.append(f)
    return out


def heard(reply, rate):
    return tt.tones(reply.samples(), rate)


async def requests(tag, n, timeout=tt.WAIT):
    """The n finished requests of the mock that carry tag."""
    return await tt.tts_records(tag, tt.finished(n), timeout,
                                "%d finished requests" % n, kind="requests")


def longest_quiet(samples, level=200):
    """The longest run of samples whose magnitude stays under level."""
    best = run = 0
    for s in samples:
        if -level < s < level:
            run += 1
            best = max(best, run)
        else:
            run = 0
    return best


class Request(tt.TtsTestCase):

    async def test_request_and_audio(self):
        tag = tt.new_id("req")
        text = "Hello %s, this is one phrase." % tag
        s = await tt.start("/openai", self)
        reply = await s.speak(text)

        recs = await requests(tag, 1)
        self.assertEqual(len(recs), 1)
        r = recs[0]
        self.assertEqual(r["violations"], [])
        self.assertEqual(r["method"], "POST")
        self.assertEqual(r["path"], "/v1/audio/speech")
        self.assertEqual(r["auth"], "ok")
        self.assertEqual(r["auth_style"], "bearer")
        self.assertIn("%d bytes" % KEY_LEN, r["headers"]["authorization"])
        self.assertEqual(r["headers"]["content-type"].split(";")[0],
                         "application/json")
        body = r["body"]
        self.assertEqual(body["model"], "gpt-4o-mini-tts")
        self.assertEqual(body["voice"], "alloy")
        self.assertEqual(body["response_format"], "pcm")
        self.assertEqual(body["speed"], 1)
        self.assertEqual(body["input"], said(text))
        self.assertEqual(r["end"], "complete")

        # the tone of the phrase, at the client's rate, all of it
        self.assertTrue(tt.same_tones(heard(reply, 16000),
                                      expected_freqs(recs)),
                        (heard(reply, 16000), expected_freqs(recs)))
        want = r["phrases"][0]["samples"] * 16000 / RATE
        got = len(reply.pcm()) / 2
        self.assertLess(abs(got - want), 0.02 * want + 32, (got, want))

        # audio.done after the last audio, then listening
        self.assertEqual(reply.end["type"], "response.audio.done")
        states = reply.states()
        self.assertIn("speaking", states)
        await s.listening(reply.mark)
        states = reply.states()
        self.assertLess(states.index("speaking"), states.index("listening"))
        self.assertEqual(s.frames(s.index_of(reply.end) + 1), [])
        await s.end()

    async def test_client_rates(self):
        # 24 kHz from the provider, converted to what each client asked
        for rate in (8000, 48000):
            tag = tt.new_id("rate")
            s = await tt.start("/openai", self, rate=rate)
            reply = await s.speak(sentences(tag, 2))
            recs = await requests(tag, 2)
            self.assertTrue(tt.same_tones(heard(reply, rate),
                                          expected_freqs(recs)),
                            (rate, heard(reply, rate), expected_freqs(recs)))
            want = sum(r["phrases"][0]["samples"] for r in recs) \
                * rate / RATE
            got = len(reply.pcm()) / 2
            self.assertLess(abs(got - want), 0.02 * want + 64, (got, want))
            await s.end()

    async def test_settings_reach_the_provider(self):
        tag = tt.new_id("spd")
        text = "Faster speech for %s now." % tag
        s = await tt.start("/openai_speed", self)
        reply = await s.speak(text)
        r = (await requests(tag, 1))[0]
        self.assertEqual(r["violations"], [])
        self.assertEqual(r["body"]["speed"], 1.5)
        self.assertEqual(r["body"]["model"], "tts-1")
        self.assertEqual(r["body"]["voice"], "nova")
        # the mock speaks 1.5 times faster: fewer samples, all heard
        ph = r["phrases"][0]
        self.assertEqual(ph["text"], said(text))
        self.assertEqual(ph["samples"], round(RATE * len(said(text))
                                              * MS_PER_CHAR / 1000 / 1.5))
        want = ph["samples"] * 16000 / RATE
        got = len(reply.pcm()) / 2
        self.assertLess(abs(got - want), 0.02 * want + 32, (got, want))
        self.assertTrue(tt.same_tones(heard(reply, 16000),
                                      expected_freqs([r])))


class Phrases(tt.TtsTestCase):

    async def test_phrases_in_order(self):
        tag = tt.new_id("ord")
        parts = sentence_list(tag, 4)
        text = " ".join(parts)
        s = await tt.start("/openai", self)
        reply = await s.speak(text)
        recs = await requests(tag, 4)
        self.assertEqual(len(recs), 4)
        self.assertEqual([r["violations"] for r in recs], [[]] * 4)
        # asked for in phrase order, each sentence its own request
        self.assertEqual([r["body"]["input"] for r in recs],
                         parts[:-1] + [said(parts[-1])])
        self.assertTrue(tt.same_tones(heard(reply, 16000),
                                      expected_freqs(recs)),
                        (heard(reply, 16000), expected_freqs(recs)))
        # a provider five times faster than real time leaves no gap: the
        # next phrase was asked for while the one before was playing
        self.assertLess(longest_quiet(reply.samples()), 16000 // 50)

    async def test_one_request_ahead(self):
        tag = tt.new_id("ahd")
        s = await tt.start("/openai_realtime", self)
        await s.speak(sentences(tag, 5))
        recs = await requests(tag, 5)
        end = [end_sent(r) for r in recs]
        start = [r["wall"] for r in recs]
        # the second phrase is asked for while the first still comes
        self.assertLess(start[1], end[0])
        for k in range(len(recs) - 2):
            # but never two ahead: phrase k+2 waits for phrase k's end
            self.assertGreaterEqual(start[k + 2], end[k])

    async def test_no_gap_with_slow_first_audio(self):
        # each request takes 0.8 s to its first audio: asked for only
        # when the phrase before it ended, every joint would be a gap
        tag = tt.new_id("lag")
        s = await tt.start("/openai_lag", self)
        reply = await s.speak(sentences(tag, 3))
        recs = await requests(tag, 3)
        self.assertTrue(tt.same_tones(heard(reply, 16000),
                                      expected_freqs(recs)))
        walls = [t for t, _ in reply.frames()]
        gap = max(b - a for a, b in zip(walls, walls[1:]))
        self.assertLess(gap, 0.3, "audio stopped for %.2f s" % gap)
        self.assertLess(longest_quiet(reply.samples()), 16000 // 50)

    async def test_odd_chunks_exact_audio(self):
        # 24 kHz out: no conversion, so every byte can be compared
        tag = tt.new_id("odd")
        s = await tt.start("/openai_odd", self, rate=24000)
        reply = await s.speak(sentences(tag, 3))
        recs = await requests(tag, 3)
        for r in recs:
            sizes = [e["bytes"] for e in r["sent"] if e["type"] == "chunk"]
            self.assertTrue(any(n % 2 for n in sizes))
        pcm = reply.pcm()
        at = 0
        for r in recs:
            ph = r["phrases"][0]
            tone = synth(ph["freq"], ph["samples"])
            found = pcm.find(tone, at)
            self.assertGreaterEqual(found, 0,
                                    "phrase %d not found whole" % ph["n"])
            at = found + len(tone)
        self.assertEqual(len(pcm), sum(2 * r["phrases"][0]["samples"]
                                       for r in recs))

    async def test_fast_provider_is_held_back(self):
        # no pacing at all: the client's queue fills, the engine pauses
        # its transfers and resumes them; nothing is lost or reordered
        tag = tt.new_id("fst")
        s = await tt.start("/openai_fast", self)
        reply = await s.speak(sentences(tag, 6))
        recs = await requests(tag, 6)
        self.assertTrue(tt.same_tones(heard(reply, 16000),
                                      expected_freqs(recs)),
                        (heard(reply, 16000), expected_freqs(recs)))
        want = sum(r["phrases"][0]["samples"] for r in recs) * 16000 / RATE
        got = len(reply.pcm()) / 2
        self.assertLess(abs(got - want), 0.02 * want + 64, (got, want))

    async def test_paced_at_real_time(self):
        tag = tt.new_id("pace")
        s = await tt.start("/openai_fast", self)
        reply = await s.speak(sentences(tag, 3))
        frames = reply.frames()
        audio = tt.duration(reply, 16000)
        span = frames[-1][0] - frames[0][0]
        # the provider sent it all at once; the client got it over time
        self.assertGreater(audio, 2.0)
        self.assertGreater(span, 0.5 * audio, (span, audio))

    async def test_first_audio_before_the_text_ends(self):
        tag = tt.new_id("early")
        s = await tt.start("/openai", self)
        mark = await s.say(tt.say_text(sentences(tag, 4), slow=True))
        first = await s.first_audio(mark)
        done = await s.wait_type("response.text.done", mark)
        self.assertLess(first[0], [t for t, m in s.events if m is done][0])
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.audio.done")


class Cancel(tt.TtsTestCase):

    async def test_cancel_mid_reply(self):
        tag = tt.new_id("cxl")
        s = await tt.start("/openai_realtime", self)
        mark = await s.say(tt.say_text(sentences(tag, 6)))
        await s.first_audio(mark)
        await s.send_json({"type": "response.cancel"})
        intr = await s.wait_type("response.interrupted", mark)
        self.assertEqual(intr["reason"], "cancel")
        at = s.index_of(intr)

        # the mock saw the client hang up on the phrase under way
        def hung_up(recs):
            return recs and all(r["finished"] for r in recs) \
                and any(r["end"] == "client_closed" for r in recs)
        recs = await tt.tts_records(tag, hung_up, what="a request cut",
                                    kind="requests")
        self.assertLess(len(recs), 6)

        # the next reply speaks; nothing of the old one came in between
        mark2 = len(s.events)
        reply = await s.speak("After the cancel %s." % tt.new_id("nx"))
        self.assertEqual([m for _, m in s.events[at + 1:mark2]
                          if isinstance(m, (bytes, bytearray))], [])
        self.assertGreater(len(reply.pcm()), 0)


class Failures(tt.TtsTestCase):

    async def fails_then_recovers(self, path, script, message=None):
        tag = tt.new_id(script or "f")
        s = await tt.start(path, self)
        mark = await s.say(tt.say_text(sentences(tag, 2), tts_script=script))
        err = await s.wait_type("error", mark)
        self.assertEqual(err["code"], tt.TTS_FAIL, s.messages())
        self.assertTrue(err["recoverable"])
        if message:
            self.assertEqual(err["message"], message)
        # the text reply still completes
        await s.wait_type("response.text.done", mark)
        # and the session speaks the next reply
        reply = await s.speak("Recovered %s fine." % tag)
        self.assertGreater(len(reply.pcm()), 0)
        return s, err

    async def test_refuse_401(self):
        await self.fails_then_recovers("/openai", "refuse_401",
                                       "the speech provider refused the key")

    async def test_wrong_key(self):
        tag = tt.new_id("wk")
        s = await tt.start("/openai_wrongkey", self)
        mark = await s.say(tt.say_text("Wrong key %s." % tag))
        err = await s.wait_type("error", mark)
        self.assertEqual(err["code"], tt.TTS_FAIL)
        self.assertTrue(err["recoverable"])
        self.assertEqual(err["message"], "the speech provider refused the key")
        await s.wait_type("response.text.done", mark)
        recs = await tt.tts_records(tag, kind="requests")
        self.assertEqual(recs[0]["auth"], "wrong")
        self.assertEqual(recs[0]["status"], 401)

    async def test_refuse_500(self):
        await self.fails_then_recovers("/openai", "refuse_500",
                                       "the speech provider failed")

    async def test_error_midstream(self):
        await self.fails_then_recovers("/openai", "error_midstream")

    async def test_close_1011(self):
        await self.fails_then_recovers("/openai", "close_1011")

    async def test_drop(self):
        await self.fails_then_recovers("/openai", "drop")

    async def test_stall(self):
        await self.fails_then_recovers("/openai_short", "stall")

    async def test_unreachable(self):
        s = await tt.start("/openai_dead", self)
        mark = await s.say(tt.say_text("Nobody there."))
        err = await s.wait_type("error", mark)
        self.assertEqual(err["code"], tt.TTS_FAIL)
        self.assertTrue(err["recoverable"])
        await s.wait_type("response.text.done", mark)


class Load(tt.TtsTestCase):

    async def test_concurrent_sessions(self):
        n = 20
        tags = [tt.new_id("par") for _ in range(n)]
        sessions = await tt.gather(*[tt.start("/openai", self)
                                     for _ in range(n)])
        replies = await tt.gather(*[s.speak(sentences(t, 2))
                                    for s, t in zip(sessions, tags)])
        for t, reply in zip(tags, replies):
            recs = await requests(t, 2)
            self.assertEqual(len(recs), 2)
            self.assertTrue(tt.same_tones(heard(reply, 16000),
                                          expected_freqs(recs)),
                            (t, heard(reply, 16000), expected_freqs(recs)))
            want = sum(r["phrases"][0]["samples"] for r in recs) \
                * 16000 / RATE
            got = len(reply.pcm()) / 2
            self.assertLess(abs(got - want), 0.02 * want + 64, (got, want))
