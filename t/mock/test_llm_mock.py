#!/usr/bin/python3
"""Self-test of the LLM mock (t/mock/llm.py).

Starts the mock, sends it requests the way a correct client does and the
way faulty ones do, and checks the streams it answers with and the records
it keeps.  Prints `llm mock: N passed, M failed` last and exits non-zero
when anything failed.  Standard library only.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import selftest

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "llm.py")
KEY = "llm-mock-self-test-key"
WAIT = 10.0

LIBRARY = {
    "scripts": {
        "quick": {"tokens": ["one", " two", " three"], "rate": 0},
        "tool_city": {
            "tool_calls": [{"name": "lookup", "id": "call_fixed",
                            "arguments": {"city": "Lyon"},
                            "fragments": 5}],
            "after_tool": ["tool_city_2", "quick"],
        },
        "tool_city_2": {
            "tool_calls": [{"name": "lookup",
                            "arguments": {"city": "Nice"}}],
            "after_tool": "quick",
        },
        "lenient": {"violations": "record", "text": "fine"},
    },
    "tools": {"echo": {"body": {"echoed": True}}},
}

PORT = None
STATE = None


# ---- a small HTTP/1.1 client -----------------------------------------------

class Response:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.reads = 0          # how many socket reads the body took
        self.eof = False


async def read_response(reader, resp, chunked_ok=True):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    resp.status = int(lines[0].split(" ")[1])
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            resp.headers[k.strip().lower()] = v.strip()
    if "content-length" in resp.headers:
        resp.body = await reader.readexactly(
            int(resp.headers["content-length"]))
    elif resp.headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.strip(), 16)
                resp.reads += 1
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            resp.eof = True     # the server closed inside the body
        resp.body = bytes(body)
    else:
        resp.body = await reader.read()
        resp.eof = True
    return resp


async def request(path, body=None, headers=None, method="POST",
                  raw=None, conn=None):
    """One request; returns the response (and keeps conn open if given)."""
    if conn is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    else:
        reader, writer = conn
    data = raw if raw is not None else (
        json.dumps(body).encode() if body is not None else b"")
    h = {"Host": "127.0.0.1", "Content-Length": str(len(data))}
    h.update(headers or {})
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
        "%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    writer.write(head.encode() + data)
    await writer.drain()
    resp = await asyncio.wait_for(read_response(reader, Response()), WAIT)
    if conn is None:
        writer.close()
    return resp


def openai_headers(key=KEY):
    return {"Authorization": "Bearer " + key,
            "Content-Type": "application/json"}


def anthropic_headers(key=KEY, version="2023-06-01"):
    h = {"x-api-key": key, "Content-Type": "application/json"}
    if version:
        h["anthropic-version"] = version
    return h


def oa_body(text, **extra):
    b = {"model": "gpt-test", "stream": True, "temperature": 0.7,
         "messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": text}]}
    b.update(extra)
    return b


def an_body(text, **extra):
    b = {"model": "claude-test", "stream": True, "max_tokens": 100,
         "system": "Be brief.",
         "messages": [{"role": "user", "content": text}]}
    b.update(extra)
    return b


def sse_events(body):
    """[(event name or None, data text)] of an SSE body (LF or CRLF)."""
    text = body.decode("utf-8").replace("\r\n", "\n")
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((name, "\n".join(data)))
    return out


def openai_text(resp):
    text = ""
    for _, data in sse_events(resp.body):
        if data == "[DONE]":
            continue
        obj = json.loads(data)
        for c in obj.get("choices", []):
            text += c["delta"].get("content") or ""
    return text


def anthropic_text(resp):
    text = ""
    for name, data in sse_events(resp.body):
        obj = json.loads(data)
        if obj["type"] == "content_block_delta" and \
                obj["delta"]["type"] == "text_delta":
            text += obj["delta"]["text"]
    return text


# ---- the mock's records ----------------------------------------------------

async def state(since=None, timeout=5):
    path = "/_mock/state" + ("?since=%d&timeout=%s" % (since, timeout)
                             if since is not None else "")
    r = await request(path, method="GET")
    return json.loads(r.body)


async def record_where(cond, kind="requests"):
    deadline = time.monotonic() + WAIT
    st = await state()
    while True:
        for r in st[kind]:
            if cond(r):
                return r
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no record matched")
        st = await state(st["version"], min(left, 5))


async def finished_record(user_text):
    return await record_where(lambda r: r["user_text"] == user_text
                              and r["finished"])


# ---- tests -----------------------------------------------------------------

class OpenAI(unittest.IsolatedAsyncioTestCase):

    async def test_default_stream(self):
        r = await request("/v1/chat/completions",
                          oa_body("hello from test one.",
                                  stream_options={"include_usage": True}),
                          openai_headers())
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"]
                        .startswith("text/event-stream"))
        ev = sse_events(r.body)
        self.assertEqual(ev[-1], (None, "[DONE]"))
        chunks = [json.loads(d) for _, d in ev[:-1]]
        first = chunks[0]["choices"][0]["delta"]
        self.assertEqual(first, {"role": "assistant", "content": "",
                                 "refusal": None})
        fin = chunks[-2]["choices"][0]
        self.assertEqual(fin["delta"], {})
        self.assertEqual(fin["finish_reason"], "stop")
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertIn("completion_tokens", chunks[-1]["usage"])
        text = openai_text(r)
        self.assertEqual(text, "I heard: hello from test one. That is an "
                         "interesting point. Let me think about it. Here is "
                         "my answer.")
        self.assertGreaterEqual(len(chunks) - 3, 5)
        rec = await finished_record("hello from test one.")
        self.assertEqual(rec["violations"], [])
        self.assertEqual(rec["auth"], "ok")
        self.assertEqual(rec["end"], "complete")
        self.assertEqual(rec["headers"]["authorization"],
                         "Bearer <%d bytes, not recorded>" % len(KEY))
        sent = [s["text"] for s in rec["sent"] if s["kind"] == "text"]
        self.assertEqual("".join(sent), text)
        with open(os.path.join(STATE, "request-%d.json" % rec["id"])) as f:
            self.assertNotIn(KEY, f.read())

    async def test_no_usage_without_option(self):
        r = await request("/v1/chat/completions", oa_body("no usage"),
                          openai_headers())
        chunks = [json.loads(d) for _, d in sse_events(r.body)[:-1]]
        self.assertTrue(all(c["choices"] for c in chunks))
        self.assertTrue(all("usage" not in c for c in chunks))

    async def test_auth(self):
        for h in (openai_headers("wrong"), {"Content-Type":
                                            "application/json"},
                  dict(openai_headers(), Authorization="Token " + KEY)):
            r = await request("/v1/chat/completions", oa_body("auth?"), h)
            self.assertEqual(r.status, 401)
            err = json.loads(r.body)["error"]
            self.assertEqual(err["code"], "invalid_api_key")
            self.assertIn("message", err)

    async def test_shape_violations(self):
        bad = [
            oa_body("x", stream=False),
            oa_body("x", model=""),
            oa_body("x", temperature=2.5),
            {"model": "m", "stream": True, "messages": [
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "nope", "content": "1"}]},
            {"model": "m", "stream": True, "messages": [
                {"role": "user", "content": "x"},
                {"role": "system", "content": "late"},
                {"role": "user", "content": "y"}]},
            {"model": "m", "stream": True, "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {
                        "name": "f", "arguments": "{}"}}]},
                {"role": "user", "content": "y"}]},
            oa_body("x", tools=[{"type": "function",
                                 "function": {"name": "bad name!"}}]),
        ]
        for b in bad:
            r = await request("/v1/chat/completions", b, openai_headers())
            self.assertEqual(r.status, 400, json.dumps(b))
            self.assertIn("error", json.loads(r.body))
        r = await request("/v1/chat/completions", oa_body("ctype"),
                          dict(openai_headers(),
                               **{"Content-Type": "text/plain"}))
        self.assertEqual(r.status, 400)
        rec = await record_where(lambda r: r["body"] is not None and
                                 r["body"].get("temperature") == 2.5)
        self.assertTrue(rec["violations"])

    async def test_lenient_records_and_plays(self):
        r = await request("/v1/chat/completions",
                          oa_body("mock:lenient", stream=False),
                          openai_headers())
        self.assertEqual(r.status, 200)
        rec = await finished_record("mock:lenient")
        self.assertTrue(rec["violations"])

    async def test_tool_round_trip(self):
        r = await request("/v1/chat/completions",
                          oa_body("mock:tool_weather what is it like"),
                          openai_headers())
        chunks = [json.loads(d) for _, d in sse_events(r.body)[:-1]]
        frags = [c["choices"][0]["delta"]["tool_calls"][0]
                 for c in chunks if "tool_calls" in
                 c["choices"][0]["delta"]]
        self.assertGreaterEqual(len(frags), 3)
        self.assertIn("id", frags[0])
        self.assertEqual(frags[0]["function"]["name"], "get_weather")
        self.assertTrue(all("id" not in f for f in frags[1:]))
        args = "".join(f["function"].get("arguments", "") for f in frags)
        self.assertEqual(json.loads(args),
                         {"city": "Paris", "unit": "celsius"})
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"],
                         "tool_calls")
        body = oa_body("mock:tool_weather what is it like")
        body["messages"] += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": frags[0]["id"], "type": "function",
                 "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": frags[0]["id"],
             "content": "{\"temp_c\":21}"}]
        r = await request("/v1/chat/completions", body, openai_headers())
        self.assertEqual(r.status, 200)
        self.assertEqual(openai_text(r),
                         "The tool said {\"temp_c\":21}. That is all.")

    async def test_after_tool_list(self):
        """after_tool as a list: the Nth tool round plays the Nth name."""
        body = oa_body("mock:tool_city go")
        r = await request("/v1/chat/completions", body, openai_headers())
        chunks = [json.loads(d) for _, d in sse_events(r.body)[:-1]]
        first = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
        self.assertEqual(first["id"], "call_fixed")
        body["messages"] += [
            {"role": "assistant", "tool_calls": [
                {"id": "call_fixed", "type": "function",
                 "function": {"name": "lookup",
                              "arguments": "{\"city\":\"Lyon\"}"}}]},
            {"role": "tool", "tool_call_id": "call_fixed", "content": "ok"}]
        r = await request("/v1/chat/completions", body, openai_headers())
        self.assertIn(b"Nice", r.body)
        body["messages"] += [
            {"role": "assistant", "tool_calls": [
                {"id": "call_2", "type": "function",
                 "function": {"name": "lookup",
                              "arguments": "{\"city\":\"Nice\"}"}}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "ok"}]
        r = await request("/v1/chat/completions", body, openai_headers())
        self.assertEqual(openai_text(r), "one two three")

    async def test_sequence_retry(self):
        body = oa_body("mock:error_500,error_429,default seq")
        codes = []
        for _ in range(3):
            r = await request("/v1/chat/completions", body, openai_headers())
            codes.append(r.status)
        self.assertEqual(codes, [500, 429, 200])
        self.assertEqual(json.loads(
            (await request("/v1/chat/completions", oa_body("mock:error_429"),
                           openai_headers())).body)["error"]["code"],
            "rate_limit_exceeded")

    async def test_midstream_error_and_malformed(self):
        r = await request("/v1/chat/completions",
                          oa_body("mock:midstream_error"), openai_headers())
        datas = [d for _, d in sse_events(r.body)]
        self.assertIn("error", json.loads(datas[-1]))
        self.assertNotIn("[DONE]", datas)
        r = await request("/v1/chat/completions", oa_body("mock:malformed"),
                          openai_headers())
        bad = 0
        for _, d in sse_events(r.body):
            try:
                json.loads(d)
            except ValueError:
                bad += d != "[DONE]"
        self.assertEqual(bad, 1)

    async def test_split_crlf(self):
        r = await request("/v1/chat/completions", oa_body("mock:split"),
                          openai_headers())
        self.assertIn(b"\r\n\r\n", r.body)
        self.assertGreater(r.reads, 50)
        self.assertTrue(openai_text(r).startswith("Caf\u00e9 cr\u00e8me"))

    async def test_no_done_closes(self):
        r = await request("/v1/chat/completions", oa_body("mock:no_done"),
                          openai_headers())
        self.assertNotIn(b"[DONE]", r.body)
        self.assertTrue(r.eof)
        self.assertIn("stop", openai_text(r) and r.body.decode())
        rec = await finished_record("mock:no_done")
        self.assertEqual(rec["end"], "no_done")

    async def test_keep_alive(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        try:
            for t in ("ka one", "ka two"):
                r = await request("/v1/chat/completions", oa_body(t),
                                  openai_headers(), conn=(reader, writer))
                self.assertEqual(r.status, 200)
        finally:
            writer.close()
        a = await finished_record("ka one")
        b = await finished_record("ka two")
        self.assertEqual(a["conn"], b["conn"])

    async def test_close_while_stalled_is_recorded(self):
        for script in ("stall_3", "stall_headers", "stall_before_headers",
                       "long"):
            text = "mock:%s close" % script
            reader, writer = await asyncio.open_connection("127.0.0.1",
                                                           PORT)
            data = json.dumps(oa_body(text)).encode()
            writer.write(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          "Authorization: Bearer %s\r\nContent-Type: "
                          "application/json\r\nContent-Length: %d\r\n\r\n"
                          % (KEY, len(data))).encode() + data)
            await writer.drain()
            if script != "stall_before_headers":
                await reader.readuntil(b"\r\n\r\n")
            if script in ("stall_3", "long"):
                await reader.readuntil(b"content")
            closed = time.time()
            writer.close()
            rec = await finished_record(text)
            self.assertEqual(rec["end"], "client_closed")
            self.assertIsNotNone(rec["client_closed"])
            self.assertGreaterEqual(rec["client_closed"], closed - 0.001)
            print("  %s: close seen after %.1f ms"
                  % (script, 1000 * (rec["client_closed"] - closed)))


class Anthropic(unittest.IsolatedAsyncioTestCase):

    async def test_default_stream(self):
        r = await request("/v1/messages",
                          an_body("mock:long anthropic hello"),
                          anthropic_headers())
        self.assertEqual(r.status, 200)
        ev = sse_events(r.body)
        names = [n for n, _ in ev]
        for n, d in ev:
            self.assertEqual(json.loads(d)["type"], n)
        self.assertEqual(names[0], "message_start")
        self.assertEqual(names[-2:], ["message_delta", "message_stop"])
        self.assertIn("ping", names)
        core = [n for n in names if n != "ping"]
        self.assertEqual(core[1], "content_block_start")
        self.assertEqual(core[-3], "content_block_stop")
        md = json.loads(ev[-2][1])
        self.assertEqual(md["delta"]["stop_reason"], "end_turn")
        self.assertGreater(md["usage"]["output_tokens"], 5)
        self.assertTrue(anthropic_text(r).startswith("Sentence number 1"))
        rec = await finished_record("mock:long anthropic hello")
        self.assertEqual(rec["violations"], [])
        self.assertEqual(rec["headers"]["x-api-key"],
                         "<%d bytes, not recorded>" % len(KEY))

    async def test_auth(self):
        r = await request("/v1/messages", an_body("x"),
                          anthropic_headers("wrong"))
        self.assertEqual(r.status, 401)
        self.assertEqual(json.loads(r.body),
                         {"type": "error", "error": {
                             "type": "authentication_error",
                             "message": json.loads(r.body)["error"]
                             ["message"]}})
        r = await request("/v1/messages", an_body("x"),
                          anthropic_headers(version=None))
        self.assertEqual(r.status, 401)
        r = await request("/v1/messages", an_body("x"),
                          anthropic_headers(version="2024-01-01"))
        self.assertEqual(r.status, 400)
        r = await request("/v1/messages", an_body("x"), openai_headers())
        self.assertEqual(r.status, 401)

    async def test_shape_violations(self):
        nomax = an_body("x")
        del nomax["max_tokens"]
        bad = [
            nomax,
            an_body("x", temperature=1.5),
            an_body("x", stream=False),
            {"model": "m", "stream": True, "max_tokens": 5, "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "x"}]},
            {"model": "m", "stream": True, "max_tokens": 5, "messages": [
                {"role": "user", "content": "x"},
                {"role": "user", "content": "y"}]},
            {"model": "m", "stream": True, "max_tokens": 5, "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "y"}]},
            {"model": "m", "stream": True, "max_tokens": 5, "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "f",
                     "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t2",
                     "content": "r"}]}]},
            an_body("x", tools=[{"name": "f", "input_schema": {}}]),
        ]
        for b in bad:
            r = await request("/v1/messages", b, anthropic_headers())
            self.assertEqual(r.status, 400, json.dumps(b))
            self.assertEqual(json.loads(r.body)["error"]["type"],
                             "invalid_request_error")

    async def test_tool_round_trip(self):
        text = "mock:tool_text_first where"
        r = await request("/v1/messages", an_body(text), anthropic_headers())
        ev = [json.loads(d) for _, d in sse_events(r.body)]
        starts = [e["content_block"] for e in ev
                  if e["type"] == "content_block_start"]
        self.assertEqual([s["type"] for s in starts], ["text", "tool_use"])
        use = starts[1]
        parts = [e["delta"]["partial_json"] for e in ev
                 if e["type"] == "content_block_delta"
                 and e["delta"]["type"] == "input_json_delta"]
        self.assertGreaterEqual(len(parts), 2)
        self.assertEqual(json.loads("".join(parts)), {"city": "Oslo"})
        stop = [e for e in ev if e["type"] == "message_delta"][0]
        self.assertEqual(stop["delta"]["stop_reason"], "tool_use")
        body = an_body(text)
        body["messages"] += [
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check that for you."},
                {"type": "tool_use", "id": use["id"], "name": use["name"],
                 "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use["id"],
                 "content": "cold"}]}]
        r = await request("/v1/messages", body, anthropic_headers())
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(anthropic_text(r), "The tool said cold. That is all.")

    async def test_errors(self):
        r = await request("/v1/messages", an_body("mock:midstream_error"),
                          anthropic_headers())
        ev = sse_events(r.body)
        self.assertEqual(ev[-1][0], "error")
        self.assertEqual(json.loads(ev[-1][1])["error"]["type"],
                         "overloaded_error")
        r = await request("/v1/messages", an_body("mock:error_529"),
                          anthropic_headers())
        self.assertEqual(r.status, 529)
        self.assertEqual(json.loads(r.body)["error"]["type"],
                         "overloaded_error")


class Tools(unittest.IsolatedAsyncioTestCase):

    async def test_tool_endpoint(self):
        r = await request("/tool/weather", {"city": "Paris"},
                          {"Content-Type": "application/json"})
        self.assertEqual(json.loads(r.body),
                         {"temp_c": 21, "conditions": "sunny"})
        r = await request("/tool/echo", {"a": 1})
        self.assertEqual(json.loads(r.body), {"echoed": True})
        r = await request("/tool/unknown_one", {"b": 2})
        self.assertEqual(json.loads(r.body), {"ok": True})
        rec = await record_where(lambda r: r["name"] == "unknown_one",
                                 "tool_calls")
        self.assertEqual(rec["body"], {"b": 2})
        r = await request("/tool/fail", {})
        self.assertEqual(r.status, 500)


class Misc(unittest.IsolatedAsyncioTestCase):

    async def test_long_poll_wakes(self):
        st = await state()
        poll = asyncio.ensure_future(state(st["version"], 8))
        await asyncio.sleep(0)
        t0 = time.monotonic()
        await request("/tool/x", {})
        st2 = await poll
        self.assertGreater(st2["version"], st["version"])
        self.assertLess(time.monotonic() - t0, 8)

    async def test_unknown_script_and_path(self):
        r = await request("/v1/chat/completions", oa_body("mock:nosuch"),
                          openai_headers())
        self.assertEqual(r.status, 400)
        r = await request("/v2/other", {})
        self.assertEqual(r.status, 404)

    def test_bad_script_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json",
                                         delete=False) as f:
            json.dump({"scripts": {"x": {"rat": 3}}}, f)
        try:
            p = subprocess.run([sys.executable, MOCK, "--state-dir",
                                STATE, "--key", "k", "--script", f.name],
                               capture_output=True, text=True, timeout=20)
        finally:
            os.unlink(f.name)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown keys", p.stderr)


def main():
    return selftest.run("llm mock", MOCK, KEY, LIBRARY, sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(main())
