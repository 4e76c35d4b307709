"""Helpers of the STT tests: sessions with nginx, audio, the mock's records.

run.py starts nginx and the Deepgram mock and tells the tests where they
are through VOICE_* environment variables (see run.py).
"""

import asyncio
import hashlib
import json
import math
import os
import random
import struct
import time
import unittest
import urllib.parse
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
TLS_MOCK_PORT = int(_env("VOICE_TLS_MOCK_PORT", "") or 0)
CA_FILE = _env("VOICE_CA_FILE", "")
MOCK_STATE = _env("VOICE_MOCK_STATE", "")
NGINX_PID = int(_env("VOICE_NGINX_PID", "0"))
PREFIX = _env("VOICE_PREFIX", "")

RATE = 16000
FRAME_MS = 20
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000

# A guard against hanging, never a latency assertion.
WAIT = 15.0

START = {"type": "session.start",
         "audio": {"input": {"encoding": "pcm_s16le", "sample_rate": RATE,
                             "channels": 1},
                   "output": {"encoding": "pcm_s16le", "sample_rate": RATE}}}

_ids = iter(range(1, 10 ** 9))


def new_id(prefix="s"):
    return "%s%d-%d" % (prefix, os.getpid(), next(_ids))


class SttTestCase(unittest.IsolatedAsyncioTestCase):

    async def asyncSetUp(self):
        # debug mode records a traceback per callback: too slow for load
        asyncio.get_running_loop().set_debug(False)
        self.sessions = []

    async def asyncTearDown(self):
        for s in self.sessions:
            s.abort()


# ---- audio ---------------------------------------------------------------

def pcm(samples):
    return struct.pack("<%dh" % len(samples), *samples)


def silence(seconds):
    return b"\0\0" * int(RATE * seconds)


def noise(seconds, level=30, seed=1):
    """Quiet background noise: lets the VAD learn its floor."""
    rnd = random.Random(seed)
    return pcm([rnd.randint(-level, level) for _ in range(int(RATE * seconds))])


def voiced(seconds, f0=140.0, amplitude=6000, seed=2):
    """A buzz with a voice's harmonics and a slow wobble in loudness: what
    the local VAD takes for speech."""
    rnd = random.Random(seed)
    out = []
    for i in range(int(RATE * seconds)):
        t = i / RATE
        env = 0.6 + 0.4 * math.sin(2 * math.pi * 4 * t)
        v = sum(math.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 12))
        out.append(int(max(-32767, min(32767,
                   amplitude * env * v / 2 + rnd.randint(-40, 40)))))
    return pcm(out)


def tone(seconds, freq=440.0, amplitude=8000):
    return pcm([int(amplitude * math.sin(2 * math.pi * freq * i / RATE))
                for i in range(int(RATE * seconds))])


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---- sessions ------------------------------------------------------------

class Session:
    """One client session: collects every message the server sends, with
    the time it arrived."""

    def __init__(self, ws):
        self.ws = ws
        self.events = []            # (arrival time, message)
        self.close_code = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self.sent = bytearray()     # every audio byte sent
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

    def messages(self, type_=None):
        return [m for _, m in self.events
                if isinstance(m, dict) and (type_ is None
                                            or m.get("type") == type_)]

    def errors(self):
        return self.messages("error")

    def transcripts(self):
        return [m for m in self.messages()
                if m["type"] in ("transcript.partial", "transcript.final")]

    async def wait_for(self, pred, timeout=WAIT, what="a condition"):
        """Waits until pred(self) holds; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred(self)
            if value:
                return value
            if self.closed.is_set():
                value = pred(self)
                if value:
                    return value
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

    async def wait_type(self, type_, timeout=WAIT, **fields):
        def pred(s):
            for m in s.messages(type_):
                if all(m.get(k) == v for k, v in fields.items()):
                    return m
            return None
        return await self.wait_for(pred, timeout,
                                   "%s %r" % (type_, fields))

    async def send_json(self, obj):
        await self.ws.send(json.dumps(obj))

    async def stream(self, audio, frame_bytes=FRAME_BYTES, realtime=True):
        """Sends audio in frames at real time (absolute schedule)."""
        start = time.monotonic()
        step = frame_bytes / (2.0 * RATE)
        for n, i in enumerate(range(0, len(audio), frame_bytes)):
            if realtime:
                delay = start + n * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            chunk = audio[i:i + frame_bytes]
            await self.ws.send(chunk)
            self.sent += chunk

    async def keep_talking(self, coro, frame_bytes=FRAME_BYTES):
        """Awaits coro while sending silence at real time, as a client with
        an open microphone does; returns what coro returned."""
        async def trickle():
            while True:
                await self.stream(silence(0.2), frame_bytes)
        task = asyncio.ensure_future(trickle())
        try:
            return await coro
        finally:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    async def end(self, timeout=WAIT):
        """session.end; waits for the close; returns the close code."""
        await self.send_json({"type": "session.end"})
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    def abort(self):
        if self.ws.transport is not None:
            self.ws.transport.abort()
        self._reader.cancel()


def url(path, **query):
    # nginx's $arg_ variables are the raw query: a list of mock scripts
    # must reach the mock as a comma, not as %2C
    q = urllib.parse.urlencode(query, safe=",")
    return "ws://127.0.0.1:%d%s%s" % (NGINX_PORT, path, "?" + q if q else "")


async def start(path, test=None, start_msg=None, **query):
    """Connects, sends session.start and waits for session.started."""
    ws = await websockets.connect(url(path, **query),
                                  subprotocols=["voice.v1"],
                                  ping_interval=None, max_size=None,
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


async def mock_state(since=None, timeout=5.0, port=None):
    path = "/_mock/state"
    if since is not None:
        path += "?since=%d&timeout=%s" % (since, timeout)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _get, path, timeout)


async def records(mock_id, cond=None, timeout=WAIT, what=None):
    """Long-polls the mock until the records of the connections that carry
    mock_id (in the order they came) satisfy cond; returns them."""
    cond = cond or (lambda recs: recs and all(r["finished"] for r in recs))
    deadline = time.monotonic() + timeout
    st = await mock_state()
    while True:
        recs = [r for r in st["connections"]
                if r["mock_params"].get("mock_id") == mock_id]
        recs.sort(key=lambda r: r["id"])
        if cond(recs):
            return recs
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("mock records of %s: %s not reached; last "
                                 "seen %s" % (mock_id, what or "condition",
                                              json.dumps(recs)[:3000]))
        st = await mock_state(st["version"], min(left, 5.0))


def controls(rec):
    return [c["type"] for c in rec["control"]]


# ---- the nginx worker --------------------------------------------------------

def worker_pids():
    pids = []
    for tid in os.listdir("/proc/%d/task" % NGINX_PID):
        with open("/proc/%d/task/%s/children" % (NGINX_PID, tid)) as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def worker_rss_kb():
    """VmRSS of the (single) worker, in KiB."""
    pids = worker_pids()
    if len(pids) != 1:
        raise AssertionError("expected one worker, found %r" % pids)
    with open("/proc/%d/status" % pids[0]) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
