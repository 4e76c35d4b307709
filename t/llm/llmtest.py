"""Helpers of the LLM tests: voice.v1 sessions driven by text.input, and
the LLM mock's records.

run.py starts nginx and the mock and tells the tests where they are
through VOICE_* environment variables (see run.py).
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import provider_harness as ph  # noqa: E402

NGINX_PORT = int(ph.env("VOICE_NGINX_PORT"))
MOCK_PORT = int(ph.env("VOICE_MOCK_PORT"))
NGINX_PID = int(ph.env("VOICE_NGINX_PID", "0"))
SYSTEM = ph.env("VOICE_LLM_SYSTEM", "")
RETRIES = int(ph.env("VOICE_RETRIES", "2"))

# A guard against hanging, never a latency assertion.
WAIT = 20.0

START = {"type": "session.start"}

# what the mock's default script answers to a user text
DEFAULT_REPLY = ("I heard: {}. That is an interesting point. "
                 "Let me think about it. Here is my answer.")

_ids = iter(range(1, 10 ** 9))


def new_id(prefix="c"):
    """A tag unique to this run, to find a conversation's requests."""
    return "%s%dx%d" % (prefix, os.getpid(), next(_ids))


def default_reply(text):
    """The reply of the mock's default script: it echoes the text after
    any "mock:NAME" selector."""
    text = re.sub(r"^mock:[A-Za-z0-9_.,-]+\s*", "", text)
    return DEFAULT_REPLY.format(text.strip().rstrip(".!?"))


LlmTestCase = ph.SessionTestCase
finished = ph.finished


class Session(ph.Session):
    """A session driven by text.input."""

    WAIT = WAIT

    def deltas(self, turn):
        return [m["delta"] for m in self.messages("response.text.delta",
                                                  turn=turn)]

    async def say(self, text):
        """Sends a text.input; returns the event index it was sent at."""
        mark = len(self.events)
        await self.send_json({"type": "text.input", "text": text})
        return mark

    async def turn_of(self, mark):
        """The turn number of the first turn-bearing event after mark."""
        def pred(s):
            for m in s.messages(since=mark):
                if "turn" in m and m["type"].startswith("response."):
                    return m["turn"]
            return None
        return await self.wait_for(pred, what="a response event")

    async def outcome(self, mark, timeout=WAIT):
        """Waits for the end of the reply begun after mark: its
        response.text.done or an error.  Returns the message."""
        def pred(s):
            for m in s.messages(since=mark):
                if m["type"] in ("response.text.done", "error"):
                    return m
            return None
        return await self.wait_for(pred, timeout, "a reply or an error")

    async def ask(self, text, timeout=WAIT):
        """One whole turn: returns (turn, deltas, done text)."""
        mark = await self.say(text)
        end = await self.outcome(mark, timeout)
        if end["type"] != "response.text.done":
            raise AssertionError("turn %r failed: %r" % (text, end))
        return end["turn"], self.deltas(end["turn"]), end["text"]


async def start(path, test=None, start_msg=None):
    return await ph.start(ph.ws_url(NGINX_PORT, path), Session, test,
                          start_msg or START)


# ---- the mock's records ----------------------------------------------------

def mock_state(since=None, timeout=5.0):
    return ph.mock_state(MOCK_PORT, since, timeout)


async def records(tag, cond=None, timeout=WAIT, what=None, kind="requests"):
    """Long-polls the mock until the records whose request body contains
    tag (in arrival order) satisfy cond; returns them."""
    return await ph.records(
        MOCK_PORT, lambda st: [r for r in st[kind]
                               if tag in (r.get("raw_body") or "")],
        tag, cond or finished(1), timeout, what)


def conversation(rec):
    """A request's conversation as [(role, text)], the system prompt first
    whichever the dialect; tool messages as ("tool_call", name) and
    ("tool_result", text)."""
    body = rec["body"]
    out = []
    if rec["dialect"] == "anthropic" and body.get("system") is not None:
        sysp = body["system"]
        out.append(("system", sysp if isinstance(sysp, str) else
                    "".join(b.get("text", "") for b in sysp)))
    for m in body["messages"]:
        c = m.get("content")
        if m.get("tool_calls"):
            if c:
                out.append(("assistant", c))
            out += [("tool_call", t["function"]["name"])
                    for t in m["tool_calls"]]
            continue
        if isinstance(c, str):
            out.append((m["role"] if m["role"] != "tool" else "tool_result",
                        c))
            continue
        for b in c or []:
            if b.get("type") == "text":
                out.append((m["role"], b["text"]))
            elif b.get("type") == "tool_use":
                out.append(("tool_call", b["name"]))
            elif b.get("type") == "tool_result":
                rc = b.get("content")
                out.append(("tool_result", rc if isinstance(rc, str) else
                            "".join(x.get("text", "") for x in rc or [])))
    return out


def first_text_wall(rec):
    for s in rec["sent"]:
        if s["kind"] == "text":
            return s["wall"]
    return None


# ---- the nginx worker ------------------------------------------------------

def worker_rss_kb():
    """VmRSS of the single worker, in KiB."""
    return ph.worker_rss_kb(NGINX_PID)
