#!/usr/bin/python3
"""A Deepgram live transcription (listen v1) server for the module's tests.

It speaks the wire protocol of wss://api.deepgram.com/v1/listen over plain
ws:// on loopback, replies from a script driven by the audio it receives,
injects faults on demand, and checks everything the client sends.  What it
saw is kept per connection as JSON in --state-dir and served at
GET /_mock/state on the same port.  See README.md next to this file.

Needs only /usr/bin/python3 and Debian's python3-websockets (10.x, asyncio).
"""

import argparse
import asyncio
import copy
import hashlib
import http
import json
import os
import re
import signal
import ssl
import sys
import time
import urllib.parse
import uuid

import websockets
import websockets.exceptions
import websockets.legacy.server

import records

LISTEN_PATH = "/v1/listen"
STATE_PATH = "/_mock/state"

# Bytes per sample of the encodings whose audio clock can be derived from
# the byte count.  Compressed encodings only get their bytes counted.
SAMPLE_WIDTH = {"linear16": 2, "linear32": 4, "mulaw": 1, "alaw": 1}

ENCODINGS = ("linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb",
             "amr-wb", "opus", "ogg-opus", "speex", "g729")

BOOLEAN_PARAMS = ("detect_entities", "diarize", "dictation", "interim_results",
                  "mip_opt_out", "multichannel", "numerals",
                  "profanity_filter", "punctuate", "smart_format",
                  "vad_events")

# Parameters that may legitimately appear more than once.
REPEATABLE_PARAMS = ("extra", "keyterm", "keywords", "redact", "replace",
                     "search", "tag")

OTHER_PARAMS = ("callback", "callback_method", "channels", "diarize_model",
                "encoding", "endpointing", "language", "model", "sample_rate",
                "utterance_end_ms", "version")

KNOWN_PARAMS = set(BOOLEAN_PARAMS + REPEATABLE_PARAMS + OTHER_PARAMS)

CONTROL_TYPES = ("KeepAlive", "Finalize", "CloseStream")

# Scripted events that act on the connection rather than send a message.
IMMEDIATE_EVENTS = ("close", "drop", "stall", "pause_reading")

LANGUAGE_RE = re.compile(r"^(multi|[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")

DEFAULT_MODEL = {
    "name": "general-nova-3",
    "version": "2025-01-01.0",
    "arch": "nova-3",
    "uuid": "00000000-0000-4000-8000-00000000d6a3",
}

# A close reason must fit a control frame: 125 bytes minus the code.
MAX_REASON = 123


# ---- scripts -------------------------------------------------------------

EVENT_KEYS = {
    "Results": {"transcript", "words", "is_final", "speech_final",
                "from_finalize", "start", "duration", "confidence",
                "channel"},
    "SpeechStarted": {"timestamp", "channel"},
    "UtteranceEnd": {"last_word_end", "channel"},
    "Metadata": set(),
    "raw": {"text"},
    "binary": {"hex"},
    "malformed": {"text"},
    "close": {"code", "reason"},
    "drop": set(),
    "stall": set(),
    "pause_reading": {"seconds"},
}
EVENT_COMMON = {"type", "at", "at_bytes", "delay", "force"}

SCRIPT_KEYS = {"description", "handshake", "expect_query", "strict_params",
               "violations", "idle_timeout", "request_id", "model",
               "json_style", "events", "finalize", "close_stream"}
HANDSHAKE_KEYS = {"status", "body", "headers"}
FINALIZE_KEYS = {"reply", "speech_final", "send_empty", "delay", "events"}
CLOSE_STREAM_KEYS = {"reply", "flush", "send_empty", "from_finalize",
                     "speech_final", "metadata", "close_code", "close_reason",
                     "delay", "events"}

BUILTIN_SCRIPTS = {
    "default": {
        "description": "no transcripts; answers Finalize and CloseStream",
    },
    "hello": {
        "description": "one utterance: 'Hello world.'",
        "events": [
            {"at": 0.1, "type": "SpeechStarted"},
            {"at": 0.5, "type": "Results", "transcript": "hello"},
            {"at": 1.0, "type": "Results", "transcript": "Hello world.",
             "is_final": True, "speech_final": True},
            {"at": 2.0, "type": "UtteranceEnd"},
        ],
    },
    "refuse_401": {"handshake": {"status": 401}},
    "refuse_500": {"handshake": {"status": 500}},
    "drop_after_1s": {"events": [{"at": 1.0, "type": "drop"}]},
    "stall_after_0.5s": {"events": [{"at": 0.5, "type": "stall"}]},
    "malformed": {"events": [{"at": 0.2, "type": "malformed"}]},
    "net0001_at_1s": {
        "events": [{"at": 1.0, "type": "close", "code": 1011,
                    "reason": "NET-0001"}],
    },
    "slow_reader": {
        "events": [{"at": 0.1, "type": "pause_reading", "seconds": 2.0}],
    },
}


class ScriptError(Exception):
    pass


def _check_keys(where, obj, allowed):
    if not isinstance(obj, dict):
        raise ScriptError("%s: must be an object" % where)
    extra = set(obj) - set(allowed)
    if extra:
        raise ScriptError("%s: unknown keys %s" % (where, sorted(extra)))


def _check_number(where, value, minimum=0):
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or value < minimum):
        raise ScriptError("%s: must be a number >= %s" % (where, minimum))


def check_event(where, ev):
    if not isinstance(ev, dict) or ev.get("type") not in EVENT_KEYS:
        raise ScriptError("%s: 'type' must be one of %s"
                          % (where, sorted(EVENT_KEYS)))
    _check_keys(where, ev, EVENT_KEYS[ev["type"]] | EVENT_COMMON)
    if "at" in ev and "at_bytes" in ev:
        raise ScriptError("%s: give 'at' or 'at_bytes', not both" % where)
    for key in ("at", "at_bytes", "delay", "seconds", "timestamp",
                "last_word_end", "start", "duration"):
        if key in ev:
            _check_number("%s.%s" % (where, key), ev[key])
    if "words" in ev:
        if not isinstance(ev["words"], list):
            raise ScriptError("%s.words: must be a list" % where)
        for i, w in enumerate(ev["words"]):
            if isinstance(w, str):
                continue
            _check_keys("%s.words[%d]" % (where, i), w,
                        {"word", "start", "end", "confidence",
                         "punctuated_word"})
            if "word" not in w:
                raise ScriptError("%s.words[%d]: needs 'word'" % (where, i))
    if "transcript" in ev and not isinstance(ev["transcript"], str):
        raise ScriptError("%s.transcript: must be a string" % where)
    if ev["type"] == "close":
        code = ev.get("code", 1000)
        if not isinstance(code, int) or not 1000 <= code <= 4999:
            raise ScriptError("%s.code: bad close code" % where)
        if len(ev.get("reason", "").encode()) > MAX_REASON:
            raise ScriptError("%s.reason: longer than %d bytes"
                              % (where, MAX_REASON))


def check_script(name, s):
    where = "script %r" % name
    _check_keys(where, s, SCRIPT_KEYS)
    if "handshake" in s:
        _check_keys(where + ".handshake", s["handshake"], HANDSHAKE_KEYS)
        status = s["handshake"].get("status")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ScriptError(where + ".handshake.status: 400..599")
    if "expect_query" in s:
        _check_keys(where + ".expect_query", s["expect_query"],
                    s["expect_query"].keys())
    if s.get("violations", "close") not in ("close", "record"):
        raise ScriptError(where + ".violations: 'close' or 'record'")
    if s.get("json_style", "compact") not in ("compact", "spaced"):
        raise ScriptError(where + ".json_style: 'compact' or 'spaced'")
    if "idle_timeout" in s and s["idle_timeout"] is not None:
        _check_number(where + ".idle_timeout", s["idle_timeout"])
    if "model" in s:
        _check_keys(where + ".model", s["model"], DEFAULT_MODEL.keys())
    for i, ev in enumerate(s.get("events", [])):
        check_event("%s.events[%d]" % (where, i), ev)
    for part, keys in (("finalize", FINALIZE_KEYS),
                       ("close_stream", CLOSE_STREAM_KEYS)):
        if part in s:
            _check_keys(where + "." + part, s[part], keys)
            for i, ev in enumerate(s[part].get("events", [])):
                check_event("%s.%s.events[%d]" % (where, part, i), ev)
                if "at" in ev or "at_bytes" in ev:
                    raise ScriptError("%s.%s.events[%d]: no 'at' here"
                                      % (where, part, i))


def load_scripts(path):
    scripts = copy.deepcopy(BUILTIN_SCRIPTS)
    if path is not None:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ScriptError("%s: top level must be an object" % path)
        if "scripts" in data:
            _check_keys(path, data, {"scripts", "default"})
            lib = data["scripts"]
            if not isinstance(lib, dict):
                raise ScriptError("%s: 'scripts' must be an object" % path)
            scripts.update(lib)
            if "default" in data:
                if data["default"] not in scripts:
                    raise ScriptError("%s: default %r is not a script"
                                      % (path, data["default"]))
                scripts["default"] = scripts[data["default"]]
        else:
            scripts["default"] = data
    for name, s in scripts.items():
        check_script(name, s)
    return scripts


# ---- query validation ----------------------------------------------------

def _int_value(text):
    if re.fullmatch(r"[0-9]+", text or "") is None:
        return None
    return int(text)


def validate_query(pairs, strict):
    """Check the listen parameters as Deepgram defines them.

    Returns (params, problems, notes): params maps each name to its value
    (a list for the repeatable ones), problems make the request invalid.
    """
    params = {}
    problems = []
    notes = []

    for name, value in pairs:
        if name in REPEATABLE_PARAMS:
            params.setdefault(name, []).append(value)
            continue
        if name in params:
            problems.append("query parameter %s given twice" % name)
            continue
        params[name] = value
        if name not in KNOWN_PARAMS:
            msg = "unknown query parameter %s" % name
            (problems if strict else notes).append(msg)

    for name in BOOLEAN_PARAMS:
        if name in params and params[name] not in ("true", "false"):
            problems.append("%s must be true or false, not %r"
                            % (name, params[name]))

    enc = params.get("encoding")
    rate = params.get("sample_rate")
    if enc is not None and enc not in ENCODINGS:
        problems.append("encoding %r is not supported" % enc)
    if rate is not None:
        r = _int_value(rate)
        if r is None or not 1 <= r <= 192000:
            problems.append("sample_rate must be a positive integer, not %r"
                            % rate)
    if enc is not None and rate is None:
        problems.append("encoding=%s needs sample_rate" % enc)
    if rate is not None and enc is None:
        problems.append("sample_rate needs encoding (raw audio only)")
    if enc == "amr-nb" and rate not in (None, "8000"):
        problems.append("encoding=amr-nb needs sample_rate=8000")
    if enc == "amr-wb" and rate not in (None, "16000"):
        problems.append("encoding=amr-wb needs sample_rate=16000")
    if enc is None:
        notes.append("no encoding: containerized audio assumed, "
                     "no audio clock")

    if "channels" in params:
        c = _int_value(params["channels"])
        if c is None or not 1 <= c <= 64:
            problems.append("channels must be a positive integer, not %r"
                            % params["channels"])

    if "model" in params:
        if MODEL_RE.match(params["model"]) is None:
            problems.append("model %r is not a model name" % params["model"])
    else:
        notes.append("no model: the server default would be used")

    if "language" in params and LANGUAGE_RE.match(params["language"]) is None:
        problems.append("language %r is not a language tag"
                        % params["language"])

    if "endpointing" in params:
        ep = params["endpointing"]
        if ep != "false" and _int_value(ep) is None:
            problems.append("endpointing must be milliseconds or false, "
                            "not %r" % ep)

    if "utterance_end_ms" in params:
        u = _int_value(params["utterance_end_ms"])
        if u is None or u < 1:
            problems.append("utterance_end_ms must be a positive integer, "
                            "not %r" % params["utterance_end_ms"])
        if params.get("interim_results") != "true":
            problems.append("utterance_end_ms needs interim_results=true")

    return params, problems, notes


# ---- shared state ----------------------------------------------------------

def _r(x):
    return round(x, 3)


class Registry(records.Registry):
    """The connections."""

    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.records = []

    def new_record(self):
        rec = Record(self, self.take_id())
        self.records.append(rec)
        rec.touch()
        return rec


    def snapshot(self):
        return {"version": self.version,
                "connections": [r.data for r in self.records]}



class Record(records.Record):
    """What one connection did, kept as plain JSON data."""

    DIGITS = 3

    def __init__(self, registry, conn_id):
        super().__init__(registry, "conn-%d" % conn_id)
        self.data = {
            "id": conn_id,
            "request_id": str(uuid.uuid4()),
            "script": None,
            "started": records.now_iso(),
            "remote": None,
            "path": None,
            "query": [],
            "params": {},
            "mock_params": {},
            "headers": {},
            "auth": None,
            "notes": [],
            "handshake": {"status": None, "reason": None},
            "audio": {"bytes": 0, "frames": 0, "seconds": None,
                      "sha256": hashlib.sha256().hexdigest(),
                      "first_t": None, "last_t": None},
            "control": [],
            "sent": [],
            "skipped": [],
            "faults": [],
            "violations": [],
            "close": None,
            "finished": False,
        }

    def violation(self, what, audio_t=None):
        self.data["violations"].append(
            {"t": self.t(), "audio_t": audio_t, "what": what})
        self.touch()

    def finish(self):
        self.data["finished"] = True
        self.data["finished_t"] = self.t()
        self.registry.bump()
        self.flush()


# ---- message building ------------------------------------------------------

def _split_words(ev):
    """The words of a Results event as (word, punctuated, start, end, conf)
    with times left as None where the script gave none."""
    out = []
    if "words" in ev:
        for w in ev["words"]:
            if isinstance(w, str):
                out.append([_plain(w), w, None, None, None])
            else:
                out.append([w["word"], w.get("punctuated_word", w["word"]),
                            w.get("start"), w.get("end"),
                            w.get("confidence")])
    else:
        for tok in ev.get("transcript", "").split():
            out.append([_plain(tok), tok, None, None, None])
    return out


def _plain(token):
    word = re.sub(r"[^\w'-]+", "", token).lower()
    return word or token.lower()


class Session:
    """One accepted WebSocket connection: reading, checking, replying."""

    def __init__(self, server, ws, rec, script, params):
        self.server = server
        self.ws = ws
        self.rec = rec
        self.script = script
        self.params = params
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.sha = hashlib.sha256()
        self.audio_bytes = 0
        self.channels = int(params.get("channels", "1"))
        enc = params.get("encoding")
        width = SAMPLE_WIDTH.get(enc)
        if width is not None and "sample_rate" in params:
            self.frame_bytes = width * self.channels
            self.bytes_per_second = self.frame_bytes * int(
                params["sample_rate"])
        else:
            self.frame_bytes = None
            self.bytes_per_second = None
        self.cursor = 0.0          # end of the last final segment
        self.pending = None        # words of the interim since that final
        self.last_word_end = 0.0
        self.close_stream_seen = False
        self.closing = False       # a close frame of ours is on its way
        self.stalled = False
        self.dropped = False
        self.reading_paused = 0
        self.close_task = None
        self.sender_task = None
        self.last_activity = time.monotonic()
        self.idle_timeout = script.get("idle_timeout",
                                       server.args.idle_timeout)
        self.model = dict(DEFAULT_MODEL, **script.get("model", {}))
        self.json_kw = ({"separators": (",", ":")}
                        if script.get("json_style", "compact") == "compact"
                        else {})
        self.events = self._schedule(script.get("events", []))

    # -- clocks ---------------------------------------------------------

    def audio_t(self):
        if self.bytes_per_second is None:
            return None
        return self.audio_bytes / self.bytes_per_second

    def _schedule(self, events):
        """Turn each event's trigger into a byte count, in order."""
        timed = []
        for i, ev in enumerate(events):
            if "at_bytes" in ev:
                need = ev["at_bytes"]
            elif ev.get("at", 0) == 0:
                need = 0
            elif self.bytes_per_second is None:
                self.rec.data["skipped"].append(
                    {"event": ev, "why": "no audio clock for 'at'"})
                continue
            else:
                need = int(round(ev["at"] * self.bytes_per_second))
            timed.append((need, i, ev))
        timed.sort(key=lambda x: (x[0], x[1]))
        return timed

    def advance(self):
        """Queue every scripted event the received audio has reached.
        Returns True when one of them acts on the connection itself."""
        acts = False
        while self.events and self.events[0][0] <= self.audio_bytes:
            _, _, ev = self.events.pop(0)
            at = ev.get("at")
            if at is None:
                at = self.audio_t()
            self.queue.put_nowait(("event", ev, at))
            acts = acts or ev["type"] in IMMEDIATE_EVENTS
        return acts

    async def catch_up(self):
        """Wait until the sender has done everything queued so far, so a
        fault lands exactly at its audio position."""
        join = self.loop.create_task(self.queue.join())
        done, _ = await asyncio.wait({join, self.sender_task},
                                     return_when=asyncio.FIRST_COMPLETED)
        if join not in done:
            join.cancel()

    # -- sending --------------------------------------------------------

    async def send_json(self, obj, summary):
        if self.closing or self.dropped:
            return
        # the wall clock too: a client on this host can time the trip
        wall = round(time.time(), 6)
        await self.ws.send(json.dumps(obj, **self.json_kw))
        entry = {"t": self.rec.t(), "wall": wall, "type": obj.get("type")}
        entry.update(summary)
        self.rec.data["sent"].append(entry)
        self.rec.touch()

    def results(self, words, start, end, is_final, speech_final,
                from_finalize, channel=0, confidence=None):
        punct = (self.params.get("punctuate") == "true"
                 or self.params.get("smart_format") == "true")
        n = len(words)
        slot = (end - start) / n if n else 0.0
        out_words = []
        for i, (word, pword, ws, we, wc) in enumerate(words):
            ws = start + i * slot if ws is None else ws
            we = ws + slot * 0.8 if we is None else we
            w = {"word": word, "start": _r(ws), "end": _r(we),
                 "confidence": 0.98 if wc is None else wc}
            if punct:
                w["punctuated_word"] = pword
            out_words.append(w)
            self.last_word_end = max(self.last_word_end, w["end"])
        text = " ".join((w[1] if punct else w[0]) for w in words)
        if confidence is None:
            confidence = (_r(sum(w["confidence"] for w in out_words) / n)
                          if n else 0.0)
        if self.params.get("endpointing") == "false":
            speech_final = False
        return {
            "type": "Results",
            "channel_index": [channel, self.channels],
            "duration": _r(max(0.0, end - start)),
            "start": _r(start),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {"alternatives": [{
                "transcript": text,
                "confidence": confidence,
                "words": out_words,
            }]},
            "metadata": {
                "request_id": self.rec.data["request_id"],
                "model_info": {"name": self.model["name"],
                               "version": self.model["version"],
                               "arch": self.model["arch"]},
                "model_uuid": self.model["uuid"],
            },
            "from_finalize": from_finalize,
        }

    def metadata(self):
        t = self.audio_t()
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.rec.data["request_id"],
            "sha256": self.sha.hexdigest(),
            "created": self.rec.data["started"],
            "duration": _r(t) if t is not None else 0.0,
            "channels": self.channels,
            "models": [self.model["uuid"]],
            "model_info": {self.model["uuid"]: {
                "name": self.model["name"],
                "version": self.model["version"],
                "arch": self.model["arch"]}},
        }

    def gate(self, ev, why):
        """Deepgram only sends some messages when asked to."""
        if ev.get("force"):
            return False
        self.rec.data["skipped"].append({"event": ev, "why": why})
        self.rec.touch()
        return True

    async def send_results(self, ev, at):
        now = at if at is not None else (self.audio_t() or 0.0)
        is_final = bool(ev.get("is_final", False))
        if not is_final and self.params.get("interim_results") != "true":
            if self.gate(ev, "interim result without interim_results=true"):
                return
        start = ev.get("start", self.cursor)
        end = start + ev["duration"] if "duration" in ev else max(now, start)
        words = _split_words(ev)
        msg = self.results(words, start, end, is_final,
                           bool(ev.get("speech_final", False)),
                           bool(ev.get("from_finalize", False)),
                           ev.get("channel", 0), ev.get("confidence"))
        if is_final:
            self.cursor = max(self.cursor, end)
            self.pending = None
        else:
            self.pending = words
        await self.send_json(msg, self._summary(msg))

    @staticmethod
    def _summary(msg):
        return {"is_final": msg["is_final"],
                "speech_final": msg["speech_final"],
                "from_finalize": msg["from_finalize"],
                "transcript": msg["channel"]["alternatives"][0]["transcript"],
                "start": msg["start"], "duration": msg["duration"]}

    async def flush_pending(self, speech_final, from_finalize, send_empty):
        words = self.pending or []
        if not words and not send_empty:
            return
        end = max(self.audio_t() or 0.0, self.cursor)
        msg = self.results(words, self.cursor, end, True, speech_final,
                           from_finalize)
        self.cursor = end
        self.pending = None
        await self.send_json(msg, self._summary(msg))

    async def do_event(self, ev, at):
        kind = ev["type"]
        if kind == "Results":
            await self.send_results(ev, at)
        elif kind == "SpeechStarted":
            if (self.params.get("vad_events") != "true"
                    and self.gate(ev, "SpeechStarted without "
                                      "vad_events=true")):
                return
            ts = ev.get("timestamp", at if at is not None else 0.0)
            msg = {"type": "SpeechStarted",
                   "channel": [ev.get("channel", 0)],
                   "timestamp": _r(ts)}
            await self.send_json(msg, {"timestamp": msg["timestamp"]})
        elif kind == "UtteranceEnd":
            if ("utterance_end_ms" not in self.params
                    and self.gate(ev, "UtteranceEnd without "
                                      "utterance_end_ms")):
                return
            msg = {"type": "UtteranceEnd",
                   "channel": [ev.get("channel", 0), self.channels],
                   "last_word_end": _r(ev.get("last_word_end",
                                              self.last_word_end))}
            await self.send_json(msg,
                                 {"last_word_end": msg["last_word_end"]})
        elif kind == "Metadata":
            msg = self.metadata()
            await self.send_json(msg, {"duration": msg["duration"]})
        elif kind == "raw":
            await self.send_text(ev["text"], "raw")
        elif kind == "malformed":
            await self.send_text(ev.get("text", '{"type":"Results",'
                                                '"channel":{"alter'),
                                 "malformed")
        elif kind == "binary":
            await self.fault("binary")
            await self.ws.send(bytes.fromhex(ev.get("hex", "00ff")))
        elif kind == "close":
            await self.fault("close")
            await self.close_now(ev.get("code", 1000), ev.get("reason", ""))
        elif kind == "drop":
            await self.fault("drop")
            self.drop()
        elif kind == "stall":
            await self.fault("stall")
            self.stalled = True
        elif kind == "pause_reading":
            self.loop.create_task(self.pause_reading(ev.get("seconds", 1.0)))

    async def send_text(self, text, kind):
        if self.closing or self.dropped:
            return
        wall = round(time.time(), 6)
        await self.ws.send(text)
        self.rec.data["sent"].append({"t": self.rec.t(), "wall": wall,
                                      "type": None,
                                      "kind": kind, "text": text[:200]})
        self.rec.touch()

    async def fault(self, kind):
        self.rec.data["faults"].append({"t": self.rec.t(), "fault": kind,
                                        "audio_t": self._at()})
        self.rec.touch()

    def _at(self):
        t = self.audio_t()
        return _r(t) if t is not None else None

    def drop(self):
        """Vanish: no close frame, the TCP connection is reset."""
        self.dropped = True
        self.ws.transport.abort()

    async def pause_reading(self, seconds):
        """Stop taking bytes off the socket so the client's sends back up."""
        transport = self.ws.transport
        reader = self.ws.reader
        real = reader._transport
        # The stream reader resumes the transport when its own buffer
        # drains; keep it from undoing the pause while it lasts.
        reader._transport = _HeldTransport(real)
        self.reading_paused += 1
        transport.pause_reading()
        self.rec.data["faults"].append({
            "t": self.rec.t(), "fault": "pause_reading",
            "audio_t": self._at(), "audio_bytes": self.audio_bytes,
            "seconds": seconds})
        self.rec.touch()
        try:
            await asyncio.sleep(seconds)
        finally:
            reader._transport = real
            self.reading_paused -= 1
            self.last_activity = time.monotonic()
            # Bytes counted while paused came from the library's buffer,
            # read before the pause began.
            self.rec.data["faults"].append({
                "t": self.rec.t(), "fault": "resume_reading",
                "audio_bytes": self.audio_bytes})
            self.rec.touch()
            if not self.dropped and not transport.is_closing():
                transport.resume_reading()

    async def sender(self):
        """Send queued replies one by one, in order, honouring delays."""
        while not self.closing:
            item = await self.queue.get()
            try:
                if self.stalled or self.dropped:
                    continue
                if item[0] == "event":
                    _, ev, at = item
                    if ev.get("delay"):
                        await asyncio.sleep(ev["delay"])
                    await self.do_event(ev, at)
                elif item[0] == "finalize":
                    await self.on_finalize()
                elif item[0] == "close_stream":
                    await self.on_close_stream()
            except websockets.exceptions.ConnectionClosed:
                return
            finally:
                self.queue.task_done()

    async def on_finalize(self):
        conf = self.script.get("finalize", {})
        if not conf.get("reply", True):
            return
        if conf.get("delay"):
            await asyncio.sleep(conf["delay"])
        await self.flush_pending(bool(conf.get("speech_final", False)), True,
                                 bool(conf.get("send_empty", True)))
        for ev in conf.get("events", []):
            await self.do_event(ev, self.audio_t())

    async def on_close_stream(self):
        conf = self.script.get("close_stream", {})
        if not conf.get("reply", True):
            return
        if conf.get("delay"):
            await asyncio.sleep(conf["delay"])
        for ev in conf.get("events", []):
            await self.do_event(ev, self.audio_t())
            if self.stalled or self.dropped or self.closing:
                return
        if conf.get("flush", True):
            await self.flush_pending(bool(conf.get("speech_final", True)),
                                     bool(conf.get("from_finalize", False)),
                                     bool(conf.get("send_empty", False)))
        if conf.get("metadata", True):
            msg = self.metadata()
            await self.send_json(msg, {"duration": msg["duration"]})
        code = conf.get("close_code", 1000)
        if code is not None:
            await self.close_now(code, conf.get("close_reason", ""))

    # -- closing --------------------------------------------------------

    async def close_now(self, code, reason):
        """Start our closing handshake.  Reading goes on meanwhile, so the
        client's close frame is seen behind whatever it still had in
        flight."""
        if self.closing or self.dropped:
            return
        self.closing = True
        reason = reason.encode()[:MAX_REASON].decode("utf-8", "ignore")
        self.rec.data["server_close"] = {"t": self.rec.t(), "code": code,
                                         "reason": reason}
        self.rec.touch()
        self.close_task = self.loop.create_task(self.ws.close(code, reason))

    async def violation(self, what):
        self.rec.violation(what, self._at())
        if self.script.get("violations", "close") == "close":
            await self.close_now(1008, "mock violation: " + what)

    async def idle_watch(self):
        """Deepgram ends a stream that gets neither audio nor KeepAlive."""
        if self.idle_timeout is None:
            return
        while not self.closing and not self.dropped:
            left = self.last_activity + self.idle_timeout - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)
                continue
            if self.stalled or self.reading_paused:
                self.last_activity = time.monotonic()
                continue
            self.rec.data["idle_close"] = {"t": self.rec.t()}
            await self.close_now(1011, "NET-0001")
            return

    # -- receiving ------------------------------------------------------

    def ignored(self):
        """Frames that arrive after our close frame was sent were in flight
        already; they are counted, not judged."""
        self.rec.data["ignored_after_close"] = (
            self.rec.data.get("ignored_after_close", 0) + 1)
        self.rec.touch()

    async def on_binary(self, data):
        n = len(data)
        if self.close_stream_seen:
            await self.violation("audio (%d bytes) after CloseStream" % n)
            return
        if n == 0:
            await self.violation("empty binary frame")
            return
        if self.frame_bytes and n % self.frame_bytes:
            await self.violation(
                "binary frame of %d bytes is not whole samples of %s x %d "
                "channel(s)" % (n, self.params["encoding"], self.channels))
            if self.closing:
                return
        self.last_activity = time.monotonic()
        self.audio_bytes += n
        self.sha.update(data)
        audio = self.rec.data["audio"]
        audio["bytes"] = self.audio_bytes
        audio["frames"] += 1
        audio["seconds"] = self._at()
        audio["sha256"] = self.sha.hexdigest()
        if audio["first_t"] is None:
            audio["first_t"] = self.rec.t()
        audio["last_t"] = self.rec.t()
        self.rec.touch()
        if self.advance():
            await self.catch_up()

    async def on_text(self, text):
        entry = {"t": self.rec.t(), "audio_t": self._at(), "type": None}
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind in CONTROL_TYPES:
            entry["type"] = kind
        else:
            entry["raw"] = text[:200]
        extra = set(msg) - {"type"} if isinstance(msg, dict) else set()
        if kind == "Finalize" and "channel" in msg:
            entry["channel"] = msg["channel"]
            ch = msg["channel"]
            if (isinstance(ch, bool) or not isinstance(ch, int)
                    or not 0 <= ch < self.channels):
                extra = {"channel (bad value %r)" % (ch,)}
            else:
                extra.discard("channel")
        self.rec.data["control"].append(entry)
        self.rec.touch()

        if kind not in CONTROL_TYPES:
            await self.violation("text frame is not a control message: %s"
                                 % text[:60])
            return
        if extra:
            await self.violation("%s with extra fields %s"
                                 % (kind, sorted(extra)))
            return
        if self.close_stream_seen:
            await self.violation("%s after CloseStream" % kind)
            return
        if kind == "KeepAlive":
            self.last_activity = time.monotonic()
        elif kind == "Finalize":
            self.queue.put_nowait(("finalize",))
        elif kind == "CloseStream":
            self.close_stream_seen = True
            self.queue.put_nowait(("close_stream",))

    async def run(self):
        sender = self.sender_task = self.loop.create_task(self.sender())
        idle = self.loop.create_task(self.idle_watch())
        if self.advance():
            await self.catch_up()
        try:
            while True:
                try:
                    msg = await self.ws.recv()
                except websockets.exceptions.ConnectionClosed:
                    break
                if self.closing or self.dropped:
                    self.ignored()
                elif isinstance(msg, bytes):
                    await self.on_binary(msg)
                else:
                    await self.on_text(msg)
        finally:
            idle.cancel()
            sender.cancel()
            if self.close_task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self.close_task),
                                           15)
                except Exception:
                    pass
            try:
                await asyncio.wait_for(self.ws.wait_closed(), 15)
            except asyncio.TimeoutError:
                self.ws.transport.abort()
            self.record_close()

    def record_close(self):
        ws = self.ws
        rcvd = ws.close_rcvd
        sent = ws.close_sent
        ours = self.rec.data.get("server_close")
        if rcvd is not None and sent is not None:
            first = "server" if ws.close_rcvd_then_sent is False else "client"
        elif rcvd is not None:
            first = "client"
        elif sent is not None:
            first = "server"
        else:
            first = None
        info = {
            "t": self.rec.t(),
            "first": first,
            "client_frame": (None if rcvd is None else
                             {"code": rcvd.code, "reason": rcvd.reason}),
            "server_frame": (None if sent is None else
                             {"code": sent.code, "reason": sent.reason}),
            "dropped_by_mock": self.dropped,
            "tcp_without_close": rcvd is None and not self.dropped,
        }
        self.rec.data["close"] = info
        # The library itself fails connections on framing errors.
        if sent is not None and ours is None and not self.dropped and (
                sent.code in (1002, 1003, 1007, 1009, 1010)):
            self.rec.violation("websocket protocol error, closed %d %s"
                               % (sent.code, sent.reason))


class _HeldTransport:
    """A transport stand-in whose resume_reading does nothing."""

    def __init__(self, real):
        self._real = real

    def resume_reading(self):
        pass

    def __getattr__(self, name):
        return getattr(self._real, name)


# ---- HTTP side -------------------------------------------------------------

def _error_body(code, msg, request_id):
    return json.dumps({"err_code": code, "err_msg": msg,
                       "request_id": request_id}).encode()


class Protocol(websockets.legacy.server.WebSocketServerProtocol):
    """Checks the handshake and serves the plain HTTP state endpoint."""

    mock = None   # set by MockServer

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rec = None
        self.session_script = None
        self.session_params = None
        self.extra_headers = self._headers_101

    def _headers_101(self, path, headers):
        return [("dg-request-id", self.rec.data["request_id"])]

    async def handshake(self, *a, **kw):
        try:
            return await super().handshake(*a, **kw)
        except websockets.exceptions.InvalidHandshake as exc:
            if self.rec is not None and not isinstance(
                    exc, websockets.exceptions.AbortHandshake):
                status = (426 if isinstance(
                    exc, websockets.exceptions.InvalidUpgrade) else 400)
                self.rec.violation("bad WebSocket handshake: %s" % exc)
                self.rec.data["handshake"] = {"status": status,
                                              "reason": str(exc)}
                self.rec.finish()
            raise

    async def process_request(self, path, headers):
        url = urllib.parse.urlsplit(path)
        if url.path == STATE_PATH:
            return await self.mock.state_response(url.query)
        rec = self.rec = self.mock.registry.new_record()
        return self.mock.check_request(self, rec, url, headers)


class MockServer:

    def __init__(self, args, scripts):
        self.args = args
        self.scripts = scripts
        self.registry = Registry(args.state_dir)
        # connections seen per mock_id, for mock_script sequences
        self.sequences = {}

    async def state_response(self, query):
        q = dict(urllib.parse.parse_qsl(query))
        since = q.get("since")
        if since is not None:
            try:
                await self.registry.wait_change(int(since),
                                                float(q.get("timeout", 10)))
            except ValueError:
                return (http.HTTPStatus.BAD_REQUEST, [],
                        b"since and timeout must be numbers\n")
        body = json.dumps(self.registry.snapshot()).encode()
        return (http.HTTPStatus.OK,
                [("Content-Type", "application/json"),
                 ("Cache-Control", "no-store")], body)

    def refuse(self, rec, status, code, msg):
        rec.violation(msg)
        rec.data["handshake"] = {"status": int(status), "reason": msg}
        rec.finish()
        rid = rec.data["request_id"]
        return (status,
                [("Content-Type", "application/json"),
                 ("dg-request-id", rid), ("dg-error", msg)],
                _error_body(code, msg, rid))

    def check_request(self, proto, rec, url, headers):
        d = rec.data
        peer = proto.transport.get_extra_info("peername")
        d["remote"] = "%s:%s" % peer[:2] if peer else None
        d["path"] = url.path
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        d["query"] = [[k, v] for k, v in pairs]
        mock_pairs = [(k, v) for k, v in pairs if k.startswith("mock_")]
        dg_pairs = [(k, v) for k, v in pairs if not k.startswith("mock_")]
        d["mock_params"] = dict(mock_pairs)

        recorded = {}
        for name, value in headers.raw_items():
            key = name.lower()
            if key == "authorization":
                value = self._redact(value)
            if key in recorded:
                recorded[key] += ", " + value
            else:
                recorded[key] = value
        d["headers"] = recorded

        name = self.pick_script(d, d["mock_params"])
        script = self.scripts.get(name)

        if url.path != LISTEN_PATH:
            return self.refuse(rec, http.HTTPStatus.NOT_FOUND, "NOT_FOUND",
                               "no such path %s" % url.path)

        auth = headers.get_all("Authorization")
        expected = "Token " + self.args.key
        if len(auth) != 1 or auth[0] != expected:
            d["auth"] = ("missing" if not auth else
                         "repeated" if len(auth) > 1 else "wrong")
            return self.refuse(rec, http.HTTPStatus.UNAUTHORIZED,
                               "INVALID_AUTH",
                               "Authorization header %s" % d["auth"])
        d["auth"] = "ok"

        unknown = [n for n in d.get("script_sequence", [name])
                   if n not in self.scripts]
        if unknown:
            return self.refuse(rec, http.HTTPStatus.BAD_REQUEST,
                               "Bad Request",
                               "unknown mock_script %r" % unknown[0])

        params, problems, notes = validate_query(
            dg_pairs, bool(script.get("strict_params", False)))
        d["params"] = params
        d["notes"] = notes
        for pname, want in script.get("expect_query", {}).items():
            got = params.get(pname)
            if want is None:
                if got is not None:
                    problems.append("expected no %s, got %r" % (pname, got))
            elif got != want:
                problems.append("expected %s=%r, got %r"
                                % (pname, want, got))
        if problems:
            for p in problems[:-1]:
                rec.violation(p)
            return self.refuse(rec, http.HTTPStatus.BAD_REQUEST,
                               "Bad Request", problems[-1])

        refusal = script.get("handshake")
        if refusal is not None:
            status = http.HTTPStatus(refusal["status"])
            rec.data["faults"].append({"t": rec.t(),
                                       "fault": "refuse_%d" % status})
            rid = d["request_id"]
            hdrs = [("Content-Type", "application/json"),
                    ("dg-request-id", rid), ("dg-error", status.phrase)]
            hdrs += list(refusal.get("headers", {}).items())
            body = refusal.get("body")
            if body is None:
                body = _error_body(
                    "INVALID_AUTH" if status == 401 else status.phrase,
                    "Invalid credentials." if status == 401 else
                    status.description or status.phrase, rid)
            else:
                body = body.encode()
            d["handshake"] = {"status": int(status), "reason": "scripted"}
            rec.finish()
            return (status, hdrs, body)

        proto.session_script = script
        proto.session_params = params
        return None

    def pick_script(self, d, mock_params):
        """The script of this connection.  mock_script may be a comma list:
        the Nth connection with the same mock_id (or, without one, the same
        list) uses the Nth name, and the last one repeats."""
        spec = mock_params.get("mock_script", "default")
        if "," not in spec:
            d["script"] = spec
            return spec
        names = [n.strip() for n in spec.split(",")]
        key = ("id", mock_params["mock_id"]) if "mock_id" in mock_params \
            else ("script", spec)
        n = self.sequences.get(key, 0)
        self.sequences[key] = n + 1
        name = names[min(n, len(names) - 1)]
        d["script"] = name
        d["script_sequence"] = names
        d["script_index"] = n
        return name

    @staticmethod
    def _redact(value):
        scheme, _, cred = value.partition(" ")
        return "%s <%d bytes, not recorded>" % (scheme, len(cred))

    async def handle(self, ws):
        rec = ws.rec
        rec.data["handshake"] = {"status": 101, "reason": None}
        rec.touch()
        session = Session(self, ws, rec, ws.session_script,
                          ws.session_params)
        try:
            await session.run()
        finally:
            rec.finish()


def tls_context(args):
    """The server side of wss://, when a certificate was given."""
    if not args.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    return ctx


async def main_async(args, scripts):
    mock = MockServer(args, scripts)
    Protocol.mock = mock
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))
    server = await websockets.serve(
        mock.handle, args.host, args.port,
        create_protocol=Protocol,
        compression=None,
        ping_interval=None,
        max_size=args.max_size,
        close_timeout=5,
        ssl=args.tls_context)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    await stop
    server.close()
    await server.wait_closed()
    for rec in mock.registry.records:
        if not rec.data["finished"]:
            rec.finish()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--script", default=None,
                    help="JSON file: one script, or {\"scripts\": {...}}")
    ap.add_argument("--idle-timeout", type=float, default=10.0,
                    help="seconds without audio or KeepAlive before the "
                         "stream is closed 1011 NET-0001 (default 10)")
    ap.add_argument("--max-size", type=int, default=1 << 20,
                    help="largest message accepted (default 1 MiB)")
    ap.add_argument("--tls-cert", default=None,
                    help="PEM certificate chain: serve wss:// with it")
    ap.add_argument("--tls-key", default=None,
                    help="PEM private key of --tls-cert")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    try:
        scripts = load_scripts(args.script)
    except (OSError, ValueError, ScriptError) as exc:
        print("deepgram mock: %s" % exc, file=sys.stderr)
        return 2
    try:
        args.tls_context = tls_context(args)
    except (OSError, ssl.SSLError) as exc:
        print("deepgram mock: TLS: %s" % exc, file=sys.stderr)
        return 2
    os.makedirs(args.state_dir, exist_ok=True)
    asyncio.run(main_async(args, scripts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
