"""Helpers of the LLM tests: voice.v1 sessions driven by text.input, and
the LLM mock's records.

run.py starts nginx and the mock and tells the tests where they are
through VOICE_* environment variables (see run.py).
"""

import asyncio
import json
import os
import re
import time
import unittest
import urllib.request

import websockets
from websockets.exceptions import ConnectionClosed


def _env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(name + " is not set: run the tests through run.py")
    return value


NGINX_PORT = int(_env("VOICE_NGINX_PORT"))
MOCK_PORT = int(_env("VOICE_MOCK_PORT"))
NGINX_PID = int(_env("VOICE_NGINX_PID", "0"))
SYSTEM = _env("VOICE_LLM_SYSTEM", "")
RETRIES = int(_env("VOICE_RETRIES", "2"))

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


class LlmTestCase(unittest.IsolatedAsyncioTestCase):

    async def asyncSetUp(self):
        asyncio.get_running_loop().set_debug(False)
        self.sessions = []

    async def asyncTearDown(self):
        for s in self.sessions:
            s.abort()


class Session:
    """One client session: every message the server sent, with the wall
    time (time.time()) it arrived."""

    def __init__(self, ws):
        self.ws = ws
        self.events = []            # (arrival wall time, message)
        self.close_code = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for msg in self.ws:
                if isinstance(msg, str):
                    msg = json.loads(msg)
                self.events.append((time.time(), msg))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            rc = self.ws.close_rcvd
            self.close_code = rc.code if rc is not None else None
            self.closed.set()
            self._changed.set()

    def messages(self, type_=None, since=0, **fields):
        return [m for _, m in self.events[since:]
                if isinstance(m, dict)
                and (type_ is None or m.get("type") == type_)
                and all(m.get(k) == v for k, v in fields.items())]

    def timed(self, type_, **fields):
        return [(t, m) for t, m in self.events
                if isinstance(m, dict) and m.get("type") == type_
                and all(m.get(k) == v for k, v in fields.items())]

    def deltas(self, turn):
        return [m["delta"] for m in self.messages("response.text.delta",
                                                  turn=turn)]

    async def wait_for(self, pred, timeout=WAIT, what="a condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = pred(self)
            if value:
                return value
            if self.closed.is_set():
                raise AssertionError("closed (%r) while waiting for %s; got "
                                     "%r" % (self.close_code, what,
                                             self.messages()))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; got %r"
                                     % (what, self.messages()))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_type(self, type_, since=0, timeout=WAIT, **fields):
        def pred(s):
            found = s.messages(type_, since, **fields)
            return found[0] if found else None
        return await self.wait_for(pred, timeout, "%s %r" % (type_, fields))

    async def send_json(self, obj):
        await self.ws.send(json.dumps(obj))

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

    async def end(self, timeout=WAIT):
        await self.send_json({"type": "session.end"})
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    def abort(self):
        if self.ws.transport is not None:
            self.ws.transport.abort()
        self._reader.cancel()


async def start(path, test=None, start_msg=None):
    ws = await websockets.connect(
        "ws://127.0.0.1:%d%s" % (NGINX_PORT, path),
        subprotocols=["voice.v1"], ping_interval=None, max_size=None,
        open_timeout=WAIT, close_timeout=WAIT)
    s = Session(ws)
    if test is not None:
        test.sessions.append(s)
    await s.send_json(start_msg or START)
    await s.wait_type("session.started")
    return s


# ---- the mock's records ----------------------------------------------------

def _get(path, timeout):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (MOCK_PORT, path),
                                timeout=timeout + 5) as r:
        return json.loads(r.read())


async def mock_state(since=None, timeout=5.0):
    path = "/_mock/state"
    if since is not None:
        path += "?since=%d&timeout=%s" % (since, timeout)
    return await asyncio.get_running_loop().run_in_executor(
        None, _get, path, timeout)


def finished(n=1):
    return lambda recs: len(recs) >= n and all(r["finished"] for r in recs)


async def records(tag, cond=None, timeout=WAIT, what=None, kind="requests"):
    """Long-polls the mock until the records whose request body contains
    tag (in arrival order) satisfy cond; returns them."""
    cond = cond or finished(1)
    deadline = time.monotonic() + timeout
    st = await mock_state()
    while True:
        recs = [r for r in st[kind] if tag in (r.get("raw_body") or "")]
        recs.sort(key=lambda r: r["id"])
        if cond(recs):
            return recs
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("mock records of %s: %s not reached; last "
                                 "seen %s" % (tag, what or "condition",
                                              json.dumps(recs)[:3000]))
        st = await mock_state(st["version"], min(left, 5.0))


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
    pids = []
    for tid in os.listdir("/proc/%d/task" % NGINX_PID):
        with open("/proc/%d/task/%s/children" % (NGINX_PID, tid)) as f:
            pids += [int(p) for p in f.read().split()]
    if len(pids) != 1:
        raise AssertionError("expected one worker, found %r" % pids)
    with open("/proc/%d/status" % pids[0]) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
