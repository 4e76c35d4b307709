#!/usr/bin/python3
"""A text-to-speech provider server for the module's tests.

One port speaks three providers' wire protocols over plain ws:// and
http:// on loopback:

- Cartesia's TTS WebSocket (GET /tts/websocket);
- ElevenLabs' stream-input WebSocket
  (GET /v1/text-to-speech/{voice_id}/stream-input);
- OpenAI's speech endpoint (POST /v1/audio/speech), streamed raw PCM.

Every phrase it is asked to speak comes back as a pure sine tone whose
frequency names the phrase (see tone_freq), so that a test can tell from
the audio alone which phrase it hears and in what order.  It checks
everything the client sends, injects faults on demand, and keeps what it
saw per connection or request as JSON in --state-dir, also served at
GET /_mock/state.  See README.md next to this file.

Needs only /usr/bin/python3 and Debian's python3-websockets (10.x), whose
sans-I/O layer does the WebSocket framing.
"""

import argparse
import array
import asyncio
import base64
import copy
import email.utils
import http
import json
import math
import os
import re
import signal
import socket
import struct
import sys
import time
import urllib.parse
import zlib

import websockets.server
from websockets.connection import OPEN, SEND_EOF
from websockets.frames import Opcode

import records

CARTESIA_PATH = "/tts/websocket"
ELEVEN_RE = re.compile(r"^/v1/text-to-speech/([^/]+)/stream-input$")
OPENAI_PATH = "/v1/audio/speech"
STATE_PATH = "/_mock/state"

CARTESIA_RATES = (8000, 16000, 22050, 24000, 44100)
ELEVEN_FORMATS = {"pcm_16000": 16000, "pcm_22050": 22050,
                  "pcm_24000": 24000, "pcm_44100": 44100}
OPENAI_RATE = 24000
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable",
                 "marin", "nova", "onyx", "sage", "shimmer", "verse")
OPENAI_MAX_INPUT = 4096

CARTESIA_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2}(-[A-Za-z]{2,4})?$")

CARTESIA_KEYS = {"model_id", "transcript", "voice", "output_format",
                 "context_id", "continue", "add_timestamps",
                 "add_phoneme_timestamps", "use_normalized_timestamps",
                 "language", "max_buffer_delay_ms", "duration", "speed",
                 "generation_config", "flush"}
ELEVEN_FIRST_KEYS = {"text", "voice_settings", "generation_config",
                     "xi_api_key", "authorization",
                     "pronunciation_dictionary_locators"}
ELEVEN_LATER_KEYS = {"text", "flush", "try_trigger_generation"}
ELEVEN_PARAMS = {"model_id", "output_format", "inactivity_timeout",
                 "language_code", "enable_logging", "enable_ssml_parsing",
                 "sync_alignment", "auto_mode", "apply_text_normalization",
                 "seed"}
ELEVEN_SCHEDULE = [120, 160, 250, 290]
OPENAI_KEYS = {"model", "input", "voice", "response_format", "speed",
               "instructions", "stream_format"}

MAX_HEAD = 16384
MAX_BODY = 1 << 20
# A close reason must fit a control frame: 125 bytes minus the code.
MAX_REASON = 123
TEXT_PREFIX_RE = re.compile(r"^\s*mock:([A-Za-z0-9_.,-]+)\s*")

SCRIPT_KEYS = {"description", "refuse", "refuse_body", "first_audio", "rtf",
               "chunk_ms", "chunk_bytes", "ms_per_char", "amplitude",
               "error_after", "error_message", "close_after", "close_code",
               "close_reason", "stall_after", "drop_after", "cancel_lag",
               "violations"}

BUILTIN_SCRIPTS = {
    "default": {"description": "5x real time, first audio after 50 ms"},
    "fast": {"description": "no pacing at all", "rtf": 0,
             "first_audio": 0},
    "realtime": {"description": "audio at its own pace", "rtf": 1},
    "slow": {"description": "half real time: the client starves",
             "rtf": 0.5},
    "slow_first": {"description": "2 s before the first chunk",
                   "first_audio": 2.0},
    "refuse_401": {"refuse": 401},
    "refuse_500": {"refuse": 500},
    "error_midstream": {"description": "a provider error after 3 chunks",
                        "error_after": 3},
    "close_1011": {"description": "close 1011 after 3 chunks",
                   "close_after": 3},
    "stall": {"description": "silence after 2 chunks, socket kept open",
              "stall_after": 2},
    "drop": {"description": "TCP reset after 3 chunks", "drop_after": 3},
    "late_cancel": {"description": "2 chunks still sent after a cancel",
                    "cancel_lag": 2, "rtf": 1},
}

DEFAULTS = {"first_audio": 0.05, "rtf": 5.0, "chunk_ms": 40,
            "chunk_bytes": [1001], "ms_per_char": 60, "amplitude": 8000,
            "close_code": 1011, "close_reason": "internal error",
            "error_message": "mock provider error", "cancel_lag": 0,
            "violations": "reply"}

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 415: "Unsupported Media Type",
           422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable"}


# ---- the tone --------------------------------------------------------------

def text_hash(text):
    return zlib.crc32(text.encode("utf-8"))


def tone_freq(n, text):
    """Phrase n (from 0) with this text: 300 Hz + 50 Hz * k, where
    k = 2 * (n mod 8) + (crc32(text) mod 2).  k runs over 0..15, so the
    tones are 300..1050 Hz; two phrases in a row always differ by 50 Hz or
    more, and the text's parity bit tells two texts at the same index
    apart half of the time."""
    return 300 + 50 * (2 * (n % 8) + (text_hash(text) & 1))


def phrase_samples(text, rate, ms_per_char, speed=1.0):
    """ms_per_char of audio per character (at least one character)."""
    return max(1, int(round(rate * max(1, len(text)) * ms_per_char
                            / 1000.0 / speed)))


def synth(freq, samples, rate, amplitude):
    """A sine tone starting at phase 0, as s16le bytes."""
    w = 2.0 * math.pi * freq / rate
    a = array.array("h", (int(round(amplitude * math.sin(w * i)))
                          for i in range(samples)))
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


# ---- scripts ---------------------------------------------------------------

class ScriptError(Exception):
    pass


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_script(name, s):
    if not isinstance(s, dict):
        raise ScriptError("script %s: not an object" % name)
    bad = set(s) - SCRIPT_KEYS
    if bad:
        raise ScriptError("script %s: unknown keys %s" % (name, sorted(bad)))
    for k in ("first_audio", "rtf"):
        if k in s and (not _num(s[k]) or s[k] < 0):
            raise ScriptError("script %s: %s must be a number >= 0"
                              % (name, k))
    for k in ("chunk_ms", "ms_per_char"):
        if k in s and (not _num(s[k]) or s[k] <= 0):
            raise ScriptError("script %s: %s must be a number > 0"
                              % (name, k))
    for k in ("error_after", "close_after", "stall_after", "drop_after",
              "cancel_lag"):
        if k in s and (not _int(s[k]) or s[k] < 0):
            raise ScriptError("script %s: %s must be an integer >= 0"
                              % (name, k))
    if "amplitude" in s and (not _int(s["amplitude"])
                             or not 0 < s["amplitude"] <= 32767):
        raise ScriptError("script %s: amplitude must be 1..32767" % name)
    cb = s.get("chunk_bytes", [1])
    if _int(cb):
        cb = [cb]
    if (not isinstance(cb, list) or not cb
            or not all(_int(c) and c > 0 for c in cb)):
        raise ScriptError("script %s: chunk_bytes must be a positive integer "
                          "or a list of them" % name)
    if "refuse" in s and (not _int(s["refuse"])
                          or not 400 <= s["refuse"] <= 599):
        raise ScriptError("script %s: refuse must be 400..599" % name)
    if "close_code" in s and (not _int(s["close_code"])
                              or not 1000 <= s["close_code"] <= 4999):
        raise ScriptError("script %s: close_code must be 1000..4999" % name)
    for k in ("close_reason", "error_message", "description", "refuse_body"):
        if k in s and not isinstance(s[k], str):
            raise ScriptError("script %s: %s must be a string" % (name, k))
    if len(s.get("close_reason", "").encode()) > MAX_REASON:
        raise ScriptError("script %s: close_reason too long" % name)
    if s.get("violations", "reply") not in ("reply", "record"):
        raise ScriptError("script %s: violations is reply or record" % name)


def load_scripts(path):
    scripts = copy.deepcopy(BUILTIN_SCRIPTS)
    if path:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ScriptError("the script file is not a JSON object")
        if "scripts" in data:
            bad = set(data) - {"scripts", "default"}
            if bad:
                raise ScriptError("unknown library keys %s" % sorted(bad))
            if not isinstance(data["scripts"], dict):
                raise ScriptError("scripts must be an object")
            scripts.update(data["scripts"])
            if "default" in data:
                if data["default"] not in scripts:
                    raise ScriptError("default names no script")
                scripts["default"] = scripts[data["default"]]
        else:
            scripts["default"] = data
    for name, s in scripts.items():
        check_script(name, s)
    for s in scripts.values():
        for k, v in DEFAULTS.items():
            s.setdefault(k, copy.deepcopy(v))
        if _int(s["chunk_bytes"]):
            s["chunk_bytes"] = [s["chunk_bytes"]]
    return scripts


# ---- records ---------------------------------------------------------------

def _r(x):
    return round(x, 4)


class Registry(records.Registry):
    """The WebSocket connections and the HTTP requests."""

    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.connections = []
        self.requests = []

    def new_record(self, http):
        rec = Record(self, self.take_id(), http)
        (self.requests if http else self.connections).append(rec)
        rec.touch()
        return rec


    def snapshot(self):
        return {"version": self.version,
                "connections": [r.data for r in self.connections],
                "requests": [r.data for r in self.requests]}



class Record(records.Record):
    """What one connection (WebSocket) or request (HTTP) did, as JSON."""

    def __init__(self, registry, rid, http):
        super().__init__(registry, "%s-%d" % ("request" if http else "conn",
                                              rid))
        self.data = {
            "id": rid,
            "provider": None,
            "script": None,
            "started": records.now_iso(),
            "wall": time.time(),
            "remote": None,
            "method": None,
            "path": None,
            "query": [],
            "params": {},
            "mock_params": {},
            "headers": {},
            "auth": None,
            "auth_style": None,
            "notes": [],
            "handshake": None,
            "messages": [],
            "phrases": [],
            "sent": [],
            "faults": [],
            "violations": [],
            "finished": False,
        }

    def violation(self, what, **extra):
        v = {"t": self.t(), "wall": time.time(), "what": what}
        v.update(extra)
        self.data["violations"].append(v)
        self.touch()

    def note(self, what):
        self.data["notes"].append(what)
        self.touch()

    def fault(self, what, **extra):
        f = {"t": self.t(), "wall": time.time(), "fault": what}
        f.update(extra)
        self.data["faults"].append(f)
        self.touch()

    def sent(self, kind, wall, **fields):
        e = {"t": self.t(), "wall": wall, "type": kind}
        e.update(fields)
        self.data["sent"].append(e)
        self.touch()

    def finish(self):
        if self.data["finished"]:
            return
        self.data["finished"] = True
        self.data["finished_t"] = self.t()
        self.registry.bump()
        self.flush()


def redact(value):
    scheme, sep, cred = value.partition(" ")
    if not sep:
        return "<%d bytes, not recorded>" % len(value)
    return "%s <%d bytes, not recorded>" % (scheme, len(cred))


SECRET_HEADERS = ("authorization", "x-api-key", "xi-api-key")


def record_headers(rec, headers):
    out = {}
    for name, value in headers:
        key = name.lower()
        if key in SECRET_HEADERS:
            value = redact(value)
        out[key] = out[key] + ", " + value if key in out else value
    rec.data["headers"] = out


# ---- a phrase and its player -----------------------------------------------

class Phrase:
    """One piece of text to speak: its tone, its samples and its fate."""

    def __init__(self, rec, n, text, rate, script, speed=1.0, context=None):
        self.n = n
        self.text = text
        self.rate = rate
        self.freq = tone_freq(n, text)
        self.samples = phrase_samples(text, rate, script["ms_per_char"],
                                      speed)
        self.data = {"n": n, "context": context, "text": text,
                     "chars": len(text), "hash": text_hash(text),
                     "freq": self.freq, "rate": rate,
                     "samples": self.samples,
                     "duration": _r(self.samples / rate),
                     "queued_t": rec.t(), "first_chunk_wall": None,
                     "last_chunk_wall": None, "chunks": 0,
                     "samples_sent": 0, "state": "queued"}
        rec.data["phrases"].append(self.data)
        rec.touch()

    def pcm(self, script):
        return synth(self.freq, self.samples, self.rate, script["amplitude"])


FAULT_KINDS = ("stall", "error", "close", "drop")


class Scope:
    """What a script's chunk counters count over: a Cartesia context, an
    ElevenLabs connection, an OpenAI request."""

    def __init__(self, script_name, script):
        self.script_name = script_name
        self.script = script
        self.chunks = 0
        self.cancelled = False
        self.lag_left = 0
        # OpenAI counts HTTP chunks, which its emit() checks itself
        self.faults_in_emit = False


async def sleep_until(loop, when):
    left = when - loop.time()
    if left > 0:
        await asyncio.sleep(left)


# ---- WebSocket connection plumbing -----------------------------------------

class WS:
    """A WebSocket over asyncio streams, with websockets' sans-I/O
    connection doing the framing and its checks."""

    def __init__(self, peer, rec, conn):
        self.peer = peer
        self.rec = rec
        self.conn = conn
        self.gone = asyncio.Event()     # the TCP connection is over
        self.stalled = False
        self.dropped = False
        self.our_close = None
        self.fragments = None
        self.withheld = 0

    def flush(self):
        w = self.peer.writer
        for data in self.conn.data_to_send():
            if data == SEND_EOF:
                # the closing handshake is done: the server closes TCP
                try:
                    w.close()
                except Exception:
                    pass
            else:
                try:
                    w.write(data)
                except Exception:
                    pass

    def can_send(self):
        return (self.conn.state is OPEN and not self.gone.is_set()
                and self.our_close is None)

    async def send_json(self, obj):
        """Sends one text frame; False when it could not be sent."""
        if self.stalled:
            self.withheld += 1
            return False
        if not self.can_send():
            return False
        self.conn.send_text(json.dumps(obj, separators=(",", ":")).encode())
        self.flush()
        try:
            await self.peer.writer.drain()
        except (ConnectionError, OSError):
            pass
        return True

    def close(self, code, reason):
        if not self.can_send():
            return
        self.our_close = {"t": self.rec.t(), "code": code, "reason": reason}
        self.conn.send_close(code, reason[:MAX_REASON])
        self.flush()
        asyncio.get_running_loop().call_later(5.0, self.abort)

    def abort(self):
        try:
            self.peer.writer.transport.abort()
        except Exception:
            pass

    def drop(self):
        """A TCP reset, with no close frame."""
        self.dropped = True
        sock = self.peer.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        self.abort()

    async def run(self, on_text, on_binary):
        """Reads until the connection ends; calls on_text(str, wall) for
        each text message and on_binary(bytes, wall) for each binary one."""
        data = bytes(self.peer.buf)
        self.peer.buf.clear()
        eof = False
        seen_exc = None
        try:
            while True:
                if data:
                    self.conn.receive_data(data)
                if eof:
                    self.conn.receive_eof()
                for ev in self.conn.events_received():
                    self.frame(ev, on_text, on_binary)
                self.flush()
                exc = self.conn.parser_exc
                if exc is not None and exc is not seen_exc and \
                        not isinstance(exc, EOFError):
                    seen_exc = exc
                    self.rec.violation("websocket framing: %s" % exc)
                if eof:
                    break
                try:
                    data = await self.peer.reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                eof = not data
        except EOFError:
            pass
        finally:
            self.gone.set()
            self.record_close()
            try:
                self.peer.writer.close()
            except Exception:
                pass

    def frame(self, ev, on_text, on_binary):
        wall = time.time()
        if ev.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.fragments = (ev.opcode, bytearray(ev.data))
        elif ev.opcode == Opcode.CONT and self.fragments is not None:
            self.fragments[1].extend(ev.data)
        else:
            return
        if not ev.fin:
            return
        opcode, payload = self.fragments
        self.fragments = None
        if self.our_close is not None:
            self.rec.data.setdefault("ignored_after_close", 0)
            self.rec.data["ignored_after_close"] += 1
            return
        if opcode == Opcode.BINARY:
            on_binary(bytes(payload), wall)
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.rec.violation("text message not UTF-8: %s" % exc)
            self.conn.fail(1007, "invalid UTF-8")
            return
        on_text(text, wall)

    def record_close(self):
        c = self.conn
        rcvd = c.close_rcvd
        sent = c.close_sent
        self.rec.data["close"] = {
            "t": self.rec.t(),
            "wall": time.time(),
            "first": ("server" if self.our_close is not None or (
                sent is not None and not c.close_rcvd_then_sent)
                else "client" if rcvd is not None else None),
            "client_frame": (None if rcvd is None else
                             {"code": rcvd.code, "reason": rcvd.reason}),
            "server_frame": (None if sent is None else
                             {"code": sent.code, "reason": sent.reason}),
            "dropped_by_mock": self.dropped,
            "tcp_without_close": rcvd is None and not self.dropped,
        }
        if self.withheld:
            self.rec.data["withheld_while_stalled"] = self.withheld
        self.rec.touch()


# ---- sessions --------------------------------------------------------------

class Session:
    """What the three providers share: phrase numbering, the player."""

    def __init__(self, mock, rec):
        self.mock = mock
        self.rec = rec
        self.next_n = 0
        self.loop = asyncio.get_running_loop()

    def new_phrase(self, text, rate, script, speed=1.0, context=None):
        ph = Phrase(self.rec, self.next_n, text, rate, script, speed,
                    context)
        self.next_n += 1
        return ph

    def script_from_text(self, text, provider):
        """A `mock:NAME` prefix: (name or None, text without it).  A
        sequence counts the uses of the same text (a retry)."""
        m = TEXT_PREFIX_RE.match(text)
        if not m:
            return None, text
        name = self.mock.pick(m.group(1), (provider, text.strip()))
        return name, text[m.end():]

    async def play(self, ph, scope, emit, fault):
        """Sends phrase ph in chunks through emit(pcm_bytes, samples),
        paced by the script, acting out its faults through fault(kind)."""
        s = scope.script
        start = self.loop.time()
        await asyncio.sleep(s["first_audio"])
        pcm = ph.pcm(s)
        per = max(1, int(round(ph.rate * s["chunk_ms"] / 1000.0)))
        sent = 0
        ph.data["state"] = "playing"
        while sent < ph.samples:
            if s["rtf"] > 0:
                await sleep_until(self.loop, start + s["first_audio"]
                                  + sent / ph.rate / s["rtf"])
            if scope.cancelled:
                if scope.lag_left <= 0:
                    ph.data["state"] = "cancelled"
                    self.rec.touch()
                    return False
                scope.lag_left -= 1
            for kind in FAULT_KINDS:
                if not scope.faults_in_emit and \
                        s.get(kind + "_after") == scope.chunks:
                    ph.data["state"] = kind
                    await fault(kind, ph)
                    return False
            n = min(per, ph.samples - sent)
            if not await emit(pcm[2 * sent:2 * (sent + n)], n, sent):
                ph.data["state"] = "unsent"
                self.rec.touch()
                return False
            wall = time.time()
            if ph.data["first_chunk_wall"] is None:
                ph.data["first_chunk_wall"] = wall
            ph.data["last_chunk_wall"] = wall
            ph.data["chunks"] += 1
            ph.data["samples_sent"] += n
            scope.chunks += 1
            sent += n
        ph.data["state"] = "complete"
        self.rec.touch()
        return True


def _bad_type(obj, key, kind):
    return key in obj and not isinstance(obj[key], kind)


class CartesiaSession(Session):

    def __init__(self, mock, rec, ws, script_name):
        super().__init__(mock, rec)
        self.ws = ws
        self.script_name = script_name
        self.script = mock.scripts[script_name]
        self.contexts = {}
        rec.data["contexts"] = {}

    def violation(self, what, context=None, reply=True, script=None):
        self.rec.violation(what, context=context)
        s = script or self.script
        if reply and s["violations"] == "reply":
            self.spawn(self.ws.send_json({
                "type": "error", "context_id": context, "status_code": 400,
                "done": True, "title": "Invalid request", "message": what}))

    def spawn(self, coro):
        return asyncio.ensure_future(coro)

    def on_binary(self, data, wall):
        self.rec.data["messages"].append(
            {"t": self.rec.t(), "wall": wall, "binary": len(data)})
        self.violation("binary frame (Cartesia takes only text JSON)")

    def on_text(self, text, wall):
        entry = {"t": self.rec.t(), "wall": wall}
        self.rec.data["messages"].append(entry)
        try:
            msg = json.loads(text)
        except ValueError:
            entry["raw"] = text[:2000]
            self.violation("not JSON: %r" % text[:80])
            return
        entry["msg"] = msg
        self.rec.touch()
        if not isinstance(msg, dict):
            self.violation("not a JSON object")
            return
        cid = msg.get("context_id")
        if not isinstance(cid, str) or not cid:
            self.violation("context_id must be a non-empty string",
                           context=cid if isinstance(cid, str) else None)
            return
        if "cancel" in msg:
            self.cancel(msg, cid, wall)
        else:
            self.request(msg, cid)

    def cancel(self, msg, cid, wall):
        if msg["cancel"] is not True:
            self.violation("cancel must be true", cid)
            return
        extra = sorted(set(msg) - {"context_id", "cancel"})
        if extra:
            self.rec.note("cancel with extra fields %s" % extra)
        ctx = self.contexts.get(cid)
        entry = {"context": cid, "t": self.rec.t(), "wall": wall}
        self.rec.data.setdefault("cancels", []).append(entry)
        if ctx is None:
            self.rec.note("cancel of unknown context %s" % cid)
            entry["state"] = "unknown"
            return
        c = ctx["data"]
        entry["state"] = c["state"]
        if c["state"] == "cancelled":
            self.rec.note("context %s cancelled twice" % cid)
            return
        if c["state"] == "done":
            return              # a race with done: not the client's fault
        c["state"] = "cancelled"
        c["cancel_t"] = self.rec.t()
        c["cancel_wall"] = wall
        c["chunks_after_cancel"] = 0
        scope = ctx["scope"]
        scope.cancelled = True
        scope.lag_left = scope.script["cancel_lag"]
        for ph in ctx["queued"]:
            ph.data["state"] = "cancelled"
        if scope.lag_left <= 0:
            ctx["task"].cancel()
        self.rec.touch()

    def request(self, msg, cid):
        problems = []
        for k in ("model_id", "transcript", "language"):
            if _bad_type(msg, k, str):
                problems.append("%s must be a string" % k)
        for k in ("continue", "add_timestamps", "add_phoneme_timestamps",
                  "use_normalized_timestamps", "flush"):
            if _bad_type(msg, k, bool):
                problems.append("%s must be a boolean" % k)
        if "transcript" not in msg:
            problems.append("transcript missing")
        if "language" in msg and isinstance(msg["language"], str) and \
                not LANGUAGE_RE.match(msg["language"]):
            problems.append("language %r is not a language code"
                            % msg["language"])
        mbd = msg.get("max_buffer_delay_ms")
        if mbd is not None and (not _int(mbd) or not 0 <= mbd <= 5000):
            problems.append("max_buffer_delay_ms must be an integer 0..5000")
        unknown = sorted(set(msg) - CARTESIA_KEYS)
        if unknown:
            self.rec.note("unknown request fields %s" % unknown)
        ending = (msg.get("transcript") == ""
                  and msg.get("continue") is False)
        need = ("model_id", "voice", "output_format")
        for k in need:
            if k not in msg and not ending:
                problems.append("%s missing" % k)
        if "model_id" in msg and msg.get("model_id") == "":
            problems.append("model_id empty")
        v = msg.get("voice")
        if "voice" in msg and (not isinstance(v, dict)
                               or v.get("mode") != "id"
                               or not isinstance(v.get("id"), str)
                               or not v.get("id")):
            problems.append("voice must be {mode:\"id\", id:<string>}")
        of = msg.get("output_format")
        if "output_format" in msg:
            if not isinstance(of, dict):
                problems.append("output_format must be an object")
            else:
                if of.get("container") != "raw":
                    problems.append("output_format.container must be raw")
                if of.get("encoding") != "pcm_s16le":
                    problems.append("output_format.encoding must be "
                                    "pcm_s16le")
                if not _int(of.get("sample_rate")) or \
                        of["sample_rate"] not in CARTESIA_RATES:
                    problems.append("output_format.sample_rate %r not one "
                                    "of %s" % (of.get("sample_rate"),
                                               list(CARTESIA_RATES)))
        ctx = self.contexts.get(cid)
        if ctx is not None:
            st = ctx["data"]["state"]
            if st in ("ending", "done"):
                problems.append("request on context %s after it ended"
                                % cid)
            elif st == "cancelled":
                problems.append("request on context %s after it was "
                                "cancelled" % cid)
            else:
                first = ctx["first"]
                for k in need:
                    if k in msg and msg[k] != first.get(k):
                        problems.append("%s changed within context %s"
                                        % (k, cid))
        if problems:
            for p in problems[:-1]:
                self.violation(p, cid, reply=False)
            self.violation(problems[-1], cid,
                           script=ctx["scope"].script if ctx else None)
            return
        if ctx is None and "output_format" not in msg:
            # an end with nothing before it: nothing to say, done at once
            self.rec.note("context %s ended before it began" % cid)
            self.spawn(self.ws.send_json({"type": "done", "context_id": cid,
                                          "status_code": 206, "done": True}))
            return
        if ctx is None:
            ctx = self.open_context(cid, msg)
        text = msg["transcript"]
        if ctx["scope"].script_name is None:
            name, text = self.script_from_text(text, "cartesia")
            if not self.set_context_script(ctx, name):
                return
        elif TEXT_PREFIX_RE.match(text):
            name, text = self.script_from_text(text, "cartesia")
            self.rec.note("mock:%s prefix after the first phrase of "
                          "context %s: ignored" % (name, cid))
        text = text.strip()
        if text:
            ctx["phrases_seen"] += 1
            ph = self.new_phrase(text, ctx["rate"], ctx["scope"].script,
                                 context=cid)
            ctx["data"]["phrases"].append(ph.n)
            ctx["queued"].append(ph)
            ctx["queue"].put_nowait(ph)
        if msg.get("continue") is not True:
            ctx["data"]["state"] = "ending"
            ctx["data"]["ended_t"] = self.rec.t()
            ctx["queue"].put_nowait(None)
        self.rec.touch()

    def open_context(self, cid, msg):
        data = {"state": "open", "first_t": self.rec.t(), "phrases": [],
                "script": None, "ended_t": None, "cancel_t": None,
                "cancel_wall": None, "chunks": 0, "last_chunk_wall": None,
                "chunks_after_cancel": None, "done_wall": None,
                "timestamps": bool(msg.get("add_timestamps")),
                "sample_rate": msg["output_format"]["sample_rate"]}
        self.rec.data["contexts"][cid] = data
        ctx = {"data": data, "first": msg, "queue": asyncio.Queue(),
               "queued": [], "phrases_seen": 0,
               "rate": msg["output_format"]["sample_rate"],
               "scope": Scope(None, None), "audio_t": 0.0}
        self.contexts[cid] = ctx
        ctx["task"] = self.spawn(self.worker(cid, ctx))
        return ctx

    def set_context_script(self, ctx, name):
        if name is None:
            name = self.script_name
        if name not in self.mock.scripts:
            self.violation("unknown mock script %r" % name,
                           ctx["first"]["context_id"])
            ctx["data"]["state"] = "done"
            ctx["task"].cancel()
            return False
        ctx["scope"].script_name = name
        ctx["scope"].script = self.mock.scripts[name]
        ctx["data"]["script"] = name
        return True

    async def worker(self, cid, ctx):
        data = ctx["data"]
        scope = ctx["scope"]
        try:
            while True:
                ph = await ctx["queue"].get()
                if ph is None:
                    break
                ctx["queued"].remove(ph)
                ctx["current"] = ph

                async def emit(pcm, samples, offset, ph=ph):
                    return await self.chunk(cid, ctx, ph, pcm, samples,
                                            offset)
                ok = await self.play(ph, scope,
                                     emit, self.fault)
                if not ok:
                    return
                ctx["audio_t"] += ph.samples / ph.rate
            if data["state"] != "cancelled" and \
                    await self.ws.send_json({"type": "done",
                                             "context_id": cid,
                                             "status_code": 206,
                                             "done": True}):
                data["state"] = "done"
                data["done_wall"] = time.time()
                self.rec.sent("done", data["done_wall"], context=cid)
        except asyncio.CancelledError:
            ph = ctx.get("current")
            if ph is not None and ph.data["state"] in ("queued", "playing"):
                ph.data["state"] = "cancelled"
                self.rec.touch()

    async def chunk(self, cid, ctx, ph, pcm, samples, offset):
        data = ctx["data"]
        msg = {"type": "chunk", "context_id": cid, "status_code": 206,
               "done": False, "step_time": 0.001,
               "data": base64.b64encode(pcm).decode()}
        wall = time.time()
        if not await self.ws.send_json(msg):
            return False
        self.rec.sent("chunk", wall, context=cid, phrase=ph.n,
                      samples=samples, offset=offset)
        data["chunks"] += 1
        data["last_chunk_wall"] = wall
        if data["state"] == "cancelled":
            data["chunks_after_cancel"] += 1
        if offset == 0 and data["timestamps"]:
            await self.timestamps(cid, ctx, ph)
        return True

    async def timestamps(self, cid, ctx, ph):
        words = ph.text.split()
        total = sum(len(w) for w in words) or 1
        dur = ph.samples / ph.rate
        t = ctx["audio_t"]
        starts, ends = [], []
        for w in words:
            starts.append(round(t, 3))
            t += dur * len(w) / total
            ends.append(round(t, 3))
        wall = time.time()
        if await self.ws.send_json({
                "type": "timestamps", "context_id": cid, "status_code": 206,
                "done": False, "word_timestamps": {
                    "words": words, "start": starts, "end": ends}}):
            self.rec.sent("timestamps", wall, context=cid, phrase=ph.n)

    async def fault(self, kind, ph):
        cid = ph.data["context"]
        s = self.contexts[cid]["scope"].script
        self.rec.fault(kind, context=cid, phrase=ph.n)
        if kind == "stall":
            self.ws.stalled = True
            await self.ws.gone.wait()
        elif kind == "error":
            wall = time.time()
            if await self.ws.send_json({
                    "type": "error", "context_id": cid, "status_code": 500,
                    "done": True, "title": "Internal Server Error",
                    "message": s["error_message"]}):
                self.rec.sent("error", wall, context=cid)
            self.contexts[cid]["data"]["state"] = "done"
        elif kind == "close":
            self.ws.close(s["close_code"], s["close_reason"])
        elif kind == "drop":
            self.ws.drop()

    def stop(self):
        for ctx in self.contexts.values():
            ctx["task"].cancel()


class ElevenSession(Session):

    def __init__(self, mock, rec, ws, script_name, rate, timeout):
        super().__init__(mock, rec)
        self.ws = ws
        self.scope = Scope(None, None)
        self.default_name = script_name
        self.rate = rate
        self.timeout = timeout
        self.buffer = ""
        self.first = None
        self.ended = False
        self.schedule = list(ELEVEN_SCHEDULE)
        self.generations = 0
        self.queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self.worker())
        self.idle = None
        self.arm_idle()

    def arm_idle(self):
        if self.idle is not None:
            self.idle.cancel()
        if self.timeout is not None and not self.ended:
            self.idle = self.loop.call_later(self.timeout, self.idle_close)

    def idle_close(self):
        self.rec.data["idle_close"] = {"t": self.rec.t(),
                                       "timeout": self.timeout}
        self.ws.close(1008, "Have not received a new text input within "
                      "the timeout of %gs" % self.timeout)

    def violation(self, what):
        self.rec.violation(what)
        s = self.scope.script or self.mock.scripts[self.default_name]
        if s["violations"] == "reply":
            self.ws.close(1008, "mock violation: " + what)

    def on_binary(self, data, wall):
        self.rec.data["messages"].append(
            {"t": self.rec.t(), "wall": wall, "binary": len(data)})
        self.violation("binary frame (stream-input takes only text JSON)")

    def on_text(self, text, wall):
        entry = {"t": self.rec.t(), "wall": wall}
        self.rec.data["messages"].append(entry)
        self.arm_idle()
        try:
            msg = json.loads(text)
        except ValueError:
            entry["raw"] = text[:2000]
            self.violation("not JSON: %r" % text[:80])
            return
        entry["msg"] = msg
        self.rec.touch()
        if not isinstance(msg, dict):
            self.violation("not a JSON object")
            return
        if self.ended:
            self.violation("message after the end of input ({\"text\":\"\"})")
            return
        if not isinstance(msg.get("text"), str):
            self.violation("text must be a string")
            return
        if self.first is None:
            self.first = msg
            self.opening(msg)
            return
        bad = sorted(set(msg) - ELEVEN_LATER_KEYS)
        if bad:
            self.violation("fields %s are only for the first message" % bad
                           if set(bad) & ELEVEN_FIRST_KEYS else
                           "unknown fields %s" % bad)
            return
        for k in ("flush", "try_trigger_generation"):
            if _bad_type(msg, k, bool):
                self.violation("%s must be a boolean" % k)
                return
        text = msg["text"]
        if text == "":
            self.ended = True
            if self.idle is not None:
                self.idle.cancel()
            self.generate("end")
            self.queue.put_nowait(None)
            return
        if text == " " and not msg.get("flush"):
            self.rec.data["keepalives"] = self.rec.data.get(
                "keepalives", 0) + 1
            return
        if not text.endswith(" "):
            self.violation("text chunk %r does not end with a space"
                           % text[-40:])
            return
        if self.scope.script_name is None and not self.buffer.strip():
            name, text = self.script_from_text(text, "elevenlabs")
            if not self.set_script(name):
                return
        self.buffer += text
        if msg.get("flush"):
            self.generate("flush")
        elif len(self.buffer.strip()) >= self.threshold():
            self.generate("schedule")

    def threshold(self):
        return self.schedule[min(self.generations, len(self.schedule) - 1)]

    def set_script(self, name):
        if name is None:
            name = self.default_name
        if name not in self.mock.scripts:
            self.violation("unknown mock script %r" % name)
            return False
        self.scope.script_name = name
        self.scope.script = self.mock.scripts[name]
        self.rec.data["script"] = name
        return True

    def opening(self, msg):
        if msg["text"] != " ":
            self.violation("the first message's text must be a single "
                           "space, got %r" % msg["text"][:40])
            return
        bad = sorted(set(msg) - ELEVEN_FIRST_KEYS)
        if bad:
            self.rec.note("unknown first-message fields %s" % bad)
        vs = msg.get("voice_settings")
        if vs is not None:
            if not isinstance(vs, dict):
                self.violation("voice_settings must be an object")
                return
            for k, lo, hi in (("stability", 0, 1), ("similarity_boost", 0, 1),
                              ("style", 0, 1), ("speed", 0.7, 1.2)):
                if k in vs and (not _num(vs[k]) or not lo <= vs[k] <= hi):
                    self.violation("voice_settings.%s must be %g..%g"
                                   % (k, lo, hi))
                    return
            if _bad_type(vs, "use_speaker_boost", bool):
                self.violation("voice_settings.use_speaker_boost must be "
                               "a boolean")
                return
        gc = msg.get("generation_config")
        if gc is not None:
            cls = gc.get("chunk_length_schedule") if isinstance(gc, dict) \
                else None
            if not isinstance(cls, list) or not cls or not all(
                    _int(x) and 50 <= x <= 500 for x in cls):
                self.violation("generation_config.chunk_length_schedule "
                               "must be integers 50..500")
                return
            self.schedule = list(cls)
        if "xi_api_key" in msg or "authorization" in msg:
            self.rec.note("credential in the first message")

    def generate(self, why):
        text = self.buffer.strip()
        self.buffer = ""
        if not text:
            if why == "flush":
                self.rec.note("flush with nothing to say")
            return
        if self.scope.script is None and not self.set_script(None):
            return
        self.generations += 1
        ph = self.new_phrase(text, self.rate, self.scope.script)
        ph.data["trigger"] = why
        self.queue.put_nowait(ph)

    async def worker(self):
        try:
            while True:
                ph = await self.queue.get()
                if ph is None:
                    break

                async def emit(pcm, samples, offset, ph=ph):
                    return await self.audio(ph, pcm, samples, offset)
                if not await self.play(ph, self.scope, emit, self.fault):
                    return
            wall = time.time()
            if await self.ws.send_json({"isFinal": True}):
                self.rec.sent("final", wall)
                self.ws.close(1000, "")
        except asyncio.CancelledError:
            pass

    async def audio(self, ph, pcm, samples, offset):
        msg = {"audio": base64.b64encode(pcm).decode(), "isFinal": False,
               "normalizedAlignment": None, "alignment": None}
        if offset == 0:
            per = ph.samples / ph.rate * 1000.0 / len(ph.text)
            al = {"chars": list(ph.text),
                  "charStartTimesMs": [int(round(i * per))
                                       for i in range(len(ph.text))],
                  "charDurationsMs": [int(round(per))] * len(ph.text)}
            msg["alignment"] = al
            msg["normalizedAlignment"] = al
        wall = time.time()
        if not await self.ws.send_json(msg):
            return False
        self.rec.sent("audio", wall, phrase=ph.n, samples=samples,
                      offset=offset)
        return True

    async def fault(self, kind, ph):
        s = self.scope.script
        self.rec.fault(kind, phrase=ph.n)
        if kind == "stall":
            self.ws.stalled = True
            await self.ws.gone.wait()
        elif kind == "error":
            wall = time.time()
            if await self.ws.send_json({"message": s["error_message"],
                                        "error": "internal_error",
                                        "code": 1011}):
                self.rec.sent("error", wall)
            self.ws.close(1011, s["error_message"])
        elif kind == "close":
            self.ws.close(s["close_code"], s["close_reason"])
        elif kind == "drop":
            self.ws.drop()

    def stop(self):
        self.task.cancel()
        if self.idle is not None:
            self.idle.cancel()


# ---- HTTP side -------------------------------------------------------------

class Peer:
    """One TCP connection with our own read buffer, so that a request head
    read here can be handed on whole to the WebSocket layer."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.eof = False
        self.eof_wall = None
        self.gone = asyncio.Event()

    async def fill(self):
        try:
            data = await self.reader.read(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            self.eof_wall = time.time()
            self.gone.set()
            return False
        self.buf += data
        return True

    async def read_head(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise ValueError("request head too long")
            if self.eof or not await self.fill():
                return None

    async def read_exact(self, n):
        while len(self.buf) < n:
            if self.eof or not await self.fill():
                raise ValueError("body cut short")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if self.eof or not await self.fill():
                raise ValueError("body cut short")

    async def write(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def simple(self, status, ctype, body, headers=(), close=False):
        head = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status")),
                "Date: " + email.utils.formatdate(usegmt=True),
                "Content-Type: " + ctype,
                "Content-Length: %d" % len(body)]
        head += ["%s: %s" % kv for kv in headers]
        if close:
            head.append("Connection: close")
        await self.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)


class Head:
    def __init__(self, raw):
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("bad request line %r" % lines[0][:80])
        self.method, self.target, self.version = parts
        self.headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line")
            self.headers.append((name.strip(), value.strip()))
        self.url = urllib.parse.urlsplit(self.target)

    def get_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def get(self, name):
        v = self.get_all(name)
        return v[0] if v else None


def openai_error(message, kind="invalid_request_error", code=None,
                 param=None):
    return json.dumps({"error": {"message": message, "type": kind,
                                 "param": param, "code": code}}).encode()


class Mock:

    def __init__(self, args, scripts):
        self.args = args
        self.scripts = scripts
        self.registry = Registry(args.state_dir)
        self.sequences = {}
        self.openai_counts = {}
        self.sessions = set()

    def pick(self, spec, key):
        """The script named by spec.  A comma list is a sequence: the Nth
        use with the same key gets the Nth name, the last one repeats."""
        if "," not in spec:
            return spec
        names = [n.strip() for n in spec.split(",")]
        k = (key, spec)
        n = self.sequences.get(k, 0)
        self.sequences[k] = n + 1
        return names[min(n, len(names) - 1)]

    def connection_script(self, rec, head, mock_params):
        spec = (mock_params.get("mock_script") or head.get("X-Mock-Script")
                or "default")
        mid = mock_params.get("mock_id") or head.get("X-Mock-Id")
        name = self.pick(spec, ("id", mid) if mid else ("spec",))
        rec.data["script"] = name
        if "," in spec:
            names = [n.strip() for n in spec.split(",")]
            rec.data["script_sequence"] = names
            rec.data["script_index"] = self.sequences[
                (("id", mid) if mid else ("spec",), spec)] - 1
        return name

    async def on_connect(self, reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = Peer(reader, writer)
        try:
            while True:
                try:
                    raw = await peer.read_head()
                    if raw is None:
                        break
                    head = Head(raw)
                except ValueError as exc:
                    await peer.simple(400, "text/plain",
                                      (str(exc) + "\n").encode(), close=True)
                    break
                upgrade = "websocket" in ",".join(
                    head.get_all("Upgrade")).lower()
                if head.url.path == STATE_PATH and not upgrade:
                    await self.state(peer, head)
                    if _wants_close(head):
                        break
                    continue
                if upgrade:
                    await self.websocket(peer, head, raw)
                    return
                if not await self.plain(peer, head):
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def state(self, peer, head):
        q = dict(urllib.parse.parse_qsl(head.url.query))
        since = q.get("since")
        if since is not None:
            try:
                await self.registry.wait_change(int(since),
                                                float(q.get("timeout", 10)))
            except ValueError:
                await peer.simple(400, "text/plain",
                                  b"since and timeout must be numbers\n")
                return
        body = json.dumps(self.registry.snapshot()).encode()
        await peer.simple(200, "application/json", body,
                          [("Cache-Control", "no-store")])

    def begin(self, rec, peer, head):
        d = rec.data
        addr = peer.writer.get_extra_info("peername")
        d["remote"] = "%s:%s" % addr[:2] if addr else None
        d["method"] = head.method
        d["path"] = head.url.path
        pairs = urllib.parse.parse_qsl(head.url.query, keep_blank_values=True)
        d["query"] = [[k, v] for k, v in pairs]
        d["mock_params"] = {k: v for k, v in pairs if k.startswith("mock_")}
        record_headers(rec, head.headers)
        return [(k, v) for k, v in pairs if not k.startswith("mock_")]

    # -- the WebSocket providers --

    async def websocket(self, peer, head, raw):
        rec = self.registry.new_record(False)
        pairs = self.begin(rec, peer, head)
        d = rec.data
        conn = websockets.server.ServerConnection(
            max_size=self.args.max_size)
        problems = []
        status = 101
        m = ELEVEN_RE.match(head.url.path)
        if head.url.path == CARTESIA_PATH:
            d["provider"] = "cartesia"
            status, problems = self.cartesia_handshake(rec, head, pairs)
        elif m:
            d["provider"] = "elevenlabs"
            d["voice_id"] = urllib.parse.unquote(m.group(1))
            status, problems = self.eleven_handshake(rec, head, pairs)
        else:
            status, problems = 404, ["no such path %s" % head.url.path]
        name = self.connection_script(rec, head, d["mock_params"])
        if status == 101 and name not in self.scripts:
            status, problems = 400, ["unknown mock script %r" % name]
        script = self.scripts.get(name)
        if status == 101 and script.get("refuse"):
            status = script["refuse"]
            rec.fault("refuse_%d" % status)
        for p in problems:
            rec.violation(p)
        try:
            conn.receive_data(raw)
            request = conn.events_received()[0]
        except Exception as exc:
            status, problems = 400, ["bad upgrade request: %s" % exc]
            rec.violation(problems[0])
            request = None
        if status == 101:
            response = conn.accept(request)
            if response.status_code != 101:
                rec.violation("bad WebSocket handshake: %s"
                              % conn.handshake_exc)
                status = response.status_code
        else:
            reason = problems[-1] if problems else (
                script.get("refuse_body") or REASONS.get(status, "error"))
            response = conn.reject(_status(status), "")
            body = self.refusal_body(d["provider"], status, reason)
            response.headers["Content-Type"] = "application/json"
            del response.headers["Content-Length"]
            response.headers["Content-Length"] = str(len(body))
            response.body = body
        d["handshake"] = {"status": response.status_code,
                          "reason": None if status == 101 else (
                              problems[-1] if problems else "scripted")}
        conn.send_response(response)
        ws = WS(peer, rec, conn)
        ws.flush()
        try:
            await peer.writer.drain()
        except (ConnectionError, OSError):
            pass
        if response.status_code != 101:
            rec.finish()
            return
        if d["provider"] == "cartesia":
            session = CartesiaSession(self, rec, ws, name)
        else:
            session = ElevenSession(self, rec, ws, name, d["sample_rate"],
                                    d["inactivity_timeout"])
        self.sessions.add(session)
        try:
            await ws.run(session.on_text, session.on_binary)
        finally:
            session.stop()
            self.sessions.discard(session)
            rec.finish()

    @staticmethod
    def refusal_body(provider, status, reason):
        if provider == "elevenlabs":
            return json.dumps({"detail": {
                "status": ("invalid_api_key" if status == 401 else
                           "error_%d" % status),
                "message": reason}}).encode()
        return json.dumps({"error": reason, "status_code": status,
                           "title": REASONS.get(status, "Error")}).encode()

    def cartesia_handshake(self, rec, head, pairs):
        d = rec.data
        d["params"] = dict(pairs)
        if pairs:
            rec.note("query parameters %s" % sorted(k for k, _ in pairs))
        bearer = head.get_all("Authorization")
        xkey = head.get_all("X-API-Key")
        if bearer and xkey:
            rec.note("both Authorization and X-API-Key sent")
        styles = []
        if bearer:
            styles.append("bearer")
        if xkey:
            styles.append("x-api-key")
        d["auth_style"] = "+".join(styles) or None
        ok = True
        if not styles:
            d["auth"] = "missing"
        elif len(bearer) > 1 or len(xkey) > 1:
            d["auth"] = "repeated"
        else:
            good = all(v == "Bearer " + self.args.key for v in bearer) and \
                all(v == self.args.key for v in xkey)
            d["auth"] = "ok" if good else "wrong"
        if d["auth"] != "ok":
            return 401, ["credential %s" % d["auth"]]
        version = head.get_all("Cartesia-Version")
        d["version"] = version[0] if len(version) == 1 else None
        if len(version) != 1 or not CARTESIA_VERSION_RE.match(version[0]):
            ok = False
        if not ok:
            return 400, ["Cartesia-Version %s" % (
                "missing" if not version else "repeated" if len(version) > 1
                else "is not a date: %r" % version[0])]
        return 101, []

    def eleven_handshake(self, rec, head, pairs):
        d = rec.data
        problems = []
        keys = head.get_all("xi-api-key")
        d["auth_style"] = "xi-api-key" if keys else None
        d["auth"] = ("missing" if not keys else "repeated" if len(keys) > 1
                     else "ok" if keys[0] == self.args.key else "wrong")
        if d["auth"] != "ok":
            return 401, ["xi-api-key %s" % d["auth"]]
        params = {}
        for k, v in pairs:
            if k in params:
                problems.append("query parameter %s given twice" % k)
            params[k] = v
        d["params"] = params
        unknown = sorted(set(params) - ELEVEN_PARAMS)
        if unknown:
            rec.note("unknown query parameters %s" % unknown)
        if "model_id" not in params:
            rec.note("no model_id: the provider would pick its default")
        elif not params["model_id"]:
            problems.append("model_id empty")
        fmt = params.get("output_format")
        if fmt not in ELEVEN_FORMATS:
            problems.append("output_format %r is not one of %s" % (
                fmt, sorted(ELEVEN_FORMATS)) if fmt is not None else
                "output_format missing (the provider would send mp3)")
        d["sample_rate"] = ELEVEN_FORMATS.get(fmt)
        timeout = 20.0
        if "inactivity_timeout" in params:
            try:
                timeout = int(params["inactivity_timeout"])
                if not 1 <= timeout <= 180:
                    raise ValueError
            except ValueError:
                problems.append("inactivity_timeout must be 1..180 seconds")
        d["inactivity_timeout"] = timeout
        for k in ("sync_alignment", "auto_mode", "enable_logging",
                  "enable_ssml_parsing"):
            if k in params and params[k] not in ("true", "false"):
                problems.append("%s must be true or false" % k)
        if problems:
            return 400, problems
        return 101, []

    # -- OpenAI over HTTP --

    async def plain(self, peer, head):
        """Answers one plain request; False to close the connection."""
        rec = self.registry.new_record(True)
        self.begin(rec, peer, head)
        d = rec.data
        d["provider"] = "openai"
        d["status"] = None
        d["end"] = None
        d["client_closed"] = None
        keep = not _wants_close(head)
        try:
            body = await self.read_body(peer, head)
        except ValueError as exc:
            rec.violation(str(exc))
            d["status"] = 400
            d["end"] = "refused"
            rec.finish()
            await peer.simple(400, "text/plain", (str(exc) + "\n").encode(),
                              close=True)
            return False
        d["raw_body"] = body.decode("utf-8", "replace")[:10000]
        try:
            ok = await self.speech(peer, head, rec, body, keep)
        finally:
            rec.finish()
        return ok and keep

    async def read_body(self, peer, head):
        te = ",".join(head.get_all("Transfer-Encoding")).lower()
        cl = head.get_all("Content-Length")
        if "chunked" in te:
            body = bytearray()
            while True:
                line = await peer.read_line()
                try:
                    size = int(line.split(b";")[0], 16)
                except ValueError:
                    raise ValueError("bad chunk size line")
                if size == 0:
                    while await peer.read_line():
                        pass
                    return bytes(body)
                body += await peer.read_exact(size)
                if await peer.read_exact(2) != b"\r\n":
                    raise ValueError("bad chunk end")
                if len(body) > MAX_BODY:
                    raise ValueError("body too big")
        if len(cl) > 1:
            raise ValueError("Content-Length given twice")
        if cl:
            try:
                n = int(cl[0])
            except ValueError:
                raise ValueError("bad Content-Length")
            if not 0 <= n <= MAX_BODY:
                raise ValueError("bad Content-Length")
            return await peer.read_exact(n)
        return b""

    async def speech(self, peer, head, rec, raw, keep):
        d = rec.data

        async def refuse(status, message, code=None, param=None,
                         violation=True):
            if violation:
                rec.violation(message)
            d["status"] = status
            d["end"] = "refused"
            await peer.simple(status, "application/json",
                              openai_error(message, code=code, param=param,
                                           kind="invalid_request_error"
                                           if status < 500 else
                                           "server_error"),
                              close=not keep)
            return True

        if head.url.path != OPENAI_PATH:
            return await refuse(404, "no such path %s" % head.url.path,
                                code="unknown_url")
        if head.method != "POST":
            return await refuse(405, "method %s not allowed" % head.method)
        auth = head.get_all("Authorization")
        d["auth_style"] = "bearer" if auth else None
        d["auth"] = ("missing" if not auth else "repeated" if len(auth) > 1
                     else "ok" if auth[0] == "Bearer " + self.args.key
                     else "wrong")
        if d["auth"] != "ok":
            return await refuse(401, "Incorrect API key provided (%s)"
                                % d["auth"], code="invalid_api_key")
        ctype = (head.get("Content-Type") or "").split(";")[0].strip()
        if ctype.lower() != "application/json":
            return await refuse(400, "Content-Type must be application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            return await refuse(400, "the body is not JSON")
        d["body"] = body
        if not isinstance(body, dict):
            return await refuse(400, "the body is not a JSON object")
        problems = []
        unknown = sorted(set(body) - OPENAI_KEYS)
        if unknown:
            rec.note("unknown fields %s" % unknown)
        if body.get("model") not in OPENAI_MODELS:
            problems.append(("model", "model %r is not one of %s"
                             % (body.get("model"), list(OPENAI_MODELS))))
        text = body.get("input")
        if not isinstance(text, str) or not text:
            problems.append(("input", "input must be a non-empty string"))
        elif len(text) > OPENAI_MAX_INPUT:
            problems.append(("input", "input is %d characters, more than "
                             "%d" % (len(text), OPENAI_MAX_INPUT)))
        v = body.get("voice")
        if not (v in OPENAI_VOICES or (isinstance(v, dict) and isinstance(
                v.get("id"), str))):
            problems.append(("voice", "voice %r is not one of %s"
                             % (v, list(OPENAI_VOICES))))
        if body.get("response_format") != "pcm":
            problems.append(("response_format",
                             "response_format must be pcm (got %r; the "
                             "provider's default is mp3)"
                             % body.get("response_format")))
        speed = body.get("speed", 1.0)
        if not _num(speed) or not 0.25 <= speed <= 4.0:
            problems.append(("speed", "speed must be a number 0.25..4"))
        if body.get("stream_format", "audio") != "audio":
            problems.append(("stream_format", "stream_format must be audio "
                             "(sse would wrap the audio in events)"))
        if "instructions" in body:
            if not isinstance(body["instructions"], str):
                problems.append(("instructions", "instructions must be a "
                                 "string"))
            elif body.get("model") != "gpt-4o-mini-tts":
                rec.note("instructions are ignored by %s" % body.get("model"))
        if problems:
            for p, m in problems[:-1]:
                rec.violation(m)
            p, m = problems[-1]
            return await refuse(400, m, param=p)

        mid = d["mock_params"].get("mock_id") or head.get("X-Mock-Id")
        spec_m = TEXT_PREFIX_RE.match(text)
        if spec_m:
            name = self.pick(spec_m.group(1), ("openai", text.strip()))
            text = text[spec_m.end():]
        else:
            name = self.connection_script(rec, head, d["mock_params"])
        d["script"] = name
        if name not in self.scripts:
            return await refuse(400, "unknown mock script %r" % name)
        script = self.scripts[name]
        if script.get("refuse"):
            st = script["refuse"]
            rec.fault("refuse_%d" % st)
            return await refuse(st, script.get("refuse_body") or
                                REASONS.get(st, "error"),
                                code="invalid_api_key" if st == 401 else None,
                                violation=False)
        text = text.strip() or text
        key = ("id", mid) if mid else ("all",)
        n = self.openai_counts.get(key, 0)
        self.openai_counts[key] = n + 1
        session = Session(self, rec)
        session.next_n = n
        ph = session.new_phrase(text, OPENAI_RATE, script, speed)
        return await self.stream_pcm(peer, rec, session, ph, script, name,
                                     keep)

    async def stream_pcm(self, peer, rec, session, ph, script, name, keep):
        d = rec.data
        scope = Scope(name, script)
        scope.faults_in_emit = True
        w = peer.writer
        head = ["HTTP/1.1 200 OK",
                "Date: " + email.utils.formatdate(usegmt=True),
                "Content-Type: audio/pcm",
                "Transfer-Encoding: chunked",
                "openai-processing-ms: 1"]
        if not keep:
            head.append("Connection: close")
        d["status"] = 200
        wall = time.time()
        w.write(("\r\n".join(head) + "\r\n\r\n").encode())
        rec.sent("headers", wall)
        sizes = script["chunk_bytes"]
        state = {"pending": bytearray(), "offset": 0, "k": 0}
        watcher = asyncio.ensure_future(self.watch(peer, rec))

        async def out(data):
            wall = time.time()
            w.write(b"%x\r\n" % len(data) + data + b"\r\n")
            rec.sent("chunk", wall, phrase=ph.n, bytes=len(data),
                     offset=state["offset"])
            state["offset"] += len(data)
            await w.drain()

        async def emit(pcm, samples, offset):
            """Audio is paced in samples but cut in chunk_bytes pieces,
            whatever that does to sample boundaries."""
            if peer.eof:
                return False
            p = state["pending"]
            p += pcm
            last = offset + samples >= ph.samples
            while p:
                size = sizes[state["k"] % len(sizes)]
                if len(p) < size and not last:
                    break
                for kind in FAULT_KINDS:
                    if script.get(kind + "_after") == state["k"]:
                        ph.data["state"] = kind
                        await fault(kind, ph)
                        return False
                piece = bytes(p[:size])
                del p[:size]
                state["k"] += 1
                await out(piece)
            return not peer.eof

        async def fault(kind, ph):
            rec.fault(kind, phrase=ph.n)
            if kind == "stall":
                await peer.gone.wait()
            elif kind == "drop":
                sock = w.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                w.transport.abort()
            else:
                # an HTTP body cannot carry an error once it has begun:
                # the provider's failure is a body cut short
                w.close()
            state["fault"] = kind

        try:
            ok = await session.play(ph, scope, emit, fault)
            if ok and "fault" not in state:
                wall = time.time()
                w.write(b"0\r\n\r\n")
                await w.drain()
                rec.sent("end", wall, bytes=state["offset"])
                d["end"] = "complete"
                return True
            d["end"] = ("client_closed" if peer.eof and "fault" not in state
                        else state.get("fault", "aborted"))
            return False
        except (ConnectionError, OSError):
            d["end"] = "client_closed"
            return False
        finally:
            # the watcher must be gone before the next request is read
            watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                pass
            if peer.eof and d["client_closed"] is None and \
                    d["end"] != "complete":
                d["client_closed"] = peer.eof_wall
            d["bytes"] = state["offset"]

    async def watch(self, peer, rec):
        """Reads on while a response is being streamed, to see at once when
        the client hangs up (what it sends is kept for the next request)."""
        try:
            while not peer.eof:
                if not await peer.fill():
                    rec.data["client_closed"] = peer.eof_wall
                    rec.touch()
                    return
        except asyncio.CancelledError:
            pass


def _wants_close(head):
    return ("close" in ",".join(head.get_all("Connection")).lower()
            or head.version != "HTTP/1.1")


def _status(code):
    try:
        return http.HTTPStatus(code)
    except ValueError:
        return http.HTTPStatus.INTERNAL_SERVER_ERROR


async def main_async(args, scripts):
    loop = asyncio.get_running_loop()
    mock = Mock(args, scripts)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))
    server = await asyncio.start_server(mock.on_connect, args.host,
                                        args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    await stop
    server.close()
    for session in list(mock.sessions):
        session.ws.close(1001, "mock stopping")
        session.stop()
    for rec in mock.registry.connections + mock.registry.requests:
        if not rec.data["finished"]:
            rec.finish()
        else:
            rec.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--script", default=None,
                    help="JSON file: one script (the default), or "
                         "{\"scripts\": {...}, \"default\": NAME}")
    ap.add_argument("--max-size", type=int, default=1 << 20,
                    help="largest WebSocket message taken (default 1 MiB)")
    args = ap.parse_args()
    try:
        scripts = load_scripts(args.script)
    except (OSError, ValueError, ScriptError) as exc:
        print("tts mock: %s" % exc, file=sys.stderr)
        return 2
    os.makedirs(args.state_dir, exist_ok=True)
    asyncio.run(main_async(args, scripts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
