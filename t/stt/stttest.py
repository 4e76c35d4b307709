"""Helpers of the STT tests: sessions with nginx, audio, the mock's records.

run.py starts nginx and the Deepgram mock and tells the tests where they
are through VOICE_* environment variables (see run.py).
"""

import asyncio
import hashlib
import math
import os
import random
import struct
import sys
import time

from websockets.exceptions import ConnectionClosed

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import provider_harness as ph  # noqa: E402

NGINX_PORT = int(ph.env("VOICE_NGINX_PORT"))
MOCK_PORT = int(ph.env("VOICE_MOCK_PORT"))
TLS_MOCK_PORT = int(ph.env("VOICE_TLS_MOCK_PORT", "") or 0)
CA_FILE = ph.env("VOICE_CA_FILE", "")
MOCK_STATE = ph.env("VOICE_MOCK_STATE", "")
NGINX_PID = int(ph.env("VOICE_NGINX_PID", "0"))
PREFIX = ph.env("VOICE_PREFIX", "")

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


SttTestCase = ph.SessionTestCase


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

class Session(ph.Session):
    """A session that also keeps every audio byte it sent."""

    WAIT = WAIT

    def __init__(self, ws):
        super().__init__(ws)
        self.sent = bytearray()

    def errors(self):
        return self.messages("error")

    def transcripts(self):
        return [m for m in self.messages()
                if m["type"] in ("transcript.partial", "transcript.final")]

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


def url(path, **query):
    return ph.ws_url(NGINX_PORT, path, **query)


async def start(path, test=None, start_msg=None, **query):
    """Connects, sends session.start and waits for session.started."""
    return await ph.start(url(path, **query), Session, test,
                          start_msg or START)


# ---- the mock's records ----------------------------------------------------

def mock_state(since=None, timeout=5.0):
    return ph.mock_state(MOCK_PORT, since, timeout)


async def records(mock_id, cond=None, timeout=WAIT, what=None):
    """Long-polls the mock until the records of the connections that carry
    mock_id (in the order they came) satisfy cond; returns them."""
    return await ph.records(
        MOCK_PORT, lambda st: [r for r in st["connections"]
                               if r["mock_params"].get("mock_id") == mock_id],
        mock_id, cond or ph.finished(), timeout, what)


def controls(rec):
    return [c["type"] for c in rec["control"]]


# ---- the nginx worker --------------------------------------------------------

def worker_pids():
    return ph.worker_pids(NGINX_PID)


def worker_rss_kb():
    """VmRSS of the (single) worker, in KiB."""
    return ph.worker_rss_kb(NGINX_PID)
