"""The OpenAI-compatible and Anthropic engines against the LLM mock, and
the embedded responder: what the client receives and what the provider
was sent."""

import asyncio
import time

from llmtest import (LlmTestCase, start, records, finished, conversation,
                     first_text_wall, default_reply, worker_rss_kb,
                     new_id, SYSTEM, RETRIES, WAIT)

# the mock's "split" script (t/mock/llm.py)
SPLIT_TEXT = ("Caf\u00e9 cr\u00e8me, na\u00efve \u00fcber \u2014 "
              "\u4f60\u597d \u4e16\u754c \U0001f389 and \U0001f600. "
              "Split pieces still make whole words. The end.")


def errors(s, since=0, code=None):
    return [e for e in s.messages("error", since)
            if code is None or e.get("code") == code]


class Dialect:
    """Tests run once per provider dialect (see the subclasses)."""

    PATH = None
    SHORT = None

    # ---- streaming ----------------------------------------------------

    async def test_first_token_and_deltas(self):
        """A multi-sentence reply arrives as >= 5 deltas that add up to the
        done text; the request is well formed and carries the system
        prompt; the state goes thinking, then listening."""
        tag = new_id()
        text = "Tell me about %s and cats" % tag
        s = await start(self.PATH, self)
        turn, deltas, done = await s.ask(text)
        self.assertGreaterEqual(len(deltas), 5)
        self.assertEqual("".join(deltas), done)
        self.assertEqual(done, default_reply(text))
        states = [m["state"] for m in s.messages("state")]
        self.assertIn("thinking", states)
        self.assertEqual(states[-1], "listening")
        rec = (await records(tag))[0]
        self.assertEqual(rec["violations"], [])
        self.assertEqual(rec["auth"], "ok")
        self.assertEqual(rec["body"]["stream"], True)
        self.assertTrue(rec["body"]["model"].endswith("-mock"))
        self.assertEqual(conversation(rec), [("system", SYSTEM),
                                             ("user", text)])
        t_client = s.timed("response.text.delta", turn=turn)[0][0]
        print("\n    first token: mock sent it at +%.1f ms, the client had "
              "it %.1f ms later"
              % (1000 * (first_text_wall(rec) - rec["wall"]),
                 1000 * (t_client - first_text_wall(rec))))

    async def test_unicode_split_stream(self):
        """SSE bytes cut anywhere (inside UTF-8 sequences and CRLF) give
        the same text."""
        tag = new_id()
        s = await start(self.PATH, self)
        _, deltas, done = await s.ask("mock:split %s" % tag)
        self.assertEqual(done, SPLIT_TEXT)
        self.assertEqual("".join(deltas), SPLIT_TEXT)
        rec = (await records(tag))[0]
        self.assertEqual(rec["violations"], [])
        # the client may hang up once it has the end marker, before the
        # last bytes of the body
        self.assertEqual(rec["sent"][-1]["kind"], "done")

    async def test_multi_turn_memory(self):
        """Turn N's request carries turns 1..N-1 exactly and the system
        prompt."""
        tag = new_id()
        s = await start(self.PATH, self)
        said = []
        for i in range(1, 4):
            text = "Turn %d of %s here" % (i, tag)
            _, _, done = await s.ask(text)
            said += [("user", text), ("assistant", done)]
        recs = await records(tag, finished(3))
        self.assertEqual(len(recs), 3)
        for n, rec in enumerate(recs):
            self.assertEqual(rec["violations"], [])
            self.assertEqual(conversation(rec),
                             [("system", SYSTEM)] + said[:2 * n + 1])

    # ---- cancellation -------------------------------------------------

    async def test_cancel_mid_stream(self):
        """response.cancel: the provider's stream is torn down at once, no
        delta or done of that turn follows, and the cancelled reply is not
        remembered."""
        tag = new_id()
        s = await start(self.PATH, self)
        first = "mock:long %s please" % tag
        mark = await s.say(first)
        turn = await s.turn_of(mark)
        await s.wait_type("response.text.delta", mark, turn=turn)
        sent_at = time.time()
        await s.send_json({"type": "response.cancel"})
        intr = await s.wait_type("response.interrupted", mark, turn=turn)
        self.assertEqual(intr["reason"], "cancel")
        rec = (await records(tag, lambda r: r and r[0]["client_closed"]
                             is not None, what="the client close"))[0]
        self.assertNotEqual(rec["end"], "complete")
        print("\n    cancel: the mock saw the close %.1f ms after the "
              "client sent response.cancel"
              % (1000 * (rec["client_closed"] - sent_at)))
        n_deltas = len(s.deltas(turn))
        self.assertGreater(n_deltas, 0)
        # the next turn shows whether anything of the old one leaked
        second = "And now %s something else" % tag
        turn2, _, done2 = await s.ask(second)
        self.assertNotEqual(turn2, turn)
        self.assertEqual(done2, default_reply(second))
        self.assertEqual(len(s.deltas(turn)), n_deltas)
        self.assertEqual(s.messages("response.text.done", turn=turn), [])
        intr_i = [i for i, (_, m) in enumerate(s.events)
                  if m.get("type") == "response.interrupted"][0]
        self.assertEqual([m for m in s.messages("response.text.delta",
                                                intr_i) if m["turn"] == turn],
                         [])
        recs = await records(tag, finished(2))
        conv = conversation(recs[1])
        self.assertEqual(recs[1]["violations"], [])
        self.assertNotIn("assistant", [r for r, _ in conv])
        self.assertEqual(conv[-1], ("user", second))
        self.assertFalse(any("Sentence number" in t for _, t in conv))

    async def test_new_input_cancels_running_reply(self):
        """A text.input while a reply streams cancels it first: the old
        stream is closed before the new request starts."""
        tag = new_id()
        s = await start(self.PATH, self)
        mark = await s.say("mock:long %s first" % tag)
        turn = await s.turn_of(mark)
        await s.wait_type("response.text.delta", mark, turn=turn)
        second = "Second %s question" % tag
        turn2, _, done2 = await s.ask(second)
        self.assertNotEqual(turn, turn2)
        self.assertEqual(done2, default_reply(second))
        self.assertEqual(s.messages("response.text.done", turn=turn), [])
        recs = await records(tag, finished(2))
        self.assertIsNotNone(recs[0]["client_closed"])
        self.assertLessEqual(recs[0]["client_closed"], recs[1]["wall"])
        self.assertFalse(any("Sentence number" in t
                             for _, t in conversation(recs[1])))
        self.assertEqual(recs[1]["violations"], [])

    # ---- failures -----------------------------------------------------

    async def test_first_token_timeout(self):
        tag = new_id()
        s = await start(self.SHORT, self)
        mark = await s.say("mock:slow_first %s" % tag)
        end = await s.outcome(mark)
        self.assertEqual(end["type"], "error", end)
        self.assertEqual(end["code"], "LLM_TIMEOUT")
        self.assertIs(end["recoverable"], True)
        self.assertEqual(s.messages("response.text.delta", mark), [])
        await records(tag, lambda r: r and all(x["client_closed"]
                                               for x in r))
        await self.next_turn_works(s)

    async def test_retry_after_500_and_429(self):
        for first in ("error_500", "error_429"):
            tag = new_id()
            s = await start(self.SHORT, self)
            text = "mock:%s,default %s" % (first, tag)
            _, deltas, done = await s.ask(text)
            self.assertEqual(done, default_reply(text))
            recs = await records(tag, finished(2))
            self.assertEqual([r["status"] for r in recs], [int(first[-3:]),
                                                           200])
            self.assertEqual(errors(s), [])
            self.assertEqual(recs[0]["body"], recs[1]["body"])

    async def test_retries_run_out(self):
        tag = new_id()
        s = await start(self.SHORT, self)
        mark = await s.say("mock:error_500 %s" % tag)
        end = await s.outcome(mark)
        self.assertEqual(end["type"], "error")
        self.assertEqual(end["code"], "LLM_FAIL")
        self.assertIs(end["recoverable"], True)
        recs = await records(tag, finished(1 + RETRIES))
        self.assertEqual(len(recs), 1 + RETRIES)
        await self.next_turn_works(s)

    async def test_401_is_not_retried(self):
        tag = new_id()
        s = await start(self.SHORT, self)
        mark = await s.say("mock:error_401 %s" % tag)
        end = await s.outcome(mark)
        self.assertEqual(end["code"], "LLM_FAIL")
        self.assertIs(end["recoverable"], True)
        # the provider's message is not passed on verbatim
        self.assertNotIn("Unauthorized", end["message"])
        await self.next_turn_works(s)
        recs = await records(tag, finished(2))
        self.assertEqual([r["status"] for r in recs], [401, 200])

    async def test_midstream_error(self):
        tag = new_id()
        s = await start(self.PATH, self)
        mark = await s.say("mock:midstream_error %s" % tag)
        end = await s.outcome(mark)
        self.assertEqual(end["type"], "error", end)
        self.assertEqual(end["code"], "LLM_FAIL")
        self.assertEqual(s.messages("response.text.done", mark), [])
        await self.next_turn_works(s)

    async def test_malformed_stream(self):
        tag = new_id()
        s = await start(self.PATH, self)
        mark = await s.say("mock:malformed %s" % tag)
        end = await s.outcome(mark)
        self.assertEqual(end["type"], "error", end)
        self.assertEqual(end["code"], "LLM_FAIL")
        self.assertEqual(s.messages("response.text.done", mark), [])
        await self.next_turn_works(s)

    async def test_total_timeout(self):
        """A stream that stalls after a few tokens hits voice_llm_timeout:
        LLM_TIMEOUT, and the stalled stream is closed."""
        tag = new_id()
        s = await start(self.SHORT, self)
        mark = await s.say("mock:stall_3 %s" % tag)
        end = await s.outcome(mark)
        self.assertEqual(end["type"], "error", end)
        self.assertEqual(end["code"], "LLM_TIMEOUT")
        await records(tag, lambda r: r and r[0]["client_closed"])
        await self.next_turn_works(s)

    async def test_stream_without_end(self):
        """A stream cut before [DONE] / message_stop ends the turn one way
        or the other, and the session goes on."""
        tag = new_id()
        s = await start(self.PATH, self)
        mark = await s.say("mock:no_done %s" % tag)
        end = await s.outcome(mark)
        self.assertIn(end["type"], ("error", "response.text.done"))
        await self.next_turn_works(s)

    async def next_turn_works(self, s):
        text = "Still there %s" % new_id()
        _, _, done = await s.ask(text)
        self.assertEqual(done, default_reply(text))


class OpenAI(Dialect, LlmTestCase):
    PATH = "/openai"
    SHORT = "/openai-short"

    async def test_wrong_key(self):
        tag = new_id()
        s = await start("/openai-wrongkey", self)
        mark = await s.say("hello %s" % tag)
        end = await s.outcome(mark)
        self.assertEqual(end["code"], "LLM_FAIL")
        recs = await records(tag)
        self.assertEqual(recs[0]["auth"], "wrong")
        self.assertEqual(recs[0]["status"], 401)
        # give a retry every chance to show itself: another turn's
        # request must be the next one the mock sees from this session
        mark = await s.say("again %s" % tag)
        await s.outcome(mark)
        recs = await records(tag, finished(2))
        self.assertEqual(len(recs), 2)
        self.assertIn("again", recs[1]["raw_body"])

    async def test_dead_provider(self):
        s = await start("/openai-dead", self)
        mark = await s.say("anyone there")
        end = await s.outcome(mark, timeout=WAIT + 10)
        self.assertEqual(end["code"], "LLM_FAIL")
        self.assertIs(end["recoverable"], True)

    async def test_history_limit(self):
        tag = new_id()
        s = await start("/openai-history2", self)
        said = []
        for i in range(1, 5):
            text = "Turn %d of %s" % (i, tag)
            _, _, done = await s.ask(text)
            said += [("user", text), ("assistant", done)]
        rec = (await records(tag, finished(4)))[3]
        self.assertEqual(conversation(rec),
                         [("system", SYSTEM)] + said[4:7])

    async def test_concurrent_sessions_no_bleed(self):
        """100 sessions with their own conversations at once: each gets
        only its own text; the worker's memory does not grow."""
        async def one(i, tag):
            s = await start("/openai", self)
            text = "Session %d says %s" % (i, tag)
            _, deltas, done = await s.ask(text, timeout=60)
            self.assertEqual(done, default_reply(text))
            # only this session's tag, nothing of the others
            self.assertEqual("".join(deltas), done)
            self.assertEqual(len(s.messages("response.text.done")), 1)
            await s.end()

        async def batch():
            tags = [new_id("p") for _ in range(100)]
            await asyncio.gather(*(one(i, t) for i, t in enumerate(tags)))
            self.sessions.clear()
            return tags

        await batch()
        before = worker_rss_kb()
        tags = await batch()
        await batch()
        after = worker_rss_kb()
        print("\n    worker VmRSS: %d KiB after 100 sessions, %d KiB after "
              "200 more (%+d KiB)" % (before, after, after - before))
        self.assertLess(after - before, 8 * 1024)
        rec = (await records(tags[7]))[0]
        self.assertEqual(conversation(rec)[-1][1],
                         "Session 7 says %s" % tags[7])


class Anthropic(Dialect, LlmTestCase):
    PATH = "/anthropic"
    SHORT = "/anthropic-short"

    async def test_overloaded(self):
        """529 overloaded is retried like a 5xx."""
        tag = new_id()
        s = await start(self.SHORT, self)
        text = "mock:error_529,default %s" % tag
        _, _, done = await s.ask(text)
        self.assertEqual(done, default_reply(text))
        recs = await records(tag, finished(2))
        self.assertEqual([r["status"] for r in recs], [529, 200])


class Embedded(LlmTestCase):

    async def test_streamed_and_deterministic(self):
        texts = []
        for _ in range(2):
            s = await start("/embedded", self)
            turn, deltas, done = await s.ask("What is the weather like")
            self.assertGreaterEqual(len(deltas), 5)
            self.assertEqual("".join(deltas), done)
            self.assertGreaterEqual(done.count(". ") + 1, 2, done)
            states = [m["state"] for m in s.messages("state")]
            self.assertIn("thinking", states)
            texts.append(done)
            await s.end()
        self.assertEqual(texts[0], texts[1])

    async def test_cancel(self):
        s = await start("/embedded", self)
        mark = await s.say("Tell me a long story about the sea")
        turn = await s.turn_of(mark)
        await s.wait_type("response.text.delta", mark, turn=turn)
        await s.send_json({"type": "response.cancel"})
        await s.wait_type("response.interrupted", mark, turn=turn)
        n = len(s.deltas(turn))
        _, _, done = await s.ask("And a short one")
        self.assertTrue(done)
        self.assertEqual(len(s.deltas(turn)), n)
        self.assertEqual(s.messages("response.text.done", turn=turn), [])
