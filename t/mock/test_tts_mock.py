#!/usr/bin/python3
"""Self-test of the TTS mock (t/mock/tts.py).

Starts the mock, speaks each of its three protocols the way a correct
client does and the way faulty ones do, decodes the audio it answers with
(a zero-crossing count tells each phrase's tone), and checks the records it
keeps.  Prints `tts mock: N passed, M failed` last and exits non-zero when
anything failed.  Needs /usr/bin/python3 and python3-websockets.
"""

import array
import asyncio
import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import urllib.parse
import zlib

import websockets
import websockets.exceptions

import selftest

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "tts.py")
KEY = "tts-mock-self-test-key"
WAIT = 10.0
MS_PER_CHAR = 60

LIBRARY = {
    "scripts": {
        "long_chunks": {"chunk_ms": 100, "rtf": 0},
        "paced": {"rtf": 1, "first_audio": 0},
        "lenient": {"violations": "record", "rtf": 0},
        "bytes_odd": {"chunk_bytes": [1, 4095, 7], "rtf": 0},
    },
}

PORT = None
STATE = None


# ---- the tone, as the README states it -------------------------------------

def tone_freq(n, text):
    return 300 + 50 * (2 * (n % 8) + (zlib.crc32(text.encode()) & 1))


def samples_for(text, rate, speed=1.0):
    return max(1, int(round(rate * max(1, len(text)) * MS_PER_CHAR
                            / 1000.0 / speed)))


def pcm_samples(data):
    a = array.array("h")
    a.frombytes(data[:len(data) - len(data) % 2])
    if sys.byteorder != "little":
        a.byteswap()
    return a


def estimate_freq(samples, rate):
    """Rising zero crossings per second."""
    ups = sum(1 for i in range(1, len(samples))
              if samples[i - 1] < 0 <= samples[i])
    return ups * rate / len(samples)


def split_phrases(samples, rate, texts):
    """Cuts a stream of samples at the phrase lengths the texts imply."""
    out, at = [], 0
    for t in texts:
        n = samples_for(t, rate)
        out.append(samples[at:at + n])
        at += n
    return out, at


# ---- helpers ---------------------------------------------------------------

async def http_get(path):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    writer.write(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                  % path).encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), WAIT + 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def state(since=None, timeout=WAIT):
    path = "/_mock/state"
    if since is not None:
        path += "?since=%d&timeout=%g" % (since, timeout)
    status, body = await http_get(path)
    assert status == 200
    return json.loads(body)


async def wait_record(pred, kind="connections"):
    """Long-polls the state until a record satisfies pred."""
    st = await state()
    for _ in range(200):
        for r in st[kind]:
            if pred(r):
                return r
        st = await state(since=st["version"])
    raise AssertionError("no record matched")


def cartesia_headers(style="bearer", key=KEY, version="2024-06-10"):
    h = {}
    if style == "bearer":
        h["Authorization"] = "Bearer " + key
    elif style == "x-api-key":
        h["X-API-Key"] = key
    if version is not None:
        h["Cartesia-Version"] = version
    return h


def cartesia_req(ctx, text, cont=True, rate=16000, **extra):
    m = {"model_id": "sonic-2", "transcript": text,
         "voice": {"mode": "id", "id": "voice-1"},
         "output_format": {"container": "raw", "encoding": "pcm_s16le",
                           "sample_rate": rate},
         "context_id": ctx, "continue": cont}
    m.update(extra)
    return json.dumps(m)


def cartesia_url(**q):
    url = "ws://127.0.0.1:%d/tts/websocket" % PORT
    return url + ("?" + urllib.parse.urlencode(q) if q else "")


def eleven_url(fmt="pcm_16000", voice="voice-9", **q):
    q = dict({"model_id": "eleven_flash_v2_5", "output_format": fmt}, **q)
    if fmt is None:
        del q["output_format"]
    return ("ws://127.0.0.1:%d/v1/text-to-speech/%s/stream-input?%s"
            % (PORT, voice, urllib.parse.urlencode(q)))


def connect(url, headers):
    return websockets.connect(url, extra_headers=headers, compression=None,
                              ping_interval=None, close_timeout=2,
                              max_size=None)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def cartesia_until_done(ws, contexts):
    """Messages until every context in contexts is done (or in error)."""
    msgs, left = [], set(contexts)
    while left:
        m = await recv_json(ws)
        msgs.append(m)
        if m["type"] in ("done", "error"):
            left.discard(m.get("context_id"))
    return msgs


def audio_of(msgs, ctx):
    return b"".join(base64.b64decode(m["data"]) for m in msgs
                    if m["type"] == "chunk" and m["context_id"] == ctx)


async def expect_refusal(url, headers):
    try:
        async with connect(url, headers):
            pass
    except websockets.exceptions.InvalidStatusCode as exc:
        return exc.status_code
    raise AssertionError("the handshake was accepted")


async def closed_code(ws):
    """Reads until the connection closes; returns (code, messages)."""
    msgs = []
    try:
        while True:
            msgs.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    except websockets.exceptions.ConnectionClosed as exc:
        return exc.code, msgs


class Resp:
    status = None
    headers = None
    body = b""
    chunks = None
    complete = False


async def speech(body, key=KEY, headers=None, method="POST", path=None,
                 raw=None, close_after_chunks=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    data = raw if raw is not None else json.dumps(body).encode()
    h = {"Host": "api.example", "Content-Type": "application/json",
         "Content-Length": str(len(data)), "Connection": "close"}
    if key is not None:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    writer.write(("%s %s HTTP/1.1\r\n" % (method, path or
                                          "/v1/audio/speech")).encode()
                 + "".join("%s: %s\r\n" % kv for kv in h.items()).encode()
                 + b"\r\n" + data)
    await writer.drain()
    r = Resp()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    lines = head.decode().split("\r\n")
    r.status = int(lines[0].split(" ")[1])
    r.headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            r.headers[k.strip().lower()] = v.strip()
    if "content-length" in r.headers:
        r.body = await reader.readexactly(int(r.headers["content-length"]))
        r.complete = True
    else:
        r.chunks = []
        try:
            while True:
                line = await asyncio.wait_for(reader.readuntil(b"\r\n"),
                                              WAIT)
                size = int(line.strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    r.complete = True
                    break
                r.chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
                if close_after_chunks is not None and \
                        len(r.chunks) >= close_after_chunks:
                    break
        except asyncio.IncompleteReadError:
            pass
        r.body = b"".join(r.chunks)
    writer.close()
    return r


def speech_body(text, **extra):
    b = {"model": "gpt-4o-mini-tts", "input": text, "voice": "alloy",
         "response_format": "pcm"}
    b.update(extra)
    return b


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# ---- the tone itself -------------------------------------------------------

class Tone(unittest.TestCase):

    def test_formula_range_and_neighbours(self):
        texts = ["a", "b", "hello", "Hello.", "x" * 50]
        for n in range(40):
            for t in texts:
                f = tone_freq(n, t)
                self.assertTrue(300 <= f <= 1050)
                for u in texts:
                    self.assertGreaterEqual(
                        abs(tone_freq(n + 1, u) - f), 50)

    def test_mock_agrees_with_formula(self):
        sys.path.insert(0, HERE)
        try:
            import tts
        finally:
            sys.path.pop(0)
        for n in range(20):
            for t in ("one", "two words", "é ü"):
                self.assertEqual(tts.tone_freq(n, t), tone_freq(n, t))
        pcm = tts.synth(700, 8000, 16000, 8000)
        self.assertAlmostEqual(
            estimate_freq(pcm_samples(pcm), 16000), 700, delta=5)


# ---- Cartesia --------------------------------------------------------------

class Cartesia(unittest.TestCase):

    def check_tones(self, samples, rate, texts, first_n):
        parts, total = split_phrases(samples, rate, texts)
        self.assertEqual(len(samples), total)
        for i, (part, text) in enumerate(zip(parts, texts)):
            self.assertAlmostEqual(estimate_freq(part, rate),
                                   tone_freq(first_n + i, text), delta=15,
                                   msg="phrase %d %r" % (i, text))

    def test_two_pieces_bearer_timestamps(self):
        texts = ["Hello there", "general Kenobi."]

        async def go():
            async with connect(cartesia_url(mock_id="c-two"),
                               cartesia_headers("bearer")) as ws:
                await ws.send(cartesia_req("c1", texts[0] + " ",
                                           add_timestamps=True))
                await ws.send(cartesia_req("c1", texts[1]))
                await ws.send(cartesia_req("c1", "", cont=False))
                msgs = await cartesia_until_done(ws, ["c1"])
            rec = await wait_record(
                lambda r: r["mock_params"].get("mock_id") == "c-two"
                and r["finished"])
            return msgs, rec
        msgs, rec = run(go())
        self.assertEqual(msgs[-1], {"type": "done", "context_id": "c1",
                                    "status_code": 206, "done": True})
        for m in msgs[:-1]:
            self.assertIn(m["type"], ("chunk", "timestamps"))
            self.assertEqual(m["context_id"], "c1")
            if m["type"] == "chunk":
                self.assertIs(m["done"], False)
        ts = [m for m in msgs if m["type"] == "timestamps"]
        self.assertEqual(len(ts), 2)
        self.assertEqual(ts[0]["word_timestamps"]["words"],
                         ["Hello", "there"])
        self.assertEqual(ts[1]["word_timestamps"]["start"][0],
                         round(samples_for(texts[0], 16000) / 16000, 3))
        self.check_tones(pcm_samples(audio_of(msgs, "c1")), 16000, texts, 0)
        self.assertEqual(rec["auth"], "ok")
        self.assertEqual(rec["auth_style"], "bearer")
        self.assertEqual(rec["provider"], "cartesia")
        self.assertEqual(rec["violations"], [])
        self.assertEqual(len(rec["messages"]), 3)
        self.assertTrue(all("wall" in m for m in rec["messages"]))
        self.assertEqual([p["state"] for p in rec["phrases"]],
                         ["complete", "complete"])
        self.assertEqual([p["text"] for p in rec["phrases"]], texts)
        self.assertEqual(rec["contexts"]["c1"]["state"], "done")
        chunks = [s for s in rec["sent"] if s["type"] == "chunk"]
        self.assertEqual(len(chunks),
                         sum(1 for m in msgs if m["type"] == "chunk"))
        self.assertNotIn(KEY, json.dumps(rec))

    def test_x_api_key_and_rates(self):
        async def go(rate):
            async with connect(cartesia_url(mock_id="rate%d" % rate),
                               cartesia_headers("x-api-key")) as ws:
                await ws.send(cartesia_req("r", "Sample rate check",
                                           cont=False, rate=rate))
                return await cartesia_until_done(ws, ["r"])
        for rate in (8000, 22050, 44100):
            msgs = run(go(rate))
            self.check_tones(pcm_samples(audio_of(msgs, "r")), rate,
                             ["Sample rate check"], 0)
        rec = run(wait_record(lambda r: r["mock_params"].get("mock_id")
                              == "rate8000"))
        self.assertEqual(rec["auth_style"], "x-api-key")

    def test_handshake_refusals(self):
        async def go():
            return [
                await expect_refusal(cartesia_url(),
                                     cartesia_headers(key="wrong")),
                await expect_refusal(cartesia_url(),
                                     cartesia_headers(style=None)),
                await expect_refusal(cartesia_url(),
                                     cartesia_headers(version=None)),
                await expect_refusal(cartesia_url(),
                                     cartesia_headers(version="v2")),
                await expect_refusal(cartesia_url(mock_script="refuse_500"),
                                     cartesia_headers()),
                await expect_refusal(cartesia_url(), dict(
                    cartesia_headers(), **{"X-Mock-Script": "refuse_401"})),
                await expect_refusal(cartesia_url(mock_script="nosuch"),
                                     cartesia_headers()),
            ]
        self.assertEqual(run(go()), [401, 401, 400, 400, 500, 401, 400])
        st = run(state())
        by = [r for r in st["connections"] if r["handshake"] and
              r["handshake"]["status"] == 401]
        self.assertTrue(any(r["auth"] == "wrong" for r in by))
        self.assertTrue(any(r["auth"] == "missing" for r in by))

    def test_invalid_requests_get_errors(self):
        bad = [
            ("rate", cartesia_req("a", "x", rate=12345)),
            ("voice", json.dumps(dict(json.loads(cartesia_req("b", "x")),
                                      voice={"mode": "embedding"}))),
            ("continue", json.dumps(dict(json.loads(cartesia_req("c", "x")),
                                         **{"continue": "yes"}))),
            ("encoding", json.dumps(dict(
                json.loads(cartesia_req("d", "x")),
                output_format={"container": "raw", "encoding": "mp3",
                               "sample_rate": 16000}))),
            ("model_id", json.dumps({"transcript": "x", "context_id": "e",
                                     "continue": False})),
            ("delay", cartesia_req("f", "x", max_buffer_delay_ms="soon")),
            ("not JSON", "{nope"),
            ("context_id", json.dumps({"transcript": "x"})),
        ]

        async def go():
            got = []
            async with connect(cartesia_url(mock_id="c-bad"),
                               cartesia_headers()) as ws:
                for _, text in bad:
                    await ws.send(text)
                    got.append(await recv_json(ws))
                await ws.send(b"\x00\x01")
                got.append(await recv_json(ws))
            rec = await wait_record(
                lambda r: r["mock_params"].get("mock_id") == "c-bad"
                and r["finished"])
            return got, rec
        got, rec = run(go())
        for (what, _), m in zip(bad, got):
            self.assertEqual(m["type"], "error", what)
            self.assertEqual(m["status_code"], 400, what)
        self.assertEqual(got[0]["context_id"], "a")
        self.assertIn("sample_rate", got[0]["message"])
        self.assertEqual(got[-1]["type"], "error")
        self.assertGreaterEqual(len(rec["violations"]), len(bad) + 1)
        self.assertEqual(rec["phrases"], [])

    def test_request_after_end_is_a_violation(self):
        async def go():
            async with connect(cartesia_url(mock_id="c-after"),
                               cartesia_headers()) as ws:
                await ws.send(cartesia_req("z", "Only this.", cont=False))
                msgs = await cartesia_until_done(ws, ["z"])
                await ws.send(cartesia_req("z", "And this?"))
                err = await recv_json(ws)
            return msgs, err
        msgs, err = run(go())
        self.assertEqual(msgs[-1]["type"], "done")
        self.assertEqual(err["type"], "error")
        self.assertIn("after it ended", err["message"])

    def test_cancel_stops_chunks(self):
        async def go():
            async with connect(cartesia_url(mock_script="paced",
                                            mock_id="c-cancel"),
                               cartesia_headers()) as ws:
                await ws.send(cartesia_req("k", "A long sentence that "
                                           "would take seconds to say. "))
                first = await recv_json(ws)
                await ws.send(json.dumps({"context_id": "k",
                                          "cancel": True}))
                await ws.send(cartesia_req("k2", "Next.", cont=False))
                msgs = await cartesia_until_done(ws, ["k2"])
                await ws.send(cartesia_req("k", "more "))
                err = await recv_json(ws)
            rec = await wait_record(
                lambda r: r["mock_params"].get("mock_id") == "c-cancel"
                and r["finished"])
            return first, msgs, err, rec
        first, msgs, err, rec = run(go())
        self.assertEqual(first["type"], "chunk")
        got_k = 1 + sum(1 for m in msgs if m.get("context_id") == "k")
        c = rec["contexts"]["k"]
        self.assertEqual(c["state"], "cancelled")
        self.assertEqual(c["chunks_after_cancel"], 0)
        self.assertEqual(c["chunks"], got_k)
        self.assertLess(c["last_chunk_wall"], c["cancel_wall"])
        self.assertFalse(any(m.get("context_id") == "k" and
                             m["type"] == "done" for m in msgs))
        self.assertEqual(rec["phrases"][0]["state"], "cancelled")
        self.assertLess(rec["phrases"][0]["samples_sent"],
                        rec["phrases"][0]["samples"])
        self.assertEqual(rec["cancels"][0]["context"], "k")
        self.assertIn("after it was cancelled", err["message"])
        # the next context still plays, as phrase 1
        self.check_tones(pcm_samples(audio_of(msgs, "k2")), 16000,
                         ["Next."], 1)

    def test_cancel_lag_is_recorded(self):
        async def go():
            async with connect(cartesia_url(mock_script="late_cancel",
                                            mock_id="c-lag"),
                               cartesia_headers()) as ws:
                await ws.send(cartesia_req("L", "A long sentence to cut "
                                           "short in a moment. "))
                await recv_json(ws)
                await ws.send(json.dumps({"context_id": "L",
                                          "cancel": True}))
                late = [await recv_json(ws), await recv_json(ws)]
            rec = await wait_record(
                lambda r: r["mock_params"].get("mock_id") == "c-lag"
                and r["finished"])
            return late, rec
        late, rec = run(go())
        self.assertEqual([m["type"] for m in late], ["chunk", "chunk"])
        self.assertEqual(rec["contexts"]["L"]["chunks_after_cancel"], 2)
        self.assertEqual(rec["contexts"]["L"]["chunks"], 3)

    def test_two_contexts_keep_their_own_tones(self):
        async def go():
            async with connect(cartesia_url(mock_id="c-pair"),
                               cartesia_headers()) as ws:
                await ws.send(cartesia_req("p", "First voice here.",
                                           cont=False))
                await ws.send(cartesia_req("q", "Second voice here!",
                                           cont=False))
                return await cartesia_until_done(ws, ["p", "q"])
        msgs = run(go())
        order = [m["context_id"] for m in msgs if m["type"] == "chunk"]
        self.assertIn("p", order)
        self.assertIn("q", order)
        self.check_tones(pcm_samples(audio_of(msgs, "p")), 16000,
                         ["First voice here."], 0)
        self.check_tones(pcm_samples(audio_of(msgs, "q")), 16000,
                         ["Second voice here!"], 1)

    def test_text_prefix_error_midstream(self):
        async def go():
            async with connect(cartesia_url(mock_id="c-err"),
                               cartesia_headers()) as ws:
                await ws.send(cartesia_req(
                    "e", "mock:error_midstream This will fail.",
                    cont=False))
                await ws.send(cartesia_req("f", "This will not.",
                                           cont=False))
                return await cartesia_until_done(ws, ["e", "f"])
        msgs = run(go())
        e = [m for m in msgs if m.get("context_id") == "e"]
        self.assertEqual([m["type"] for m in e],
                         ["chunk", "chunk", "chunk", "error"])
        self.assertEqual(e[-1]["status_code"], 500)
        f = [m for m in msgs if m.get("context_id") == "f"]
        self.assertEqual(f[-1]["type"], "done")
        self.assertTrue(all(m["type"] == "chunk" for m in f[:-1]))
        rec = run(wait_record(lambda r: r["mock_params"].get("mock_id")
                              == "c-err"))
        self.assertEqual(rec["contexts"]["e"]["script"], "error_midstream")
        self.assertEqual(rec["contexts"]["f"]["script"], "default")
        self.assertEqual(rec["phrases"][0]["text"], "This will fail.")

    def test_close_1011_and_drop(self):
        async def go(script):
            async with connect(cartesia_url(mock_script=script),
                               cartesia_headers()) as ws:
                await ws.send(cartesia_req("x", "Falling over soon.",
                                           cont=False))
                return await closed_code(ws)
        code, msgs = run(go("close_1011"))
        self.assertEqual(code, 1011)
        self.assertEqual([m["type"] for m in msgs], ["chunk"] * 3)
        code, msgs = run(go("drop"))
        self.assertEqual(code, 1006)
        self.assertEqual(len(msgs), 3)

    def test_stall_withholds_everything(self):
        async def go():
            async with connect(cartesia_url(mock_script="stall",
                                            mock_id="c-stall"),
                               cartesia_headers()) as ws:
                await ws.send(cartesia_req("s", "Going quiet now.",
                                           cont=False))
                got = [await recv_json(ws), await recv_json(ws)]
                await wait_record(
                    lambda r: r["mock_params"].get("mock_id") == "c-stall"
                    and r["faults"])
                await ws.send(cartesia_req("t", "Anyone?", cont=False))
                rec = await wait_record(
                    lambda r: r["mock_params"].get("mock_id") == "c-stall"
                    and r["phrases"] and len(r["phrases"]) == 2
                    and r["phrases"][1]["state"] == "unsent")
                return got, rec
        got, rec = run(go())
        self.assertEqual([m["type"] for m in got], ["chunk", "chunk"])
        self.assertEqual(rec["faults"][0]["fault"], "stall")
        self.assertEqual(sum(1 for s in rec["sent"]
                             if s["type"] == "chunk"), 2)

    def test_invalid_utf8_closes_1007(self):
        async def go():
            reader, writer = await asyncio.open_connection("127.0.0.1",
                                                           PORT)
            h = cartesia_headers()
            writer.write(("GET /tts/websocket?mock_id=c-utf HTTP/1.1\r\n"
                          "Host: x\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "Authorization: %s\r\nCartesia-Version: %s\r\n"
                          "\r\n" % (h["Authorization"],
                                    h["Cartesia-Version"])).encode())
            head = await reader.readuntil(b"\r\n\r\n")
            payload = b"\xff\xfe"
            mask = b"\x01\x02\x03\x04"
            writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
                b ^ mask[i % 4] for i, b in enumerate(payload)))
            rest = await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
            return head, rest
        head, rest = run(go())
        self.assertIn(b" 101 ", head.split(b"\r\n")[0] + b" ")
        self.assertEqual(rest[0], 0x88)
        self.assertEqual(struct.unpack("!H", rest[2:4])[0], 1007)
        rec = run(wait_record(lambda r: r["mock_params"].get("mock_id")
                              == "c-utf" and r["finished"]))
        self.assertTrue(any("UTF-8" in v["what"] for v in rec["violations"]))


    def test_unmasked_frame_closes_1002(self):
        async def go():
            reader, writer = await asyncio.open_connection("127.0.0.1",
                                                           PORT)
            writer.write(("GET /v1/text-to-speech/v/stream-input?"
                          "output_format=pcm_16000&mock_id=e-unmasked "
                          "HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "xi-api-key: %s\r\n\r\n" % KEY).encode())
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"\x81\x03abc")
            rest = await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
            return rest
        rest = run(go())
        self.assertEqual(struct.unpack("!H", rest[2:4])[0], 1002)
        rec = run(wait_record(lambda r: r["mock_params"].get("mock_id")
                              == "e-unmasked" and r["finished"]))
        self.assertTrue(any("framing" in v["what"]
                            for v in rec["violations"]))
        self.assertEqual(rec["close"]["server_frame"]["code"], 1002)


# ---- ElevenLabs ------------------------------------------------------------

class Eleven(unittest.TestCase):

    def test_flush_end_and_alignment(self):
        async def go():
            async with connect(eleven_url(mock_id="e-ok"),
                               {"xi-api-key": KEY}) as ws:
                await ws.send(json.dumps({
                    "text": " ", "voice_settings": {
                        "stability": 0.5, "similarity_boost": 0.8}}))
                await ws.send(json.dumps({"text": "Hello "}))
                await ws.send(json.dumps({"text": "world. ",
                                          "flush": True}))
                await ws.send(json.dumps({"text": " "}))
                await ws.send(json.dumps({"text": "And goodbye. "}))
                await ws.send(json.dumps({"text": ""}))
                code, msgs = await closed_code(ws)
            rec = await wait_record(
                lambda r: r["mock_params"].get("mock_id") == "e-ok"
                and r["finished"])
            return code, msgs, rec
        code, msgs, rec = run(go())
        self.assertEqual(code, 1000)
        self.assertEqual(msgs[-1], {"isFinal": True})
        audio = [m for m in msgs[:-1]]
        self.assertTrue(all(m["isFinal"] is False for m in audio))
        aligned = [m["alignment"] for m in audio if m["alignment"]]
        self.assertEqual(["".join(a["chars"]) for a in aligned],
                         ["Hello world.", "And goodbye."])
        self.assertEqual(aligned[0]["charStartTimesMs"][:3], [0, 60, 120])
        pcm = pcm_samples(b"".join(base64.b64decode(m["audio"])
                                   for m in audio))
        parts, total = split_phrases(pcm, 16000,
                                     ["Hello world.", "And goodbye."])
        self.assertEqual(len(pcm), total)
        self.assertAlmostEqual(estimate_freq(parts[0], 16000),
                               tone_freq(0, "Hello world."), delta=15)
        self.assertAlmostEqual(estimate_freq(parts[1], 16000),
                               tone_freq(1, "And goodbye."), delta=15)
        self.assertEqual([p["trigger"] for p in rec["phrases"]],
                         ["flush", "end"])
        self.assertEqual(rec["keepalives"], 1)
        self.assertEqual(rec["violations"], [])
        self.assertEqual(rec["voice_id"], "voice-9")
        self.assertEqual(rec["auth_style"], "xi-api-key")

    def test_schedule_triggers_generation(self):
        async def go():
            async with connect(eleven_url("pcm_22050", mock_id="e-sched"),
                               {"xi-api-key": KEY}) as ws:
                await ws.send(json.dumps({
                    "text": " ", "generation_config": {
                        "chunk_length_schedule": [50]}}))
                words = ("This sentence is long enough to pass the "
                         "fifty character mark. ")
                await ws.send(json.dumps({"text": words}))
                m = await recv_json(ws)
                await ws.send(json.dumps({"text": ""}))
                code, msgs = await closed_code(ws)
            return m, code, msgs
        m, code, msgs = run(go())
        self.assertIn("audio", m)
        self.assertEqual(code, 1000)
        rec = run(wait_record(lambda r: r["mock_params"].get("mock_id")
                              == "e-sched" and r["finished"]))
        self.assertEqual([p["trigger"] for p in rec["phrases"]],
                         ["schedule"])
        self.assertEqual(rec["phrases"][0]["rate"], 22050)

    def test_violations_close_1008(self):
        cases = [
            [{"text": "Hello"}],                          # first not " "
            [{"text": " "}, {"text": "no trailing space"}],
            [{"text": " "}, {"text": "x ", "voice_settings": {}}],
            [{"text": " "}, {"text": 5}],
            [{"text": " "}, {"text": "x ", "flush": "yes"}],
        ]

        async def go(msgs):
            async with connect(eleven_url(), {"xi-api-key": KEY}) as ws:
                for m in msgs:
                    await ws.send(json.dumps(m))
                return await closed_code(ws)
        for c in cases:
            code, _ = run(go(c))
            self.assertEqual(code, 1008, c)

    def test_lenient_records_several(self):
        async def go():
            async with connect(eleven_url(mock_id="e-len",
                                          mock_script="lenient"),
                               {"xi-api-key": KEY}) as ws:
                await ws.send(json.dumps({"text": " "}))
                await ws.send(json.dumps({"text": "no space"}))
                await ws.send("garbage")
                await ws.send(json.dumps({"text": "Fine. "}))
                await ws.send(json.dumps({"text": ""}))
                return await closed_code(ws)
        code, msgs = run(go())
        self.assertEqual(code, 1000)
        rec = run(wait_record(lambda r: r["mock_params"].get("mock_id")
                              == "e-len" and r["finished"]))
        self.assertEqual(len(rec["violations"]), 2)
        self.assertEqual([p["text"] for p in rec["phrases"]], ["Fine."])

    def test_handshake_checks(self):
        async def go():
            return [
                await expect_refusal(eleven_url(), {}),
                await expect_refusal(eleven_url(), {"xi-api-key": "nope"}),
                await expect_refusal(eleven_url("mp3_44100_128"),
                                     {"xi-api-key": KEY}),
                await expect_refusal(eleven_url(None), {"xi-api-key": KEY}),
                await expect_refusal(eleven_url(inactivity_timeout="999"),
                                     {"xi-api-key": KEY}),
                await expect_refusal(eleven_url(mock_script="refuse_500"),
                                     {"xi-api-key": KEY}),
                await expect_refusal(
                    "ws://127.0.0.1:%d/elsewhere" % PORT,
                    {"xi-api-key": KEY}),
            ]
        self.assertEqual(run(go()), [401, 401, 400, 400, 400, 500, 404])

    def test_inactivity_timeout(self):
        async def go():
            async with connect(eleven_url(inactivity_timeout="1",
                                          mock_id="e-idle"),
                               {"xi-api-key": KEY}) as ws:
                await ws.send(json.dumps({"text": " "}))
                return await closed_code(ws)
        code, _ = run(go())
        self.assertEqual(code, 1008)
        rec = run(wait_record(lambda r: r["mock_params"].get("mock_id")
                              == "e-idle" and r["finished"]))
        self.assertEqual(rec["idle_close"]["timeout"], 1)
        self.assertEqual(rec["violations"], [])

    def test_prefix_script_close(self):
        async def go():
            async with connect(eleven_url(), {"xi-api-key": KEY}) as ws:
                await ws.send(json.dumps({"text": " "}))
                await ws.send(json.dumps({"text": "mock:close_1011 Bye "
                                          "now. ", "flush": True}))
                return await closed_code(ws)
        code, msgs = run(go())
        self.assertEqual(code, 1011)
        self.assertEqual(len(msgs), 3)


# ---- OpenAI ----------------------------------------------------------------

class OpenAI(unittest.TestCase):

    def test_pcm_stream_odd_chunks_and_tone(self):
        text = "Speak this sentence."

        async def go():
            r = await speech(speech_body(text),
                             headers={"X-Mock-Id": "o-1"})
            r2 = await speech(speech_body(text, speed=2.0),
                              headers={"X-Mock-Id": "o-1"})
            return r, r2
        r, r2 = run(go())
        self.assertEqual(r.status, 200)
        self.assertTrue(r.complete)
        self.assertEqual(r.headers["content-type"], "audio/pcm")
        self.assertEqual(r.headers["transfer-encoding"], "chunked")
        self.assertEqual(len(r.body), 2 * samples_for(text, 24000))
        sizes = [len(c) for c in r.chunks]
        self.assertTrue(any(s % 2 for s in sizes[:-1]))
        offs, mid = 0, 0
        for s in sizes[:-1]:
            offs += s
            mid += offs % 2
        self.assertGreater(mid, 0)            # a boundary inside a sample
        self.assertAlmostEqual(estimate_freq(pcm_samples(r.body), 24000),
                               tone_freq(0, text), delta=10)
        self.assertEqual(len(r2.body), 2 * samples_for(text, 24000, 2.0))
        self.assertAlmostEqual(estimate_freq(pcm_samples(r2.body), 24000),
                               tone_freq(1, text), delta=10)
        st = run(state())
        recs = [q for q in st["requests"]
                if q["headers"].get("x-mock-id") == "o-1"]
        self.assertEqual([q["phrases"][0]["n"] for q in recs], [0, 1])
        self.assertEqual(recs[0]["end"], "complete")
        self.assertEqual(recs[0]["bytes"], len(r.body))
        self.assertEqual(sum(1 for s in recs[0]["sent"]
                             if s["type"] == "chunk"), len(sizes))

    def test_chunk_bytes_script(self):
        r = run(speech(speech_body("Odd."),
                       headers={"X-Mock-Script": "bytes_odd"}))
        self.assertEqual([len(c) for c in r.chunks[:3]], [1, 4095, 7])
        self.assertEqual(len(r.body), 2 * samples_for("Odd.", 24000))

    def test_request_errors(self):
        async def go():
            return [
                await speech(speech_body("hi"), key="wrong"),
                await speech(speech_body("hi"), key=None),
                await speech(speech_body("x" * 4097)),
                await speech(speech_body("hi", response_format="mp3")),
                await speech(speech_body("hi", speed=5)),
                await speech(speech_body("hi", voice="nobody")),
                await speech(speech_body("hi", model="tts-9")),
                await speech(speech_body("")),
                await speech(None, raw=b"{not json"),
                await speech(speech_body("hi"),
                             headers={"Content-Type": "text/plain"}),
                await speech(speech_body("hi"), method="GET"),
                await speech(speech_body("hi"), path="/v1/other"),
            ]
        rs = run(go())
        self.assertEqual([r.status for r in rs],
                         [401, 401, 400, 400, 400, 400, 400, 400, 400, 400,
                          405, 404])
        e = json.loads(rs[0].body)["error"]
        self.assertEqual(e["code"], "invalid_api_key")
        self.assertEqual(json.loads(rs[2].body)["error"]["param"], "input")
        # exactly 4096 characters is allowed
        ok = run(speech(speech_body("y" * 4096, model="tts-1"),
                        headers={"X-Mock-Script": "fast"}))
        self.assertEqual(ok.status, 200)

    def test_faults(self):
        async def go():
            return [
                await speech(speech_body("mock:error_midstream Cut me.")),
                await speech(speech_body("mock:refuse_500 Nope.")),
                await speech(speech_body("Again.", ),
                             path="/v1/audio/speech?mock_script=refuse_401"),
                await speech(speech_body("mock:refuse_500,fast Retry.")),
                await speech(speech_body("mock:refuse_500,fast Retry.")),
            ]
        rs = run(go())
        self.assertEqual(rs[0].status, 200)
        self.assertFalse(rs[0].complete)
        self.assertEqual(len(rs[0].chunks), 3)
        self.assertEqual([r.status for r in rs[1:]], [500, 401, 500, 200])
        self.assertTrue(rs[4].complete)

    def test_client_close_is_seen(self):
        async def go():
            r = await speech(speech_body("Long enough to hang up on."),
                             headers={"X-Mock-Script": "paced",
                                      "X-Mock-Id": "o-hang"},
                             close_after_chunks=1)
            rec = await wait_record(
                lambda q: q["headers"].get("x-mock-id") == "o-hang"
                and q["finished"], kind="requests")
            return r, rec
        r, rec = run(go())
        self.assertEqual(len(r.chunks), 1)
        self.assertEqual(rec["end"], "client_closed")
        self.assertIsNotNone(rec["client_closed"])
        self.assertLess(rec["bytes"], 2 * rec["phrases"][0]["samples"])

    def test_keep_alive(self):
        async def go():
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
            out = []
            for text in ("One.", "Two."):
                body = json.dumps(speech_body(text)).encode()
                writer.write(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n"
                             b"Authorization: Bearer " + KEY.encode() +
                             b"\r\nContent-Type: application/json\r\n"
                             b"X-Mock-Script: fast\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body)
                             + body)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                data = bytearray()
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    data += await reader.readexactly(size)
                    await reader.readexactly(2)
                out.append((head, bytes(data)))
            writer.close()
            return out
        out = run(go())
        self.assertEqual(len(out), 2)
        for head, data in out:
            self.assertTrue(head.startswith(b"HTTP/1.1 200"))
            self.assertEqual(len(data), 2 * samples_for("One.", 24000))


# ---- the state endpoint and the command line -------------------------------

class State(unittest.TestCase):

    def test_long_poll_wakes_on_change(self):
        async def go():
            st = await state()
            poll = asyncio.ensure_future(state(since=st["version"]))
            await speech(speech_body("Wake up."),
                         headers={"X-Mock-Script": "fast"})
            st2 = await asyncio.wait_for(poll, WAIT)
            return st, st2
        st, st2 = run(go())
        self.assertGreater(st2["version"], st["version"])

    def test_records_on_disk(self):
        files = os.listdir(STATE)
        self.assertTrue(any(f.startswith("conn-") for f in files))
        self.assertTrue(any(f.startswith("request-") for f in files))

    def test_bad_script_file_exits_2(self):
        tmp = tempfile.mkdtemp(prefix="tts-mock-bad-")
        try:
            path = os.path.join(tmp, "bad.json")
            with open(path, "w") as f:
                json.dump({"scripts": {"x": {"rtf": -1}}}, f)
            p = subprocess.run([sys.executable, MOCK, "--port", "0",
                                "--state-dir", tmp, "--key", "k",
                                "--script", path], capture_output=True,
                               timeout=20)
            self.assertEqual(p.returncode, 2)
            self.assertIn(b"rtf", p.stderr)
            self.assertEqual(p.stdout, b"")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    return selftest.run("tts mock", MOCK, KEY, LIBRARY, sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(main())
