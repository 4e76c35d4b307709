#!/usr/bin/python3
"""Self-test of the Deepgram mock (t/mock/deepgram.py).

Starts the mock, drives it with WebSocket clients that behave like a
correct module and like faulty ones, and checks both what the mock sends
and what it records.  Prints `mock: N passed, M failed` last and exits
non-zero when anything failed.
"""

import asyncio
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import traceback
import urllib.parse

import websockets
import websockets.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "deepgram.py")
KEY = "k3y-for-the-mock-self-test"

RATE = 16000
FRAME = b"\x01\x00" * (RATE // 50)          # 20 ms of linear16 mono
BYTES_PER_SECOND = RATE * 2

GOOD = {"model": "nova-3", "language": "en-US", "encoding": "linear16",
        "sample_rate": str(RATE), "channels": "1",
        "interim_results": "true", "endpointing": "300",
        "utterance_end_ms": "1000", "vad_events": "true",
        "punctuate": "true"}

SCRIPTS = {
    "scripts": {
        "finalize": {
            "events": [{"at": 0.4, "type": "Results",
                        "transcript": "Turn left."}],
        },
        "other": {
            "events": [{"at": 0.3, "type": "Results", "transcript": "Goodbye.",
                        "is_final": True, "speech_final": True}],
        },
        "lenient": {
            "violations": "record",
            "close_stream": {"delay": 0.5},
        },
        "expects": {
            "expect_query": {"model": "nova-3", "encoding": "mulaw",
                             "sample_rate": "8000", "smart_format": None},
        },
        "idle": {"idle_timeout": 1.0},
        "stall": {
            "events": [
                {"at": 0.5, "type": "stall"},
                {"at": 0.6, "type": "Results", "transcript": "never",
                 "is_final": True},
            ],
        },
        "pause": {
            "idle_timeout": None,
            "events": [{"at": 0, "type": "pause_reading", "seconds": 2.0}],
        },
        "pause_mid": {
            "idle_timeout": None,
            "events": [{"at": 1.0, "type": "pause_reading", "seconds": 1.5}],
        },
        "spaced": {
            "json_style": "spaced",
            "events": [{"at": 0.1, "type": "Results", "transcript": "x",
                        "is_final": True}],
        },
        "delayed": {
            "events": [{"at": 0.1, "type": "Results", "transcript": "late",
                        "is_final": True, "delay": 0.3},
                       {"at": 0.1, "type": "raw",
                        "text": "{\"type\":\"Warning\"}"}],
        },
    },
}


class Checks:

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s %s" % (name, detail), flush=True)
        return cond

    def eq(self, name, got, want):
        return self.ok(name, got == want, "got %r, want %r" % (got, want))


C = Checks()
PORT = None
STATE_DIR = None
_ids = iter(range(1, 1000000))


def url(params, script=None, path="/v1/listen"):
    q = dict(params)
    q["mock_id"] = "c%d" % next(_ids)
    if script is not None:
        q["mock_script"] = script
    return ("ws://127.0.0.1:%d%s?%s"
            % (PORT, path, urllib.parse.urlencode(q))), q["mock_id"]


def auth(key=KEY):
    return {"Authorization": "Token " + key}


async def connect(params, script=None, headers=None):
    u, mid = url(params, script)
    ws = await websockets.connect(
        u, extra_headers=auth() if headers is None else headers,
        compression=None, ping_interval=None, close_timeout=5)
    return ws, mid


async def http_get(path, headers=()):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (path, PORT)
    for k, v in headers:
        req += "%s: %s\r\n" % (k, v)
    writer.write((req + "\r\n").encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


async def state(since=None, timeout=5):
    path = "/_mock/state"
    if since is not None:
        path += "?since=%d&timeout=%s" % (since, timeout)
    status, _, body = await http_get(path)
    assert status == 200, status
    return json.loads(body)


async def record(mid, cond=lambda r: r["finished"], limit=15):
    """Wait, by long polling the mock, for the record of connection `mid`
    to satisfy `cond`; returns it (or the last seen one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    st = await state()
    while True:
        found = None
        for r in st["connections"]:
            if r["mock_params"].get("mock_id") == mid:
                found = r
        if found is not None and cond(found):
            return found
        left = deadline - loop.time()
        if left <= 0:
            return found
        st = await state(st["version"], min(left, 5))


async def drain(ws, limit=10):
    """Every message until the connection closes."""
    out = []
    try:
        while True:
            out.append(await asyncio.wait_for(ws.recv(), limit))
    except websockets.exceptions.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        out.append("<timeout>")
    return out


def violations(rec):
    return [v["what"] for v in rec["violations"]] if rec else ["<no record>"]


async def refused(params, script=None, headers=None):
    try:
        ws, mid = await connect(params, script, headers)
    except websockets.exceptions.InvalidStatusCode as exc:
        return exc.status_code, exc.headers
    await ws.close()
    return 101, None


# ---- tests -----------------------------------------------------------------

RESULTS_KEYS = {"type", "channel_index", "duration", "start", "is_final",
                "speech_final", "channel", "metadata", "from_finalize"}
METADATA_KEYS = {"type", "transaction_key", "request_id", "sha256",
                 "created", "duration", "channels", "models", "model_info"}


async def test_correct_session():
    ws, mid = await connect(GOOD, "hello")
    rid = ws.response_headers.get("dg-request-id")
    audio = b""
    for _ in range(125):                       # 2.5 s
        await ws.send(FRAME)
        audio += FRAME
    await ws.send('{"type":"KeepAlive"}')
    await ws.send('{"type":"CloseStream"}')
    msgs = [json.loads(m) for m in await drain(ws)]
    C.eq("hello: close code", ws.close_code, 1000)
    C.eq("hello: message types", [m["type"] for m in msgs],
         ["SpeechStarted", "Results", "Results", "UtteranceEnd", "Metadata"])
    if len(msgs) != 5:
        return
    ss, interim, final, ue, md = msgs
    C.eq("hello: SpeechStarted shape", ss,
         {"type": "SpeechStarted", "channel": [0], "timestamp": 0.1})
    for name, r in (("interim", interim), ("final", final)):
        C.eq("hello: %s keys" % name, set(r), RESULTS_KEYS)
        alt = r["channel"]["alternatives"][0]
        C.eq("hello: %s alternative keys" % name, set(alt),
             {"transcript", "confidence", "words"})
        C.eq("hello: %s word keys" % name, set(alt["words"][0]),
             {"word", "start", "end", "confidence", "punctuated_word"})
        C.eq("hello: %s metadata keys" % name, set(r["metadata"]),
             {"request_id", "model_info", "model_uuid"})
        C.eq("hello: %s model_info keys" % name,
             set(r["metadata"]["model_info"]), {"name", "version", "arch"})
        C.eq("hello: %s request id" % name, r["metadata"]["request_id"], rid)
        C.eq("hello: %s channel_index" % name, r["channel_index"], [0, 1])
    C.eq("hello: interim flags",
         (interim["is_final"], interim["speech_final"],
          interim["from_finalize"]), (False, False, False))
    C.eq("hello: interim text",
         interim["channel"]["alternatives"][0]["transcript"], "hello")
    C.eq("hello: interim span", (interim["start"], interim["duration"]),
         (0.0, 0.5))
    C.eq("hello: final flags", (final["is_final"], final["speech_final"]),
         (True, True))
    falt = final["channel"]["alternatives"][0]
    C.eq("hello: final text", falt["transcript"], "Hello world.")
    C.eq("hello: final words", [(w["word"], w["punctuated_word"])
                                for w in falt["words"]],
         [("hello", "Hello"), ("world", "world.")])
    C.eq("hello: UtteranceEnd", ue,
         {"type": "UtteranceEnd", "channel": [0, 1],
          "last_word_end": falt["words"][-1]["end"]})
    C.eq("hello: Metadata keys", set(md), METADATA_KEYS)
    C.eq("hello: Metadata request id", md["request_id"], rid)
    C.eq("hello: Metadata duration", md["duration"], 2.5)
    C.eq("hello: Metadata sha256", md["sha256"],
         hashlib.sha256(audio).hexdigest())
    C.eq("hello: Metadata channels", md["channels"], 1)
    C.eq("hello: Metadata model_info keyed by models",
         list(md["model_info"]), md["models"])

    rec = await record(mid)
    C.eq("hello: no violations", violations(rec), [])
    C.eq("hello: record request id", rec["request_id"], rid)
    C.eq("hello: audio bytes", rec["audio"]["bytes"], len(audio))
    C.eq("hello: audio frames", rec["audio"]["frames"], 125)
    C.eq("hello: control order", [c["type"] for c in rec["control"]],
         ["KeepAlive", "CloseStream"])
    C.eq("hello: params recorded", rec["params"], GOOD)
    C.eq("hello: auth ok", rec["auth"], "ok")
    C.eq("hello: close", (rec["close"]["first"],
                          rec["close"]["client_frame"]["code"],
                          rec["close"]["server_frame"]["code"]),
         ("server", 1000, 1000))
    C.eq("hello: sent log", [s["type"] for s in rec["sent"]],
         ["SpeechStarted", "Results", "Results", "UtteranceEnd",
          "Metadata"])
    with open(os.path.join(STATE_DIR, "conn-%d.json" % rec["id"])) as f:
        text = f.read()
    C.ok("hello: state file is the record",
         json.loads(text)["request_id"] == rid)
    C.ok("hello: key never recorded", KEY not in text)
    C.ok("hello: authorization scheme kept",
         rec["headers"]["authorization"].startswith("Token <"))


async def test_gating():
    params = {k: v for k, v in GOOD.items()
              if k not in ("interim_results", "utterance_end_ms",
                           "vad_events", "punctuate")}
    ws, mid = await connect(params, "hello")
    for _ in range(125):
        await ws.send(FRAME)
    await ws.send('{"type":"CloseStream"}')
    msgs = [json.loads(m) for m in await drain(ws)]
    C.eq("gating: only final and Metadata", [m["type"] for m in msgs],
         ["Results", "Metadata"])
    if msgs and msgs[0]["type"] == "Results":
        alt = msgs[0]["channel"]["alternatives"][0]
        C.eq("gating: unpunctuated text", alt["transcript"], "hello world")
        C.ok("gating: no punctuated_word",
             all("punctuated_word" not in w for w in alt["words"]))
    rec = await record(mid)
    C.eq("gating: skipped events", len(rec["skipped"]), 3)
    C.eq("gating: no violations", violations(rec), [])


async def test_auth():
    status, hdrs = await refused(GOOD, headers=auth("wrong"))
    C.eq("auth: wrong key", status, 401)
    C.ok("auth: dg-error header", hdrs is not None and "dg-error" in hdrs)
    status, _ = await refused(GOOD, headers={})
    C.eq("auth: missing header", status, 401)
    status, _ = await refused(GOOD, headers={"Authorization": "Bearer " + KEY})
    C.eq("auth: bearer scheme", status, 401)
    status, _ = await refused(GOOD, headers={"Authorization": "token " + KEY})
    C.eq("auth: scheme spelled differently", status, 401)

    u, mid = url(GOOD)
    path = u.split(str(PORT), 1)[1]
    status, hdrs, body = await http_get(path, [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"), ("Authorization", "Token nope")])
    C.eq("auth: raw status", status, 401)
    try:
        err = json.loads(body)
    except ValueError:
        err = {}
    C.eq("auth: error body", (err.get("err_code"), err.get("request_id")),
         ("INVALID_AUTH", hdrs.get("dg-request-id")))
    rec = await record(mid)
    C.eq("auth: recorded", (rec["auth"], rec["handshake"]["status"]),
         ("wrong", 401))
    C.ok("auth: violation recorded", len(rec["violations"]) == 1)
    C.ok("auth: wrong key not recorded", "nope" not in json.dumps(rec))


async def test_bad_params():
    cases = [
        ("no sample_rate", {"encoding": "linear16"}, "needs sample_rate"),
        ("sample_rate alone", {"sample_rate": "16000"}, "needs encoding"),
        ("utterance_end without interim",
         dict(GOOD, interim_results="false"), "needs interim_results"),
        ("endpointing word", dict(GOOD, endpointing="soon"), "endpointing"),
        ("unknown encoding", dict(GOOD, encoding="pcm16"), "encoding"),
        ("boolean spelled yes", dict(GOOD, vad_events="yes"), "vad_events"),
        ("sample_rate word", dict(GOOD, sample_rate="fast"), "sample_rate"),
        ("channels zero", dict(GOOD, channels="0"), "channels"),
        ("bad language", dict(GOOD, language="en_US!"), "language"),
        ("amr-nb rate", dict(GOOD, encoding="amr-nb"), "8000"),
    ]
    for name, params, word in cases:
        u, mid = url(params)
        try:
            ws = await websockets.connect(u, extra_headers=auth())
            await ws.close()
            status = 101
        except websockets.exceptions.InvalidStatusCode as exc:
            status = exc.status_code
        C.eq("params: %s -> 400" % name, status, 400)
        rec = await record(mid)
        C.ok("params: %s recorded" % name,
             any(word in v for v in violations(rec)), violations(rec))

    u, mid = url(GOOD)
    u += "&model=nova-2"
    try:
        ws = await websockets.connect(u, extra_headers=auth())
        await ws.close()
        status = 101
    except websockets.exceptions.InvalidStatusCode as exc:
        status = exc.status_code
    C.eq("params: repeated model -> 400", status, 400)

    status, _ = await refused(dict(GOOD, endpointing="false"))
    C.eq("params: endpointing=false accepted", status, 101)
    status, _ = await refused(dict(GOOD, keyterm="a"))
    C.eq("params: keyterm accepted", status, 101)

    mulaw = dict(model="nova-3", encoding="mulaw", sample_rate="8000")
    status, _ = await refused(mulaw, "expects")
    C.eq("params: expectations met", status, 101)
    u, mid = url(dict(mulaw, model="nova-2", smart_format="true"), "expects")
    status = None
    try:
        ws = await websockets.connect(u, extra_headers=auth())
        await ws.close()
    except websockets.exceptions.InvalidStatusCode as exc:
        status = exc.status_code
    C.eq("params: expectation missed -> 400", status, 400)
    rec = await record(mid)
    C.eq("params: both expectations reported", sorted(violations(rec)),
         ["expected model='nova-3', got 'nova-2'",
          "expected no smart_format, got 'true'"])

    status, _ = await refused(GOOD, "no-such-script")
    C.eq("params: unknown script -> 400", status, 400)


async def test_binary_violations():
    ws, mid = await connect(GOOD)
    await ws.send(FRAME)
    await ws.send(b"\x00" * 641)
    await drain(ws)
    C.eq("binary: odd frame closes 1008", ws.close_code, 1008)
    C.ok("binary: reason says why", "whole samples" in (ws.close_reason or ""),
         ws.close_reason)
    rec = await record(mid)
    C.eq("binary: one violation", len(rec["violations"]), 1)
    C.eq("binary: only whole frames counted", rec["audio"]["bytes"],
         len(FRAME))

    ws, mid = await connect(dict(GOOD, encoding="mulaw", sample_rate="8000",
                                 channels="2"))
    await ws.send(b"\xff" * 3)
    await drain(ws)
    C.eq("binary: mulaw stereo odd frame closes 1008", ws.close_code, 1008)

    ws, mid = await connect(GOOD)
    await ws.send(b"")
    await drain(ws)
    C.eq("binary: empty frame closes 1008", ws.close_code, 1008)
    rec = await record(mid)
    C.ok("binary: empty frame recorded",
         any("empty" in v for v in violations(rec)), violations(rec))


async def test_text_violations():
    for name, text in (("unknown type", '{"type":"Foo"}'),
                       ("not json", "hello"),
                       ("extra field", '{"type":"KeepAlive","x":1}'),
                       ("json string", '"KeepAlive"'),
                       ("lower case", '{"type":"closestream"}')):
        ws, mid = await connect(GOOD)
        await ws.send(text)
        await drain(ws)
        C.eq("text: %s closes 1008" % name, ws.close_code, 1008)
        rec = await record(mid)
        C.eq("text: %s recorded" % name, len(rec["violations"]), 1)

    ws, mid = await connect(dict(GOOD, channels="2"), "lenient")
    await ws.send(b"\x00" * 8)
    await ws.send('{"type": "Finalize", "channel": 1}')
    await ws.send('{"type":"Finalize","channel":5}')
    await ws.send('{"type":"Foo"}')
    await ws.send(b"\x00" * 6)
    await ws.send('{"type":"CloseStream"}')
    await ws.send(b"\x00" * 8)
    await ws.send('{"type":"KeepAlive"}')
    msgs = await drain(ws)
    C.eq("text: lenient session still ends 1000", ws.close_code, 1000)
    C.ok("text: lenient session got Metadata",
         bool(msgs) and json.loads(msgs[-1])["type"] == "Metadata", msgs)
    rec = await record(mid)
    v = violations(rec)
    C.eq("text: five violations recorded in order", len(v), 5)
    if len(v) == 5:
        C.ok("text: bad Finalize channel", "channel" in v[0], v[0])
        C.ok("text: unknown type", "not a control message" in v[1], v[1])
        C.ok("text: partial sample", "whole samples" in v[2], v[2])
        C.ok("text: audio after CloseStream", "after CloseStream" in v[3],
             v[3])
        C.ok("text: KeepAlive after CloseStream",
             v[4] == "KeepAlive after CloseStream", v[4])
    C.eq("text: Finalize channel recorded", rec["control"][0].get("channel"),
         1)


async def test_finalize():
    ws, mid = await connect(GOOD, "finalize")
    for _ in range(30):                          # 0.6 s
        await ws.send(FRAME)
    first = json.loads(await ws.recv())
    C.eq("finalize: interim first",
         (first["is_final"],
          first["channel"]["alternatives"][0]["transcript"]),
         (False, "Turn left."))
    await ws.send('{"type":"Finalize"}')
    flushed = json.loads(await ws.recv())
    C.eq("finalize: flushed final",
         (flushed["type"], flushed["is_final"], flushed["from_finalize"],
          flushed["channel"]["alternatives"][0]["transcript"]),
         ("Results", True, True, "Turn left."))
    C.eq("finalize: flushed span", (flushed["start"], flushed["duration"]),
         (0.0, 0.6))
    await ws.send('{"type":"Finalize"}')
    empty = json.loads(await ws.recv())
    C.eq("finalize: nothing pending",
         (empty["is_final"], empty["from_finalize"],
          empty["channel"]["alternatives"][0]["transcript"],
          empty["channel"]["alternatives"][0]["words"]),
         (True, True, "", []))
    await ws.send('{"type":"CloseStream"}')
    rest = [json.loads(m) for m in await drain(ws)]
    C.eq("finalize: CloseStream gives only Metadata",
         [m["type"] for m in rest], ["Metadata"])
    C.eq("finalize: close 1000", ws.close_code, 1000)
    rec = await record(mid)
    C.eq("finalize: control order", [c["type"] for c in rec["control"]],
         ["Finalize", "Finalize", "CloseStream"])
    C.eq("finalize: no violations", violations(rec), [])


async def test_close_stream_flushes():
    ws, mid = await connect(GOOD, "finalize")
    for _ in range(25):                          # 0.5 s
        await ws.send(FRAME)
    await ws.send('{"type":"CloseStream"}')
    msgs = [json.loads(m) for m in await drain(ws)]
    C.eq("closestream: interim, last final, Metadata",
         [(m["type"], m.get("is_final")) for m in msgs],
         [("Results", False), ("Results", True), ("Metadata", None)])
    if len(msgs) == 3:
        C.eq("closestream: last final text",
             msgs[1]["channel"]["alternatives"][0]["transcript"],
             "Turn left.")


async def test_idle():
    ws, mid = await connect(GOOD, "idle")
    for _ in range(15):
        await ws.send('{"type":"KeepAlive"}')
        await asyncio.sleep(0.1)
    await ws.send('{"type":"CloseStream"}')
    msgs = await drain(ws)
    C.eq("idle: KeepAlive keeps the stream", ws.close_code, 1000)
    C.ok("idle: Metadata after keepalives",
         bool(msgs) and json.loads(msgs[-1])["type"] == "Metadata", msgs)

    ws, mid = await connect(GOOD, "idle")
    msgs = await drain(ws)
    C.eq("idle: silence closes 1011", (ws.close_code, ws.close_reason),
         (1011, "NET-0001"))
    C.eq("idle: nothing before the close", msgs, [])
    rec = await record(mid)
    C.ok("idle: recorded", "idle_close" in rec)
    C.eq("idle: not a violation", violations(rec), [])


async def test_refusals():
    status, hdrs = await refused(GOOD, "refuse_500")
    C.eq("fault: handshake 500", status, 500)
    status, _ = await refused(GOOD, "refuse_401")
    C.eq("fault: scripted 401", status, 401)
    u, mid = url(GOOD, "refuse_500")
    try:
        await websockets.connect(u, extra_headers=auth())
    except websockets.exceptions.InvalidStatusCode:
        pass
    rec = await record(mid)
    C.eq("fault: refusal recorded",
         (rec["handshake"]["status"], [f["fault"] for f in rec["faults"]],
          rec["violations"]), (500, ["refuse_500"], []))


async def test_drop():
    ws, mid = await connect(GOOD, "drop_after_1s")
    err = None
    try:
        for _ in range(100):
            await ws.send(FRAME)
        await ws.recv()
    except websockets.exceptions.ConnectionClosed as exc:
        err = exc
    C.ok("fault: drop seen", err is not None)
    C.ok("fault: drop has no close frame",
         err is not None and err.rcvd is None, repr(err))
    rec = await record(mid)
    C.ok("fault: drop recorded", rec["close"]["dropped_by_mock"])
    C.eq("fault: dropped at 1 s", rec["faults"][0]["audio_t"], 1.0)


async def test_sequence():
    """mock_script=a,b: the Nth connection with the same mock_id uses the
    Nth script, and the last one repeats."""
    q = dict(GOOD)
    q["mock_id"] = "seq%d" % next(_ids)
    q["mock_script"] = "refuse_500,hello"
    u = "ws://127.0.0.1:%d/v1/listen?%s" % (PORT, urllib.parse.urlencode(q))
    status = None
    try:
        await websockets.connect(u, extra_headers=auth())
    except websockets.exceptions.InvalidStatusCode as exc:
        status = exc.status_code
    C.eq("sequence: first connection refused", status, 500)
    for n in (2, 3):
        ws = await websockets.connect(u, extra_headers=auth(),
                                      compression=None, ping_interval=None)
        for _ in range(60):
            await ws.send(FRAME)
        got = []
        while "Hello world." not in got:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["type"] == "Results":
                got.append(msg["channel"]["alternatives"][0]["transcript"])
        C.ok("sequence: connection %d runs hello" % n, True)
        await ws.close()
    recs = []
    st = await state()
    for _ in range(50):
        recs = [r for r in st["connections"]
                if r["mock_params"].get("mock_id") == q["mock_id"]]
        if len(recs) == 3 and all(r["finished"] for r in recs):
            break
        st = await state(st["version"], 5)
    C.eq("sequence: scripts recorded",
         [(r["script"], r["script_index"]) for r in recs],
         [("refuse_500", 0), ("hello", 1), ("hello", 2)])
    C.eq("sequence: the list recorded", recs[0].get("script_sequence"),
         ["refuse_500", "hello"])
    status, _ = await refused(GOOD, "hello,no_such_script")
    C.eq("sequence: an unknown name refused", status, 400)
    # another mock_id starts its own count
    ws, mid = await connect(GOOD, "hello,refuse_401")
    await ws.close()
    rec = await record(mid)
    C.eq("sequence: counted per mock_id", (rec["script"],
                                          rec["script_index"]), ("hello", 0))


async def test_close_reason():
    ws, mid = await connect(GOOD, "net0001_at_1s")
    for _ in range(60):
        try:
            await ws.send(FRAME)
        except websockets.exceptions.ConnectionClosed:
            break
    await drain(ws)
    C.eq("fault: close with reason", (ws.close_code, ws.close_reason),
         (1011, "NET-0001"))


async def test_malformed():
    ws, mid = await connect(GOOD, "malformed")
    for _ in range(15):
        await ws.send(FRAME)
    text = await ws.recv()
    try:
        json.loads(text)
        bad = False
    except ValueError:
        bad = True
    C.ok("fault: malformed JSON sent", bad, text)
    await ws.send('{"type":"CloseStream"}')
    msgs = await drain(ws)
    C.ok("fault: stream goes on after it",
         bool(msgs) and json.loads(msgs[-1])["type"] == "Metadata", msgs)


async def test_stall():
    ws, mid = await connect(GOOD, "stall")
    for _ in range(50):
        await ws.send(FRAME)
    await ws.send('{"type":"CloseStream"}')
    await record(mid, lambda r: any(c["type"] == "CloseStream"
                                    for c in r["control"]))
    try:
        msg = await asyncio.wait_for(ws.recv(), 0.5)
    except asyncio.TimeoutError:
        msg = None
    C.eq("fault: stalled mock says nothing", msg, None)
    C.ok("fault: stalled socket still open", ws.open)
    await ws.close()
    rec = await record(mid)
    C.eq("fault: stall recorded", [f["fault"] for f in rec["faults"]],
         ["stall"])
    C.eq("fault: client closed first", (rec["close"]["first"],
                                        rec["close"]["client_frame"]["code"]),
         ("client", 1000))
    C.eq("fault: nothing sent", rec["sent"], [])


async def test_slow_reader():
    ws, mid = await connect(GOOD, "pause")
    await record(mid, lambda r: any(f["fault"] == "pause_reading"
                                    for f in r["faults"]))
    chunk = b"\x00\x01" * 16384                  # 32 KiB
    total = 48 * 1024 * 1024
    biggest = 0

    async def blast():
        for _ in range(total // len(chunk)):
            await ws.send(chunk)

    task = asyncio.get_running_loop().create_task(blast())
    while not task.done():
        biggest = max(biggest, ws.transport.get_write_buffer_size())
        await asyncio.sleep(0.01)
    await task
    C.ok("fault: client sends backed up", biggest >= 65536,
         "largest client buffer %d" % biggest)
    rec = await record(mid, lambda r: any(f["fault"] == "resume_reading"
                                          for f in r["faults"]))
    C.eq("fault: pause then resume",
         [f["fault"] for f in rec["faults"]],
         ["pause_reading", "resume_reading"])
    C.eq("fault: nothing read while paused",
         [f["audio_bytes"] for f in rec["faults"]], [0, 0])
    await ws.send('{"type":"CloseStream"}')
    msgs = await drain(ws, 30)
    md = json.loads(msgs[-1]) if msgs and msgs[-1] != "<timeout>" else {}
    C.eq("fault: all audio arrived after the pause", md.get("duration"),
         round(total / BYTES_PER_SECOND, 3))
    rec = await record(mid)
    C.eq("fault: all audio counted", rec["audio"]["bytes"], total)
    C.eq("fault: slow reader no violations", violations(rec), [])


async def test_slow_reader_mid_stream():
    """A pause that begins while audio pours in: at most what the library
    had already buffered may be counted until it ends."""
    ws, mid = await connect(GOOD, "pause_mid")
    chunk = b"\x00\x01" * 16384                  # 32 KiB, ~1 s of audio
    total = 48 * 1024 * 1024

    async def blast():
        for _ in range(total // len(chunk)):
            await ws.send(chunk)

    await blast()
    rec = await record(mid, lambda r: any(f["fault"] == "resume_reading"
                                          for f in r["faults"]))
    faults = rec["faults"] if rec else []
    C.eq("pause mid: pause then resume", [f["fault"] for f in faults],
         ["pause_reading", "resume_reading"])
    if len(faults) == 2:
        before, after = faults[0]["audio_bytes"], faults[1]["audio_bytes"]
        # The library queues up to 32 messages and 64 KiB of raw bytes.
        C.ok("pause mid: little read while paused",
             after - before <= 32 * len(chunk) + 65536 + len(chunk),
             "%d bytes while paused" % (after - before))
        C.ok("pause mid: paused after 1 s of audio", before >= 32000)
    await ws.send('{"type":"CloseStream"}')
    msgs = await drain(ws, 30)
    C.ok("pause mid: Metadata at the end",
         bool(msgs) and msgs[-1] != "<timeout>"
         and json.loads(msgs[-1])["type"] == "Metadata", msgs[-1:])
    rec = await record(mid)
    C.eq("pause mid: all audio counted", rec["audio"]["bytes"], total)


async def test_concurrent():
    a, mida = await connect(GOOD, "hello")
    b, midb = await connect(GOOD, "other")
    for _ in range(60):
        await a.send(FRAME)
        await b.send(FRAME)
    await a.send('{"type":"CloseStream"}')
    await b.send('{"type":"CloseStream"}')
    ma, mb = await asyncio.gather(drain(a), drain(b))
    ta = [json.loads(m)["channel"]["alternatives"][0]["transcript"]
          for m in ma if json.loads(m)["type"] == "Results"]
    tb = [json.loads(m)["channel"]["alternatives"][0]["transcript"]
          for m in mb if json.loads(m)["type"] == "Results"]
    C.eq("concurrent: first session's transcripts", ta,
         ["hello", "Hello world."])
    C.eq("concurrent: second session's transcripts", tb, ["Goodbye."])
    ra = await record(mida)
    rb = await record(midb)
    C.ok("concurrent: separate records",
         ra["id"] != rb["id"] and ra["request_id"] != rb["request_id"])


async def test_state_endpoint():
    st = await state()
    C.ok("state: has version and connections",
         isinstance(st.get("version"), int)
         and isinstance(st.get("connections"), list))
    same = await state(st["version"], 0.2)
    C.eq("state: long poll times out unchanged", same["version"],
         st["version"])
    waiter = asyncio.get_running_loop().create_task(
        state(st["version"], 10))
    ws, mid = await connect(GOOD)
    newer = await waiter
    C.ok("state: long poll wakes on a change",
         newer["version"] > st["version"])
    await ws.close()
    rec = await record(mid)
    C.eq("state: client close recorded", (rec["close"]["first"],
                                          rec["close"]["client_frame"]),
         ("client", {"code": 1000, "reason": ""}))

    status, hdrs, body = await http_get("/v2/listen?model=nova-3", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"), ("Authorization", "Token " + KEY)])
    C.eq("state: wrong path 404", status, 404)

    u, mid = url(GOOD)
    status, _, _ = await http_get(u.split(str(PORT), 1)[1],
                                  [("Authorization", "Token " + KEY)])
    C.eq("state: plain GET on the listen path refused", status, 426)
    rec = await record(mid)
    C.ok("state: bad upgrade recorded",
         any("handshake" in v for v in violations(rec)), violations(rec))
    C.eq("state: bad upgrade status recorded", rec["handshake"]["status"],
         426)


async def test_styles_and_delays():
    ws, mid = await connect(GOOD, "spaced")
    for _ in range(10):
        await ws.send(FRAME)
    text = await ws.recv()
    C.ok("style: spaced JSON", '"type": "Results"' in text, text[:40])
    await ws.close()

    ws, mid = await connect(GOOD, "delayed")
    for _ in range(10):
        await ws.send(FRAME)
    first = json.loads(await ws.recv())
    second = json.loads(await ws.recv())
    C.eq("delay: order kept behind a delayed event",
         (first["type"], second["type"]), ("Results", "Warning"))
    await ws.close()


TESTS = [test_correct_session, test_gating, test_auth, test_bad_params,
         test_binary_violations, test_text_violations, test_finalize,
         test_close_stream_flushes, test_idle, test_refusals, test_drop,
         test_close_reason, test_sequence, test_malformed, test_stall,
         test_slow_reader,
         test_slow_reader_mid_stream,
         test_concurrent, test_state_endpoint, test_styles_and_delays]


async def run_all():
    for t in TESTS:
        try:
            await asyncio.wait_for(t(), 60)
        except Exception:
            C.ok(t.__name__, False, "raised:\n" + traceback.format_exc())


def check_bad_scripts(tmp):
    """The mock refuses a script with a mistake instead of guessing."""
    for name, script in (
            ("unknown key", {"evnets": []}),
            ("unknown event", {"events": [{"at": 1, "type": "Result"}]}),
            ("bad status", {"handshake": {"status": 200}}),
            ("negative time", {"events": [{"at": -1, "type": "Metadata"}]})):
        path = os.path.join(tmp, "bad.json")
        with open(path, "w") as f:
            json.dump(script, f)
        p = subprocess.run([sys.executable, MOCK, "--state-dir", tmp,
                            "--key", KEY, "--script", path],
                           capture_output=True, text=True, timeout=30)
        C.ok("script check: %s refused" % name,
             p.returncode == 2 and "script" in p.stderr, p.stderr)


def check_tls(tmp):
    """--tls-cert/--tls-key serve wss:// with that certificate."""
    cert = os.path.join(tmp, "tls-cert.pem")
    key = os.path.join(tmp, "tls-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    p = subprocess.run([sys.executable, MOCK, "--state-dir", tmp,
                        "--key", KEY, "--tls-cert", cert],
                       capture_output=True, text=True, timeout=30)
    C.ok("tls: a certificate without its key is refused",
         p.returncode == 2 and "--tls-key" in p.stderr, p.stderr)
    proc = subprocess.Popen(
        [sys.executable, MOCK, "--port", "0", "--state-dir",
         os.path.join(tmp, "tls-state"), "--key", KEY,
         "--tls-cert", cert, "--tls-key", key],
        stdout=subprocess.PIPE, text=True)

    async def session(port):
        ctx = ssl.create_default_context(cafile=cert)
        u = "wss://localhost:%d/v1/listen?%s" % (
            port, urllib.parse.urlencode(GOOD))
        async with websockets.connect(
                u, ssl=ctx, extra_headers=auth(), compression=None,
                ping_interval=None, close_timeout=5) as ws:
            await ws.send(FRAME)
            await ws.send('{"type":"CloseStream"}')
            types = []
            async for m in ws:
                types.append(json.loads(m)["type"])
            C.ok("tls: a wss session runs", "Metadata" in types
                 and ws.close_code == 1000, "%r %r" % (types, ws.close_code))
        try:
            plain = await websockets.connect(
                "ws://127.0.0.1:%d/v1/listen" % port,
                extra_headers=auth(), open_timeout=5)
            await plain.close()
            C.ok("tls: plain ws:// is not served", False)
        except Exception:
            C.ok("tls: plain ws:// is not served", True)

    try:
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            C.ok("tls: mock starts", False, repr(line))
        else:
            asyncio.run(asyncio.wait_for(session(int(line[1])), 30))
    except Exception:
        C.ok("tls: session", False, traceback.format_exc())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    global PORT, STATE_DIR
    tmp = tempfile.mkdtemp(prefix="dgmock-")
    STATE_DIR = os.path.join(tmp, "state")
    script = os.path.join(tmp, "scripts.json")
    with open(script, "w") as f:
        json.dump(SCRIPTS, f)
    proc = subprocess.Popen(
        [sys.executable, MOCK, "--port", "0", "--state-dir", STATE_DIR,
         "--key", KEY, "--script", script, "--idle-timeout", "30"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            print("mock did not start: %r" % line)
            C.failed += 1
        else:
            PORT = int(line[1])
            asyncio.run(run_all())
        check_bad_scripts(tmp)
        check_tls(tmp)
    finally:
        proc.terminate()
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        C.eq("mock exits on SIGTERM", rc, 0)
        shutil.rmtree(tmp, ignore_errors=True)
    print("mock: %d passed, %d failed" % (C.passed, C.failed))
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
