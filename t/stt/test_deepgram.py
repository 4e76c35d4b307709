"""The Deepgram engine against the mock: what the module sends, what the
client gets, and how failures of the provider are handled."""

import asyncio
import datetime
import os
import time

import stttest
from stttest import (SttTestCase, start, records, controls, sha256,
                     silence, noise, voiced, tone, new_id, WAIT)


SHORT_TIMEOUT = int(os.environ.get("VOICE_SHORT_TIMEOUT_MS", "500"))


def finals(s):
    return s.messages("transcript.final")


def partials(s):
    return s.messages("transcript.partial")


def stt_errors(s):
    return [e for e in s.errors() if e.get("code") == "STT_FAIL"]


def one(recs):
    return len(recs) == 1 and recs[0]["finished"]


class Query(SttTestCase):

    async def test_query_and_auth(self):
        """The query has the audio format, the defaults and the variables;
        the key goes in Authorization: Token."""
        mid = new_id("q")
        s = await start("/dg", self, mock_id=mid, tag="blue")
        await s.stream(silence(0.2))
        self.assertEqual(await s.end(), 1000)
        rec = (await records(mid, one, what="one finished connection"))[0]
        self.assertEqual(rec["handshake"]["status"], 101)
        self.assertEqual(rec["auth"], "ok")
        self.assertTrue(rec["headers"]["authorization"].startswith("Token "))
        p = rec["params"]
        want = {"encoding": "linear16", "sample_rate": "16000",
                "channels": "1", "model": "nova-3", "language": "en",
                "interim_results": "true", "endpointing": "300",
                "utterance_end_ms": "1000", "vad_events": "true",
                "smart_format": "true", "tag": ["blue"]}
        for k, v in want.items():
            self.assertEqual(p.get(k), v, k)
        self.assertEqual(rec["violations"], [])
        # $arg_mock_script is empty here: the parameter is left out
        self.assertNotIn("mock_script", rec["mock_params"])

    async def test_overrides(self):
        """voice_stt_param replaces a default, and utterance_end_ms is left
        out when interim results are off; list parameters repeat."""
        mid = new_id("o")
        s = await start("/dg-params", self, mock_id=mid)
        await s.stream(silence(0.1))
        # a session that ends while its provider is still connecting
        # drops the connection, so wait for it to be open first
        await records(mid, lambda recs: recs
                      and recs[0]["handshake"]["status"] == 101)
        self.assertEqual(await s.end(), 1000)
        rec = (await records(mid, one))[0]
        p = rec["params"]
        self.assertEqual(p["model"], "nova-2-general")
        self.assertEqual(p["endpointing"], "false")
        self.assertEqual(p["interim_results"], "false")
        self.assertNotIn("utterance_end_ms", p)
        self.assertEqual(p["keyterm"], ["weather report", "forecast"])
        self.assertEqual(p["encoding"], "linear16")
        self.assertEqual(rec["violations"], [])


class Stream(SttTestCase):

    async def test_audio_identical_and_close_stream(self):
        """Every sample arrives unchanged, in order; session.end sends
        CloseStream."""
        mid = new_id("a")
        s = await start("/dg", self, mock_id=mid)
        audio = noise(0.3) + voiced(0.5) + tone(0.3)
        await s.stream(audio)
        self.assertEqual(await s.end(), 1000)
        rec = (await records(mid, one))[0]
        self.assertEqual(rec["audio"]["bytes"], len(audio))
        self.assertEqual(rec["audio"]["sha256"], sha256(audio))
        self.assertEqual(controls(rec)[-1:], ["CloseStream"])
        self.assertEqual(rec["violations"], [])
        self.assertEqual(stt_errors(s), [])

    async def test_keepalive_while_muted(self):
        mid = new_id("k")
        s = await start("/dg", self, mock_id=mid)
        await s.stream(silence(0.3))
        await s.send_json({"type": "input.mute"})
        muted = time.monotonic()
        recs = await records(
            mid, lambda r: r and "KeepAlive" in controls(r[0]),
            timeout=WAIT, what="a KeepAlive")
        print("\n    KeepAlive %.1f s after the mute"
              % (time.monotonic() - muted))
        ka = [c for c in recs[0]["control"] if c["type"] == "KeepAlive"][0]
        # no audio came while muted: the KeepAlive is at the end of it
        self.assertAlmostEqual(ka["audio_t"], 0.3, places=3)
        await s.send_json({"type": "input.unmute"})
        await s.stream(silence(0.1))
        self.assertEqual(await s.end(), 1000)
        rec = (await records(mid, one))[0]
        self.assertEqual(rec["audio"]["bytes"], len(s.sent))
        self.assertIsNone(rec.get("idle_close"))
        self.assertEqual(rec["violations"], [])

    async def test_finalize_at_commit(self):
        """input.commit sends Finalize after all the audio before it."""
        mid = new_id("c")
        s = await start("/dg", self, mock_id=mid)
        await s.stream(silence(0.4))
        await s.send_json({"type": "input.commit"})
        recs = await records(mid, lambda r: r and "Finalize" in
                             controls(r[0]), what="a Finalize")
        fin = [c for c in recs[0]["control"] if c["type"] == "Finalize"][0]
        self.assertAlmostEqual(fin["audio_t"], 0.4, places=3)
        self.assertEqual(await s.end(), 1000)
        rec = (await records(mid, one))[0]
        # the mock answered with an empty final from_finalize
        self.assertTrue(any(m.get("from_finalize") for m in rec["sent"]
                            if m["type"] == "Results"))
        self.assertEqual(stt_errors(s), [])

    async def test_finalize_at_end_of_speech(self):
        """The local VAD's end of speech sends Finalize."""
        mid = new_id("v")
        s = await start("/dg", self, mock_id=mid)
        await s.stream(noise(0.6) + voiced(1.0) + noise(1.5, seed=3))
        recs = await records(mid, lambda r: r and "Finalize" in
                             controls(r[0]), what="a Finalize")
        fin = [c for c in recs[0]["control"] if c["type"] == "Finalize"][0]
        # after the speech (0.6 .. 1.6 s), before the end of the stream
        self.assertGreater(fin["audio_t"], 1.6)
        self.assertLessEqual(fin["audio_t"], 3.1)
        self.assertEqual(await s.end(), 1000)

    async def test_hello(self):
        """A partial, then exactly one final, for the turn."""
        mid = new_id("h")
        s = await start("/dg", self, mock_id=mid, mock_script="hello")
        await s.stream(voiced(1.3))
        final = await s.keep_talking(s.wait_type("transcript.final"))
        self.assertEqual(await s.end(), 1000)
        tr = s.transcripts()
        self.assertEqual(tr[0], {"type": "transcript.partial",
                                 "turn": final["turn"], "text": "hello"})
        self.assertEqual(final["text"], "Hello world.")
        self.assertEqual(final["turn"], 1)
        self.assertEqual(len(finals(s)), 1, tr)
        self.assertLess(s.messages().index(tr[0]),
                        s.messages().index(final))
        self.assertEqual(stt_errors(s), [])
        # how long a partial takes from the mock to the client
        rec = (await records(mid, one))[0]
        sent = [m for m in rec["sent"] if m["type"] == "Results"
                and m.get("transcript") == "hello"][0]
        started = datetime.datetime.strptime(
            rec["started"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        arrival = [t for t, m in s.events if m is tr[0]][0]
        print("\n    partial: mock -> client %.1f ms"
              % ((arrival - (started + sent["t"])) * 1000))

    async def test_final_after_the_audio(self):
        """A final that arrives when the client has stopped sending still
        reaches it (nothing else wakes the session up)."""
        mid = new_id("fa")
        s = await start("/dg", self, mock_id=mid, mock_script="hello")
        await s.stream(voiced(1.0))
        final = await s.wait_type("transcript.final")
        self.assertEqual(final["text"], "Hello world.")
        self.assertEqual(await s.end(), 1000)

    async def test_concurrent_sessions(self):
        """100 sessions at once, each with its own script, each gets only
        its own words."""
        n = 100

        async def one_session(i):
            mid = new_id("m%d-" % i)
            s = await start("/dg", self, mock_id=mid, mock_script="w%d" % i)
            await s.stream(voiced(0.8, seed=i), frame_bytes=1280)
            try:
                await s.keep_talking(s.wait_type("transcript.final"), 1280)
            except AssertionError:
                raise AssertionError("session %s: no final" % mid)
            await s.end()
            return i, s

        results = await asyncio.wait_for(
            asyncio.gather(*[one_session(i) for i in range(n)]), 90)
        for i, s in results:
            word = "word%d" % i
            texts = [m["text"] for m in partials(s)]
            self.assertEqual(texts[0], word)
            # only its own words, never another session's
            for t in texts:
                self.assertIn(t.lower().split()[0], (word, word + "."))
            self.assertEqual(len(s.messages("transcript.partial"))
                             + len(finals(s)), len(s.transcripts()))
            self.assertEqual([m["text"] for m in finals(s)],
                             ["Word%d is number %d." % (i, i)])
            self.assertEqual(stt_errors(s), [])
            self.assertEqual(s.close_code, 1000)


class Failures(SttTestCase):

    async def test_refused_500_then_retry(self):
        mid = new_id("r5")
        s = await start("/dg", self, mock_id=mid,
                        mock_script="refuse_500,hello")
        err = await s.keep_talking(s.wait_type("error", code="STT_FAIL"))
        self.assertTrue(err["recoverable"])
        await s.stream(voiced(1.3))
        final = await s.keep_talking(s.wait_type("transcript.final"))
        self.assertEqual(final["text"], "Hello world.")
        self.assertEqual(await s.end(), 1000)
        recs = await records(mid, lambda r: len(r) >= 2 and
                             all(x["finished"] for x in r))
        self.assertEqual([r["handshake"]["status"] for r in recs],
                         [500, 101])
        self.assertEqual(len(stt_errors(s)), 1)

    async def _refused_credentials(self, path, **query):
        s = await start(path, self, **query)
        err = await s.keep_talking(s.wait_type("error", code="STT_FAIL"))
        self.assertFalse(err["recoverable"])
        await s.keep_talking(asyncio.wait_for(s.closed.wait(), WAIT))
        self.assertEqual(s.close_code, 1011)
        return s

    async def test_refused_401(self):
        mid = new_id("r4")
        await self._refused_credentials("/dg", mock_id=mid,
                                        mock_script="refuse_401")
        recs = await records(mid)
        self.assertEqual([r["handshake"]["status"] for r in recs], [401])

    async def test_wrong_key(self):
        mid = new_id("nk")
        await self._refused_credentials("/dg-nokey", mock_id=mid)
        recs = await records(mid)
        self.assertEqual([(r["handshake"]["status"], r["auth"])
                          for r in recs], [(401, "wrong")])

    async def _reconnect(self, script):
        mid = new_id("d")
        s = await start("/dg", self, mock_id=mid, mock_script=script)
        audio = noise(0.3) + voiced(1.2) + noise(0.3, seed=4)
        await s.stream(audio)
        final = await s.keep_talking(s.wait_type("transcript.final"))
        self.assertEqual(final["text"], "Hello world.")
        self.assertEqual(await s.end(), 1000)
        recs = await records(mid, lambda r: len(r) >= 2 and
                             all(x["finished"] for x in r))
        self.assertEqual(len(recs), 2, [r["script"] for r in recs])
        first, second = recs
        # the first stream confirmed nothing: the second one got all of it
        # again, from the first sample on
        self.assertEqual(second["audio"]["sha256"], sha256(bytes(s.sent)))
        self.assertGreaterEqual(first["audio"]["bytes"], 32000)
        self.assertEqual(s.errors(), [])
        self.assertEqual(second["violations"], [])
        return first, second

    async def test_drop_reconnects(self):
        first, _ = await self._reconnect("drop_after_1s,hello")
        self.assertTrue(first["close"]["dropped_by_mock"])

    async def test_net0001_reconnects(self):
        first, _ = await self._reconnect("net0001_at_1s,hello")
        self.assertEqual(first["close"]["server_frame"]["reason"], "NET-0001")

    async def test_stall_reconnects(self):
        """A Finalize that gets no answer within voice_stt_timeout: the
        stream is dropped and a new one gets the audio and the Finalize."""
        mid = new_id("st")
        s = await start("/dg-short", self, mock_id=mid,
                        mock_script="stall_after_0.5s,hello")
        await s.stream(voiced(1.3))
        await s.send_json({"type": "input.commit"})
        final = await s.keep_talking(s.wait_type("transcript.final"))
        self.assertEqual(final["text"], "Hello world.")
        recs = await records(mid, lambda r: len(r) >= 2 and
                             "Finalize" in controls(r[1]),
                             what="a Finalize on the second stream")
        self.assertEqual(await s.end(), 1000)
        self.assertIn("Finalize", controls(recs[0]))
        self.assertEqual(recs[0]["faults"][0]["fault"], "stall")
        self.assertEqual(s.errors(), [])

    async def test_malformed(self):
        """A malformed message: a recoverable error once, and the session
        and the others go on."""
        mid = new_id("mf")
        other_id = new_id("ok")
        s = await start("/dg", self, mock_id=mid, mock_script="malformed")
        other = await start("/dg", self, mock_id=other_id,
                            mock_script="hello")
        await asyncio.gather(s.stream(voiced(1.3)),
                             other.stream(voiced(1.3)))
        err = await s.keep_talking(s.wait_type("error", code="STT_FAIL"))
        self.assertTrue(err["recoverable"])
        final = await other.keep_talking(other.wait_type("transcript.final"))
        self.assertEqual(final["text"], "Hello world.")
        self.assertEqual(other.errors(), [])
        # the session still answers
        await s.send_json({"type": "input.commit"})
        await s.stream(silence(0.3))
        self.assertEqual(await s.end(), 1000)
        self.assertEqual(await other.end(), 1000)
        self.assertEqual(len(s.errors()), 1)
        self.assertEqual(s.messages()[-1], {"type": "state",
                                            "state": "closed"})

    async def test_slow_reader(self):
        """The provider stops reading for 2 s: nothing is lost."""
        mid = new_id("sr")
        before = stttest.worker_rss_kb()
        s = await start("/dg", self, mock_id=mid, mock_script="slow_reader")
        audio = voiced(3.0)
        await s.stream(audio)
        self.assertEqual(await s.end(), 1000)
        rec = (await records(mid, one))[0]
        self.assertEqual(rec["audio"]["sha256"], sha256(audio))
        after = stttest.worker_rss_kb()
        print("\n    worker VmRSS %d -> %d KiB" % (before, after))
        self.assertLess(after - before, 5 * 1024)
        self.assertEqual(s.errors(), [])

    async def test_retries_exhausted(self):
        s = await start("/dg-dead", self)
        first = await s.keep_talking(s.wait_type("error", code="STT_FAIL"))
        self.assertTrue(first["recoverable"])
        await s.keep_talking(asyncio.wait_for(s.closed.wait(), WAIT))
        self.assertEqual(s.close_code, 1011)
        errs = stt_errors(s)
        self.assertEqual([e["recoverable"] for e in errs], [True, False])


class Memory(SttTestCase):

    async def test_memory_flat(self):
        """1,000 short sessions leave the worker's memory where it was."""

        async def short(i):
            s = await start("/dg", None, mock_id=new_id("mem"))
            await s.stream(silence(0.1), realtime=False)
            code = await s.end()
            s.abort()
            return code

        async def batch(count, width=25):
            codes = []
            for i in range(0, count, width):
                codes += await asyncio.gather(*[short(j) for j in
                                                range(i, i + width)])
            return codes

        await batch(100)
        before = stttest.worker_rss_kb()
        codes = await batch(1000)
        after = stttest.worker_rss_kb()
        print("\n    worker VmRSS %d -> %d KiB over 1000 sessions (%+d KiB)"
              % (before, after, after - before))
        self.assertEqual(set(codes), {1000})
        self.assertLess(after - before, 5 * 1024)
