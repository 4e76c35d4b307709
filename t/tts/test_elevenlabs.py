"""The ElevenLabs stream-input engine against the TTS mock.

What is checked: the handshake (path with the voice, xi-api-key, model_id
and output_format) and every message the module sends (the mock's
violations list stays empty); the audio's tones per phrase in order, at
the client's rate and paced at real time; response.audio.done after the
last audio and the states around it; a stream per reply, connected ahead;
keep-alives while idle; cancel closing the stream; provider failures
ending the reply's speech only; 20 sessions side by side.
"""

import asyncio
import os
import subprocess
import tempfile
import unittest

from ttstest import (TtsTestCase, TTS_FAIL, WAIT, duration, finished,
                     new_id, same_tones, say_text, start, tones,
                     tts_records, tts_wait)

PREFIX = os.environ.get("VOICE_PREFIX", "")
VOICE = "el-voice-1"
MODEL = "eleven_flash_v2_5"
PATH = "/v1/text-to-speech/%s/stream-input"


def texts(rec):
    """The text of every message the module sent on a connection."""
    return [m["msg"].get("text") for m in rec["messages"] if "msg" in m]


def by_mock_id(mock_id):
    return lambda st: [r for r in st["connections"]
                       if r["mock_params"].get("mock_id") == mock_id]


def frames_after(session, msg):
    """Binary frames that came after the message msg."""
    i = session.index_of(msg)
    return [m for _, m in session.events[i + 1:]
            if isinstance(m, (bytes, bytearray))]


class Checks:

    def check_request(self, rec, rate_format, voice=VOICE, model=MODEL):
        self.assertEqual(rec["provider"], "elevenlabs")
        self.assertEqual(rec["violations"], [])
        self.assertEqual(rec["handshake"]["status"], 101)
        self.assertEqual(rec["auth"], "ok")
        self.assertEqual(rec["auth_style"], "xi-api-key")
        self.assertEqual(rec["path"], PATH % voice)
        self.assertEqual(rec["params"]["model_id"], model)
        self.assertEqual(rec["params"]["output_format"], rate_format)

    def check_messages(self, rec):
        msgs = [m["msg"] for m in rec["messages"] if "msg" in m]
        self.assertEqual(len(msgs), len(rec["messages"]))
        first = msgs[0]
        self.assertEqual(first["text"], " ")
        self.assertIn("voice_settings", first)
        self.assertNotIn("xi_api_key", first)
        self.assertEqual(msgs[-1], {"text": ""})
        spoken = [m for m in msgs[1:-1] if m["text"] != " "]
        self.assertTrue(spoken)
        for m in spoken:
            self.assertTrue(m["text"].endswith(" "), m)
            self.assertIs(m.get("flush"), True, m)
        # every phrase was generated at its flush, not by the schedule
        self.assertTrue(all(p["trigger"] == "flush"
                            for p in rec["phrases"]), rec["phrases"])
        return msgs

    def check_audio(self, reply, rec, rate):
        heard = tones(reply.samples(), rate)
        expected = [p["freq"] for p in rec["phrases"]]
        self.assertTrue(same_tones(heard, expected),
                        "heard %r, the mock played %r" % (heard, expected))
        # the whole of each phrase, converted to the client's rate
        want = sum(p["samples"] / p["rate"] for p in rec["phrases"])
        got = duration(reply, rate)
        self.assertAlmostEqual(got, want, delta=0.06)
        return want

    def check_end(self, session, reply):
        self.assertEqual(reply.end["type"], "response.audio.done")
        self.assertEqual(frames_after(session, reply.end), [])
        self.assertIn("speaking", reply.states())


class Request(TtsTestCase, Checks):

    async def spoken_at(self, rate, fmt):
        s = await start("/elevenlabs", self, rate=rate)
        tag = new_id()
        reply = await s.speak("Hello %s there. This is the second one." % tag)
        await s.listening(reply.mark)
        rec = (await tts_records(tag, finished(1)))[0]
        self.check_request(rec, fmt)
        self.check_messages(rec)
        self.assertEqual(rec["sample_rate"], int(fmt[4:]))
        self.assertEqual(len(rec["phrases"]), 2)
        want = self.check_audio(reply, rec, rate)
        self.check_end(s, reply)
        states = reply.states()
        self.assertLess(states.index("speaking"), states.index("listening"))
        # paced: the frames are spread over the audio's own length
        frames = reply.frames()
        self.assertGreaterEqual(frames[-1][0] - frames[0][0], want - 0.3)
        await s.end()
        return rec

    async def test_16000(self):
        await self.spoken_at(16000, "pcm_16000")

    async def test_24000(self):
        await self.spoken_at(24000, "pcm_24000")

    async def test_8000_gets_16000(self):
        # the provider has no 8 kHz PCM: 16 kHz, converted by the module
        await self.spoken_at(8000, "pcm_16000")

    async def test_url_model_speed(self):
        s = await start("/elevenlabs-path", self)
        tag = new_id()
        reply = await s.speak("Path %s test." % tag)
        rec = (await tts_records(tag, finished(1)))[0]
        self.check_request(rec, "pcm_16000", voice="path-voice",
                           model="eleven_turbo_v2_5")
        self.assertEqual(rec["mock_params"], {"mock_id": "el-path"})
        msgs = self.check_messages(rec)
        self.assertAlmostEqual(msgs[0]["voice_settings"]["speed"], 1.1)
        self.check_audio(reply, rec, 16000)
        await s.end()


class Streams(TtsTestCase, Checks):

    async def test_connected_ahead(self):
        """A stream is open before the reply, the reply speaks on it, and
        the next reply's stream is connected as soon as this one ends."""
        s = await start("/elevenlabs-ahead", self)
        pick = by_mock_id("el-ahead")
        first = await tts_wait(pick, lambda rs: len(rs) == 1
                               and len(rs[0]["messages"]) >= 1,
                               what="a stream opened ahead")
        self.assertEqual(texts(first[0]), [" "])

        tag = new_id()
        reply = await s.speak("First %s reply. It has two phrases." % tag)
        recs = await tts_wait(pick, lambda rs: len(rs) == 2
                              and len(rs[1]["messages"]) >= 1,
                              what="the next stream opened ahead")
        self.assertEqual(recs[0]["id"], first[0]["id"])
        self.assertIn(tag, "".join(t or "" for t in texts(recs[0])))
        self.assertEqual(texts(recs[1]), [" "])
        self.assertFalse(recs[1]["finished"])
        # the ahead stream opened before the reply's text was sent
        self.assertLess(recs[0]["messages"][0]["wall"],
                        recs[0]["messages"][1]["wall"])

        tag2 = new_id()
        reply2 = await s.speak("Second %s reply." % tag2)
        recs = await tts_wait(pick, lambda rs: len(rs) == 3 and all(
            r["finished"] for r in rs[:2]), what="three streams")
        self.assertIn(tag2, "".join(t or "" for t in texts(recs[1])))
        for rec, r in ((recs[0], reply), (recs[1], reply2)):
            self.check_request(rec, "pcm_16000")
            self.check_messages(rec)
            self.check_audio(r, rec, 16000)
            # one reply per stream: the input ended once
            self.assertEqual(texts(rec).count(""), 1)
        await s.end()

    async def test_first_audio_before_text_done(self):
        s = await start("/elevenlabs", self)
        tag = new_id()
        mark = await s.say(say_text(
            "Good morning %s friend. The weather is fine today. We will "
            "see rain tomorrow." % tag, slow=True))
        first, _ = await s.first_audio(mark)
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.audio.done")
        done = s.timed("response.text.done")
        self.assertTrue(done)
        self.assertLess(first, done[-1][0])
        rec = (await tts_records(tag, finished(1)))[0]
        self.assertGreaterEqual(len(rec["phrases"]), 3)
        self.check_messages(rec)
        self.check_audio(reply, rec, 16000)
        await s.end()

    async def test_paused_while_the_queue_is_full(self):
        """Audio comes five times faster than it plays and the queue
        holds 1 s: the stream is paused and resumed, and all of it is
        heard, in order, with nothing dropped."""
        s = await start("/elevenlabs-small", self)
        tag = new_id()
        reply = await s.speak(
            "A long %s reply comes now. It has three phrases in it. And "
            "the last one is here." % tag, timeout=WAIT)
        rec = (await tts_records(tag, finished(1)))[0]
        self.assertEqual(len(rec["phrases"]), 3)
        want = self.check_audio(reply, rec, 16000)
        self.assertGreater(want, 3.0)
        self.check_end(s, reply)
        await s.end()

    async def test_keepalive(self):
        """The spare stream outlives the provider's inactivity timeout
        (2 s here) on keep-alives, and the next reply is spoken on it."""
        s = await start("/elevenlabs-keepalive", self)
        pick = by_mock_id("el-keepalive")
        recs = await tts_wait(pick, lambda rs: rs and
                              rs[0].get("keepalives", 0) >= 3,
                              timeout=WAIT, what="three keep-alives")
        self.assertEqual(len(recs), 1)
        self.assertNotIn("idle_close", recs[0])
        self.assertFalse(recs[0]["finished"])
        self.assertEqual(recs[0]["violations"], [])

        tag = new_id()
        reply = await s.speak("Still %s here." % tag)
        recs = await tts_wait(pick, lambda rs: rs and rs[0]["finished"],
                              what="the reply's stream done")
        self.assertIn(tag, "".join(t or "" for t in texts(recs[0])))
        self.assertNotIn("idle_close", recs[0])
        self.check_messages(recs[0])
        self.check_audio(reply, recs[0], 16000)
        await s.end()


class Cancel(TtsTestCase, Checks):

    async def test_cancel_closes_the_stream(self):
        s = await start("/elevenlabs-realtime", self)
        tag = new_id()
        text = ("Counting %s one two three four five six seven eight nine "
                "ten eleven twelve." % tag)
        mark = await s.say(say_text(text))
        # some of it heard: at least 0.6 s of audio
        await s.wait_for(lambda s: sum(len(f) for _, f in s.frames(mark))
                         >= 0.6 * 16000 * 2, what="0.6 s of audio")
        await s.send_json({"type": "response.cancel"})
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.interrupted")
        await s.listening(mark)

        rec = (await tts_records(tag, finished(1)))[0]
        self.assertEqual(rec["script"], "realtime")
        self.assertEqual(rec["close"]["first"], "client")
        self.assertEqual(rec["close"]["client_frame"]["code"], 1000)
        # cut short: the provider never got to its final message
        self.assertNotIn("final", [e["type"] for e in rec["sent"]])
        self.assertNotEqual(rec["phrases"][0]["state"], "complete")
        # and no audio was sent after the close came
        self.assertTrue(all(e["wall"] <= rec["close"]["wall"]
                            for e in rec["sent"]))
        self.assertEqual(rec["violations"], [])
        self.assertEqual(frames_after(s, reply.end), [])

        # what was heard is a start of the reply, cut at a word, and no
        # more than the audio that came (the mock: 60 ms a character)
        heard = reply.end.get("spoken_text", "")
        self.assertTrue(text.startswith(heard), heard)
        self.assertTrue(heard == "" or text[len(heard)] == " ", heard)
        came = duration(reply, 16000)
        self.assertLessEqual(len(heard), came / 0.060 + 12,
                             "%r after %.2f s of audio" % (heard, came))

        # the next reply speaks, on a stream of its own
        tag2 = new_id()
        reply2 = await s.speak("After %s the cancel." % tag2)
        rec2 = (await tts_records(tag2, finished(1)))[0]
        self.assertNotEqual(rec2["id"], rec["id"])
        self.check_messages(rec2)
        self.check_audio(reply2, rec2, 16000)
        await s.end()


class Failures(TtsTestCase, Checks):

    async def failed_turn(self, s, text, **kw):
        """A turn whose speech fails: error TTS_FAIL, recoverable, and
        the text reply still completes."""
        mark = await s.say(say_text(text, **kw))
        err = await s.wait_type("error", mark, code=TTS_FAIL)
        self.assertIs(err["recoverable"], True)
        await s.wait_type("response.text.done", mark)
        await s.listening(mark)
        return err

    async def fails_then_speaks(self, script):
        s = await start("/elevenlabs", self)
        tag = new_id()
        err = await self.failed_turn(
            s, "Broken %s speech here, it goes on for a while." % tag,
            tts_script=script)
        self.assertNotIn("key", err["message"])
        rec = (await tts_records(tag, finished(1)))[0]
        self.assertEqual(rec["script"], script)
        self.assertEqual(rec["violations"], [])
        self.assertTrue(rec["faults"])
        tag2 = new_id()
        reply = await s.speak("Working %s again." % tag2)
        rec2 = (await tts_records(tag2, finished(1)))[0]
        self.check_audio(reply, rec2, 16000)
        await s.end()

    async def test_error_midstream(self):
        await self.fails_then_speaks("error_midstream")

    async def test_close_1011(self):
        await self.fails_then_speaks("close_1011")

    async def test_drop(self):
        await self.fails_then_speaks("drop")

    async def test_stall(self):
        # the glue's voice_tts_timeout ends it
        await self.fails_then_speaks("stall")

    async def test_wrong_key(self):
        """401: the reply fails saying so; one connection per reply at
        most, never a loop of retries."""
        s = await start("/elevenlabs-wrongkey", self)
        pick = by_mock_id("el-wrongkey")
        await tts_wait(pick, lambda rs: len(rs) == 1 and rs[0]["finished"],
                       what="the refused connection ahead")
        for n in (1, 2, 3):
            err = await self.failed_turn(s, "No %s key." % new_id())
            self.assertIn("key", err["message"])
            recs = await tts_wait(pick, lambda rs: all(r["finished"]
                                                       for r in rs),
                                  what="refused connections")
            # the first reply is told of the refusal seen ahead
            self.assertEqual(len(recs), n)
            for r in recs:
                self.assertEqual(r["handshake"]["status"], 401)
                self.assertEqual(r["auth"], "wrong")
        await s.end()

    async def test_refused_401_then_accepted(self):
        s = await start("/elevenlabs-401", self)
        err = await self.failed_turn(s, "Refused %s once." % new_id())
        self.assertIn("key", err["message"])
        tag = new_id()
        reply = await s.speak("Accepted %s now." % tag)
        rec = (await tts_records(tag, finished(1)))[0]
        self.assertEqual(rec["mock_params"]["mock_id"], "el-401")
        self.check_audio(reply, rec, 16000)
        recs = await tts_wait(by_mock_id("el-401"), lambda rs: len(rs) >= 2,
                              what="two connections")
        self.assertEqual(recs[0]["handshake"]["status"], 401)
        await s.end()

    async def test_refused_500_then_accepted(self):
        s = await start("/elevenlabs-500", self)
        err = await self.failed_turn(s, "Refused %s twice." % new_id())
        self.assertNotIn("key", err["message"])
        tag = new_id()
        reply = await s.speak("Accepted %s now." % tag)
        rec = (await tts_records(tag, finished(1)))[0]
        self.check_audio(reply, rec, 16000)
        recs = await tts_wait(by_mock_id("el-500"), lambda rs: len(rs) >= 3,
                              what="three connections")
        self.assertEqual([r["handshake"]["status"] for r in recs[:3]],
                         [500, 500, 101])
        await s.end()

    async def test_unreachable(self):
        s = await start("/elevenlabs-dead", self)
        for _ in range(2):
            err = await self.failed_turn(s, "Nobody %s there." % new_id())
            self.assertIn("unavailable", err["message"])
        await s.end()


class Concurrency(TtsTestCase, Checks):

    async def test_twenty_sessions(self):
        async def one(i):
            s = await start("/elevenlabs", self)
            tag = new_id("c%d" % i)
            reply = await s.speak("Session %s speaks. Number %d of many."
                                  % (tag, i))
            rec = (await tts_records(tag, finished(1)))[0]
            self.check_request(rec, "pcm_16000")
            self.check_messages(rec)
            self.check_audio(reply, rec, 16000)
            await s.end()
            return rec["id"]

        ids = await asyncio.gather(*(one(i) for i in range(20)))
        self.assertEqual(len(set(ids)), 20)


class Configuration(unittest.TestCase):
    """nginx -t refuses what the provider could not take, and says why."""

    CONF = """
load_module %(module)s;
error_log %(dir)s/error.log;
pid %(dir)s/nginx.pid;
events { }
http {
    server {
        listen 127.0.0.1:1;
        location / {
            voice;
            voice_pipeline agent;
            voice_stt off;
            voice_llm off;
            voice_tts elevenlabs;
            voice_tts_key file:%(prefix)s/tts.key;
            %(lines)s
        }
    }
}
"""

    def nginx_t(self, lines):
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(self.CONF % {
                    "module": os.path.join(PREFIX, "modules",
                                           "ngx_http_voice_module.so"),
                    "dir": d, "prefix": PREFIX, "lines": lines})
            return subprocess.run(
                ["/usr/sbin/nginx", "-t", "-q", "-p", d + "/", "-c", conf,
                 "-e", os.path.join(d, "error.log")],
                capture_output=True, text=True)

    def refused(self, lines, why):
        r = self.nginx_t(lines)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn(why, r.stderr)

    def test_accepted(self):
        r = self.nginx_t("voice_tts_voice v1; voice_tts_speed 1.2; "
                         "voice_tts_url "
                         "wss://127.0.0.1/?inactivity_timeout=60;")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_needs_voice(self):
        self.refused("", "needs voice_tts_voice")

    def test_voice_in_path(self):
        self.refused("voice_tts_voice a/b;", "voice_tts_voice must be")

    def test_speed(self):
        self.refused("voice_tts_voice v1; voice_tts_speed 1.5;",
                     "from 0.7 to 1.2")

    def test_format_in_url(self):
        self.refused("voice_tts_voice v1; voice_tts_url "
                     "ws://127.0.0.1/?output_format=mp3_44100;",
                     "must not set model_id or output_format")

    def test_inactivity_timeout(self):
        self.refused("voice_tts_voice v1; voice_tts_url "
                     "ws://127.0.0.1/?inactivity_timeout=500;",
                     "inactivity_timeout must be 1 to 180")
