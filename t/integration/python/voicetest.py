"""Shared helpers for the Python integration tests.

The tests talk to a running nginx that loads the voice module.  run.py
starts that nginx and describes it through environment variables:

    VOICE_TEST_URL            ws://127.0.0.1:PORT
    VOICE_ECHO_DELAY_MS       voice_echo_delay of /voice
    VOICE_SLOW_ECHO_DELAY_MS  voice_echo_delay of /voice-slow
    VOICE_SLOW_SEND_TIMEOUT_MS voice_send_timeout of /voice-slow
"""

import asyncio
import functools
import hashlib
import json
import os
import socket
import struct
import time
import unittest
import urllib.parse

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.legacy.client import WebSocketClientProtocol


def _env_ms(name):
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(name + " is not set: run the tests through run.py")
    return int(value) / 1000.0


BASE_URL = os.environ.get("VOICE_TEST_URL", "")
ECHO_DELAY = _env_ms("VOICE_ECHO_DELAY_MS")
SLOW_ECHO_DELAY = _env_ms("VOICE_SLOW_ECHO_DELAY_MS")
SLOW_SEND_TIMEOUT = _env_ms("VOICE_SLOW_SEND_TIMEOUT_MS")

# A timer may fire up to one millisecond early because nginx keeps its
# clock in whole milliseconds.
TIMER_TOLERANCE = 0.001

# How long any single wait for the server may take before the test gives
# up.  Only a guard against hanging; never a latency assertion.
WAIT = 10.0

SUBPROTOCOL = "voice.v1"


def url(path):
    if not BASE_URL:
        raise RuntimeError("VOICE_TEST_URL is not set: run through run.py")
    return BASE_URL + path


def timed(seconds):
    """Fail a coroutine test that runs longer than `seconds`."""

    def wrap(fn):
        @functools.wraps(fn)
        async def run(*args, **kwargs):
            return await asyncio.wait_for(fn(*args, **kwargs), seconds)

        return run

    return wrap


class FrameRecorder(WebSocketClientProtocol):
    """Client protocol that remembers the header of every frame it reads,
    so a test can tell one whole frame from a fragmented message."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames_seen = []

    async def read_frame(self, max_size):
        frame = await super().read_frame(max_size)
        self.frames_seen.append((int(frame.opcode), frame.fin,
                                 len(frame.data)))
        return frame


# Connections opened by the running test; dropped when it ends, so a
# failed test leaves no session behind for the next one.
_opened = []


class VoiceTestCase(unittest.IsolatedAsyncioTestCase):

    async def asyncSetUp(self):
        # unittest runs the loop in debug mode, which records a traceback
        # for every callback: too slow for a hundred streaming sessions.
        asyncio.get_running_loop().set_debug(False)

    async def asyncTearDown(self):
        while _opened:
            ws = _opened.pop()
            if ws.transport is not None:
                ws.transport.abort()


async def connect(path="/voice", subprotocols=(SUBPROTOCOL,), **kwargs):
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("max_size", None)
    kwargs.setdefault("open_timeout", WAIT)
    kwargs.setdefault("close_timeout", WAIT)
    # None offers no subprotocol at all (no header), as phone gateways do.
    if subprotocols is not None:
        subprotocols = list(subprotocols)
    ws = await websockets.connect(url(path), subprotocols=subprotocols,
                                  **kwargs)
    _opened.append(ws)
    return ws


def small_rcvbuf_socket(size=4096):
    """A connected TCP socket with a small receive buffer, so that a client
    that stops reading fills up quickly."""
    parts = urllib.parse.urlsplit(url("/"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.connect((parts.hostname, parts.port))
    sock.setblocking(False)
    return sock


async def recv(ws, timeout=WAIT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws, timeout=WAIT):
    msg = await recv(ws, timeout)
    if not isinstance(msg, str):
        raise AssertionError("expected a text frame, got %d binary bytes"
                             % len(msg))
    return json.loads(msg)


async def start_session(path="/voice", start=None, **kwargs):
    """Connect, send session.start and check the two replies.
    Returns (websocket, session.started message)."""
    ws = await connect(path, **kwargs)
    try:
        await ws.send(json.dumps(start or {"type": "session.start"}))
        started = await recv_json(ws)
        if started.get("type") != "session.started":
            raise AssertionError("expected session.started, got %r" % started)
        state = await recv_json(ws)
        if state != {"type": "state", "state": "streaming"}:
            raise AssertionError("expected state streaming, got %r" % state)
    except BaseException:
        ws.transport.abort()
        raise
    return ws, started


async def collect_until_close(ws, timeout=WAIT):
    """Read every message until the connection closes.  Returns
    (messages, close code received or None when no close frame came)."""
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("connection still open after %.1fs; got %d "
                                 "messages" % (timeout, len(messages)))
        try:
            messages.append(await asyncio.wait_for(ws.recv(), left))
        except ConnectionClosed:
            break
    await asyncio.wait_for(ws.wait_closed(), WAIT)
    code = ws.close_rcvd.code if ws.close_rcvd is not None else None
    return messages, code


def texts(messages):
    return [json.loads(m) for m in messages if isinstance(m, str)]


def binaries(messages):
    return [m for m in messages if isinstance(m, bytes)]


def audio_frame(session, seq, size=640):
    """Payload unique to (session, seq): a readable header, then a digest
    of both so that a frame from another session can never match."""
    head = struct.pack(">HI", session, seq)
    body = hashlib.blake2b(head, digest_size=64).digest()
    body = (body * (size // len(body) + 1))[:size - len(head)]
    return head + body


def describe_frame(payload):
    if len(payload) >= 6:
        session, seq = struct.unpack(">HI", payload[:6])
        return "frame (session %d, seq %d, %d bytes)" % (session, seq,
                                                         len(payload))
    return "frame of %d bytes" % len(payload)
