#!/usr/bin/python3
"""A stand-in for streaming chat model providers, over plain HTTP/1.1.

One server speaks two dialects: OpenAI-compatible Chat Completions
(POST /v1/chat/completions) and Anthropic Messages (POST /v1/messages).
It checks each request the way the provider would, answers with a
server-sent event stream played from a script, injects faults when the
script says so, and records everything so that a test can see what its
client really sent and when it hung up.  Standard library only.

Read t/mock/README.md (section "LLM mock") for the scripts and records.
"""

import argparse
import asyncio
import copy
import hashlib
import json
import os
import random
import re
import signal
import socket
import sys
import time
import urllib.parse

import records

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
STATE_PATH = "/_mock/state"
TOOL_PREFIX = "/tool/"
ANTHROPIC_VERSION = "2023-06-01"

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
SELECTOR = re.compile(r"^mock:([A-Za-z0-9_.,-]+)\s*")

DEFAULT_TEXT = ("I heard: {user}. That is an interesting point. "
                "Let me think about it. Here is my answer.")

LONG_TEXT = " ".join(
    "Sentence number %d of a long reply goes on for a while." % i
    for i in range(1, 13))

SPLIT_TEXT = ("Caf\u00e9 cr\u00e8me, na\u00efve \u00fcber \u2014 "
              "\u4f60\u597d \u4e16\u754c \U0001f389 and \U0001f600. "
              "Split pieces still make whole words. The end.")

# Built-in scripts; a --script file adds to them or replaces them.
BUILTIN = {
    "default": {"text": DEFAULT_TEXT},
    "long": {"text": LONG_TEXT, "rate": 20},
    "unicode": {"text": SPLIT_TEXT},
    "split": {"text": SPLIT_TEXT, "split": True, "crlf": True},
    "slow_first": {"ttft": 2.0},
    "length": {"text": "This reply is cut short by the token limit and",
               "finish": "length"},
    "error_401": {"status": 401},
    "error_400": {"status": 400},
    "error_429": {"status": 429, "headers": {"retry-after": "0"}},
    "error_500": {"status": 500},
    "error_529": {"status": 529},
    "midstream_error": {"text": "This reply breaks off in the middle "
                                "of a sentence because",
                        "error_after": 3},
    "stall_before_headers": {"stall_before_headers": True},
    "stall_headers": {"stall_after_headers": True},
    "stall_3": {"stall_after": 3},
    "malformed": {"malformed_after": 2},
    "no_done": {"no_done": True},
    "tool_weather": {
        "tool_calls": [{"name": "get_weather",
                        "arguments": {"city": "Paris", "unit": "celsius"},
                        "fragments": 4}],
        "after_tool": "tool_answer",
    },
    "tool_text_first": {
        "text": "Let me check that for you.",
        "tool_calls": [{"name": "get_weather",
                        "arguments": {"city": "Oslo"}, "fragments": 3}],
        "after_tool": "tool_answer",
    },
    "tool_two": {
        "tool_calls": [{"name": "get_weather",
                        "arguments": {"city": "Paris"}, "fragments": 3},
                       {"name": "get_weather",
                        "arguments": {"city": "Rome"}, "fragments": 2}],
        "after_tool": "tool_answer",
    },
    "tool_answer": {"text": "The tool said {tool_result}. That is all."},
}

# Answers of POST /tool/<name>; others get {"ok": true}.
BUILTIN_TOOLS = {
    "weather": {"body": {"temp_c": 21, "conditions": "sunny"}},
    "fail": {"status": 500, "body": {"error": "the tool broke"}},
    "slow": {"delay": 30, "body": {"ok": True}},
}

SCRIPT_KEYS = {
    "description", "text", "tokens", "ttft", "rate", "delays",
    "tool_calls", "finish", "usage", "status", "body", "headers",
    "error_after", "error", "stall_before_headers", "stall_after",
    "stall_after_headers",
    "malformed_after", "malformed_text", "split", "split_seed",
    "split_max", "crlf", "no_done", "ping_every", "after_tool",
    "json_style", "framing", "violations",
}
TOOL_CALL_KEYS = {"name", "id", "arguments", "fragments"}
TOOL_KEYS = {"status", "body", "delay", "headers"}


class ScriptError(Exception):
    pass


def _r(x):
    return round(x, 4)


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# ---- scripts ---------------------------------------------------------------

def check_script(name, s):
    if not isinstance(s, dict):
        raise ScriptError("script %s: not an object" % name)
    bad = set(s) - SCRIPT_KEYS
    if bad:
        raise ScriptError("script %s: unknown keys %s" % (name, sorted(bad)))
    for k in ("ttft", "rate"):
        if k in s and (not _num(s[k]) or s[k] < 0):
            raise ScriptError("script %s: %s must be a number >= 0"
                              % (name, k))
    for k in ("error_after", "stall_after", "malformed_after", "ping_every",
              "split_seed", "split_max"):
        if k in s and (not _int(s[k]) or s[k] < 0):
            raise ScriptError("script %s: %s must be an integer >= 0"
                              % (name, k))
    if "delays" in s and (not isinstance(s["delays"], list)
                          or not all(_num(d) and d >= 0
                                     for d in s["delays"])):
        raise ScriptError("script %s: delays must be numbers >= 0" % name)
    if "tokens" in s and (not isinstance(s["tokens"], list)
                          or not all(isinstance(t, str)
                                     for t in s["tokens"])):
        raise ScriptError("script %s: tokens must be strings" % name)
    if "text" in s and not isinstance(s["text"], str):
        raise ScriptError("script %s: text must be a string" % name)
    if "status" in s and (not _int(s["status"])
                          or not 400 <= s["status"] <= 599):
        raise ScriptError("script %s: status must be 400..599" % name)
    if s.get("framing", "chunked") not in ("chunked", "close"):
        raise ScriptError("script %s: framing is chunked or close" % name)
    if s.get("json_style", "compact") not in ("compact", "spaced"):
        raise ScriptError("script %s: json_style is compact or spaced"
                          % name)
    if s.get("violations", "refuse") not in ("refuse", "record"):
        raise ScriptError("script %s: violations is refuse or record" % name)
    for tc in s.get("tool_calls", []):
        if not isinstance(tc, dict) or "name" not in tc:
            raise ScriptError("script %s: a tool call needs a name" % name)
        bad = set(tc) - TOOL_CALL_KEYS
        if bad:
            raise ScriptError("script %s: tool call keys %s"
                              % (name, sorted(bad)))
        if "fragments" in tc and (not _int(tc["fragments"])
                                  or tc["fragments"] < 1):
            raise ScriptError("script %s: fragments must be >= 1" % name)
    at = s.get("after_tool")
    if at is not None and not isinstance(at, (str, list)):
        raise ScriptError("script %s: after_tool is a name or a list" % name)


def load_scripts(path):
    scripts = copy.deepcopy(BUILTIN)
    tools = copy.deepcopy(BUILTIN_TOOLS)
    if path:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ScriptError("the script file is not a JSON object")
        if "scripts" in data or "tools" in data:
            bad = set(data) - {"scripts", "tools", "default"}
            if bad:
                raise ScriptError("unknown library keys %s" % sorted(bad))
            scripts.update(data.get("scripts", {}))
            for name, spec in data.get("tools", {}).items():
                if not isinstance(spec, dict) or set(spec) - TOOL_KEYS:
                    raise ScriptError("tool %s: keys are %s"
                                      % (name, sorted(TOOL_KEYS)))
                tools[name] = spec
            if "default" in data:
                if data["default"] not in scripts:
                    raise ScriptError("default names no script")
                scripts["default"] = scripts[data["default"]]
        else:
            scripts["default"] = data
    for name, s in scripts.items():
        check_script(name, s)
    for name, s in scripts.items():
        at = s.get("after_tool")
        for n in ([at] if isinstance(at, str) else at or []):
            if n not in scripts:
                raise ScriptError("script %s: after_tool names unknown %s"
                                  % (name, n))
    return scripts, tools


def tokenize(text):
    """Words with the space before them: 'a b.' -> ['a', ' b.']"""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


# ---- records ---------------------------------------------------------------

class Registry(records.Registry):
    """The model requests and the tool calls."""

    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.requests = []
        self.tool_calls = []

    def new_record(self, kind):
        rec = Record(self, self.take_id(), kind)
        (self.tool_calls if kind == "tool" else self.requests).append(rec)
        rec.touch()
        return rec


    def snapshot(self):
        return {"version": self.version,
                "requests": [r.data for r in self.requests],
                "tool_calls": [r.data for r in self.tool_calls]}



class Record(records.Record):
    """What one request did, as plain JSON data."""

    def __init__(self, registry, rid, kind):
        super().__init__(registry, "%s-%d" % (kind, rid))
        self.data = {
            "id": rid,
            "kind": kind,
            "conn": None,
            "started": records.now_iso(),
            "wall": time.time(),
            "method": None,
            "path": None,
            "dialect": None,
            "headers": {},
            "auth": None,
            "body": None,
            "raw_body": None,
            "user_text": None,
            "script": None,
            "script_sequence": None,
            "script_index": None,
            "status": None,
            "notes": [],
            "violations": [],
            "sent": [],
            "end": None,
            "client_closed": None,
            "finished": False,
        }

    def violation(self, what):
        self.data["violations"].append({"t": self.t(), "what": what})
        self.touch()

    def note(self, what):
        self.data["notes"].append(what)
        self.touch()

    def sent(self, kind, **fields):
        entry = {"t": self.t(), "wall": time.time(), "kind": kind}
        entry.update(fields)
        self.data["sent"].append(entry)
        self.touch()

    def finish(self, end):
        if self.data["finished"]:
            return
        self.data["end"] = end
        self.data["finished"] = True
        self.data["finished_t"] = self.t()
        self.registry.bump()
        self.flush()


# ---- request checks --------------------------------------------------------

def _text_of(content):
    """The text of a message's content: a string, or the text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text"
                       and isinstance(p.get("text"), str))
    return ""


def _check_common(body, v):
    model = body.get("model")
    if not isinstance(model, str) or not model:
        v("model must be a non-empty string")
    if body.get("stream") is not True:
        v("stream must be true, got %r" % (body.get("stream"),))
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        v("messages must be a non-empty array")
        return []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            v("messages[%d] is not an object" % i)
            return []
    return msgs


def check_openai(body, v, note):
    msgs = _check_common(body, v)
    t = body.get("temperature")
    if t is not None and (not _num(t) or not 0 <= t <= 2):
        v("temperature must be a number in 0..2, got %r" % (t,))
    for k in ("max_tokens", "max_completion_tokens"):
        if k in body and (not _int(body[k]) or body[k] < 1):
            v("%s must be a positive integer" % k)
    so = body.get("stream_options")
    if so is not None:
        if not isinstance(so, dict) or set(so) - {"include_usage"} or \
                not isinstance(so.get("include_usage", False), bool):
            v("stream_options must be {\"include_usage\": bool}")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            v("tools must be a non-empty array")
        else:
            for i, tool in enumerate(tools):
                if not isinstance(tool, dict) or tool.get("type") != \
                        "function" or not isinstance(tool.get("function"),
                                                     dict):
                    v("tools[%d] must be {type: function, function: {...}}"
                      % i)
                    continue
                fn = tool["function"]
                if not isinstance(fn.get("name"), str) or \
                        not TOOL_NAME.match(fn["name"]):
                    v("tools[%d].function.name is not a valid name" % i)
                if "description" in fn and \
                        not isinstance(fn["description"], str):
                    v("tools[%d].function.description is not a string" % i)
                p = fn.get("parameters")
                if p is not None and (not isinstance(p, dict)
                                      or p.get("type") != "object"):
                    v("tools[%d].function.parameters must be a JSON schema "
                      "of type object" % i)
        tc = body.get("tool_choice")
        if tc is not None and tc not in ("auto", "none", "required") and \
                not isinstance(tc, dict):
            v("tool_choice has a bad value")
    known = {"model", "messages", "stream", "stream_options", "temperature",
             "max_tokens", "max_completion_tokens", "tools", "tool_choice",
             "top_p", "user", "stop", "n", "parallel_tool_calls", "seed"}
    for k in sorted(set(body) - known):
        note("unknown field %s" % k)

    pending = []            # tool call ids still to be answered
    seen_ids = set()
    seen_other = False
    for i, m in enumerate(msgs):
        role = m.get("role")
        if pending and role != "tool":
            v("messages[%d]: tool calls %s were not answered before it"
              % (i, pending))
            pending = []
        if role in ("system", "developer"):
            if seen_other:
                v("messages[%d]: a system message after the conversation "
                  "began" % i)
            if not isinstance(m.get("content"), (str, list)) or \
                    not _text_of(m.get("content")):
                v("messages[%d]: system content must be non-empty text" % i)
            continue
        seen_other = True
        if role == "user":
            c = m.get("content")
            if not isinstance(c, (str, list)):
                v("messages[%d]: user content must be a string or parts" % i)
            elif isinstance(c, list) and not all(
                    isinstance(p, dict) and p.get("type") in
                    ("text", "image_url", "input_audio") for p in c):
                v("messages[%d]: bad user content parts" % i)
            elif not _text_of(c):
                v("messages[%d]: empty user text" % i)
        elif role == "assistant":
            c = m.get("content")
            calls = m.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    v("messages[%d]: tool_calls must be a non-empty array"
                      % i)
                    calls = []
                for j, call in enumerate(calls):
                    ok = (isinstance(call, dict)
                          and isinstance(call.get("id"), str)
                          and call.get("id")
                          and call.get("type") == "function"
                          and isinstance(call.get("function"), dict)
                          and isinstance(call["function"].get("name"), str)
                          and isinstance(call["function"].get("arguments"),
                                         str))
                    if not ok:
                        v("messages[%d].tool_calls[%d] has a bad shape"
                          % (i, j))
                        continue
                    try:
                        args = json.loads(call["function"]["arguments"])
                        if not isinstance(args, dict):
                            raise ValueError
                    except ValueError:
                        v("messages[%d].tool_calls[%d].function.arguments "
                          "is not a JSON object text" % (i, j))
                    if call["id"] in seen_ids:
                        v("messages[%d]: tool call id %s used twice"
                          % (i, call["id"]))
                    seen_ids.add(call["id"])
                    pending.append(call["id"])
                if c is not None and not isinstance(c, (str, list)):
                    v("messages[%d]: assistant content has a bad type" % i)
            elif not isinstance(c, (str, list)):
                v("messages[%d]: assistant content must be text" % i)
            elif not _text_of(c):
                v("messages[%d]: empty assistant text" % i)
        elif role == "tool":
            tid = m.get("tool_call_id")
            if not isinstance(tid, str) or tid not in pending:
                v("messages[%d]: tool_call_id %r answers no pending call"
                  % (i, tid))
            else:
                pending.remove(tid)
            if not isinstance(m.get("content"), (str, list)):
                v("messages[%d]: tool content must be text" % i)
        else:
            v("messages[%d]: unknown role %r" % (i, role))
    if pending:
        v("tool calls %s were not answered" % pending)
    if msgs and msgs[-1].get("role") not in ("user", "tool"):
        v("the last message is %r, not user or tool"
          % (msgs[-1].get("role"),))


def check_anthropic(body, v, note):
    msgs = _check_common(body, v)
    mt = body.get("max_tokens")
    if not _int(mt) or mt < 1:
        v("max_tokens is required and must be a positive integer")
    t = body.get("temperature")
    if t is not None and (not _num(t) or not 0 <= t <= 1):
        v("temperature must be a number in 0..1, got %r" % (t,))
    system = body.get("system")
    if system is not None:
        if isinstance(system, str):
            pass
        elif isinstance(system, list) and all(
                isinstance(b, dict) and b.get("type") == "text"
                and isinstance(b.get("text"), str) for b in system):
            pass
        else:
            v("system must be a string or text blocks")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            v("tools must be a non-empty array")
        else:
            for i, tool in enumerate(tools):
                if not isinstance(tool, dict) or \
                        not isinstance(tool.get("name"), str) or \
                        not TOOL_NAME.match(tool["name"]):
                    v("tools[%d].name is not a valid name" % i)
                    continue
                s = tool.get("input_schema")
                if not isinstance(s, dict) or s.get("type") != "object":
                    v("tools[%d].input_schema must be a JSON schema of "
                      "type object" % i)
                if "description" in tool and \
                        not isinstance(tool["description"], str):
                    v("tools[%d].description is not a string" % i)
    known = {"model", "messages", "stream", "max_tokens", "temperature",
             "system", "tools", "tool_choice", "top_p", "top_k",
             "stop_sequences", "metadata"}
    for k in sorted(set(body) - known):
        note("unknown field %s" % k)

    prev_uses = []          # tool_use ids of the previous assistant message
    seen_ids = set()
    for i, m in enumerate(msgs):
        role = m.get("role")
        want = "user" if i % 2 == 0 else "assistant"
        if role not in ("user", "assistant"):
            v("messages[%d]: role %r (system goes in the top-level field)"
              % (i, role))
            continue
        if role != want:
            v("messages[%d]: roles must alternate user/assistant, starting "
              "with user" % i)
        c = m.get("content")
        blocks = [{"type": "text", "text": c}] if isinstance(c, str) else c
        if not isinstance(blocks, list) or not blocks:
            v("messages[%d]: content must be a string or blocks" % i)
            prev_uses = []
            continue
        uses = []
        answered = []
        for j, b in enumerate(blocks):
            kind = b.get("type") if isinstance(b, dict) else None
            where = "messages[%d].content[%d]" % (i, j)
            if kind == "text":
                if not isinstance(b.get("text"), str) or not b["text"]:
                    v("%s: text must be non-empty" % where)
            elif kind == "tool_use":
                if role != "assistant":
                    v("%s: tool_use outside an assistant message" % where)
                if not isinstance(b.get("id"), str) or not b["id"] or \
                        not isinstance(b.get("name"), str) or \
                        not isinstance(b.get("input"), dict):
                    v("%s: tool_use needs id, name and an input object"
                      % where)
                    continue
                if b["id"] in seen_ids:
                    v("%s: tool_use id %s used twice" % (where, b["id"]))
                seen_ids.add(b["id"])
                uses.append(b["id"])
            elif kind == "tool_result":
                if role != "user":
                    v("%s: tool_result outside a user message" % where)
                tid = b.get("tool_use_id")
                if tid not in prev_uses:
                    v("%s: tool_use_id %r answers no tool_use of the "
                      "previous message" % (where, tid))
                answered.append(tid)
                rc = b.get("content")
                if rc is not None and not isinstance(rc, (str, list)):
                    v("%s: tool_result content must be text or blocks"
                      % where)
            else:
                v("%s: unknown block type %r" % (where, kind))
        if role == "user":
            missing = [u for u in prev_uses if u not in answered]
            if missing:
                v("messages[%d]: tool_use %s not answered here" % (i, missing))
        prev_uses = uses
    if prev_uses:
        v("tool_use %s not answered" % prev_uses)
    if msgs and msgs[-1].get("role") != "user":
        v("the last message is not a user message")


def conversation(dialect, body):
    """(last user text, tool rounds after it, last tool results): the
    script selector's view of the messages."""
    msgs = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(msgs, list):
        return "", 0, []
    user, idx = "", -1
    for i in range(len(msgs) - 1, -1, -1):
        m = msgs[i]
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        c = m.get("content")
        # the last text part: a client may merge user turns into one
        # message of several text blocks
        parts = [c] if isinstance(c, str) else [
            p.get("text") for p in c if isinstance(p, dict)
            and p.get("type") == "text" and isinstance(p.get("text"), str)
            and p.get("text")] if isinstance(c, list) else []
        if parts and parts[-1]:
            user, idx = parts[-1], i
            break
    rounds = 0
    results = []
    for m in msgs[idx + 1:]:
        if not isinstance(m, dict):
            continue
        if dialect == "openai":
            if m.get("role") == "assistant" and m.get("tool_calls"):
                rounds += 1
                results = []
            elif m.get("role") == "tool":
                results.append(_text_of(m.get("content")))
        else:
            c = m.get("content")
            if m.get("role") == "assistant" and isinstance(c, list) and any(
                    isinstance(b, dict) and b.get("type") == "tool_use"
                    for b in c):
                rounds += 1
                results = []
            elif m.get("role") == "user" and isinstance(c, list):
                for b in c:
                    if isinstance(b, dict) and b.get("type") == "tool_result":
                        rc = b.get("content")
                        results.append(rc if isinstance(rc, str)
                                       else _text_of(rc))
    return user, rounds, results


# ---- HTTP ------------------------------------------------------------------

class ClientGone(Exception):
    pass


class Request:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers          # [(name, value)] as sent
        self.body = body

    def get_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


class Conn:
    """One TCP connection: a reader task parses requests into a queue and
    notices at once when the client goes away, even while a response is
    stalled."""

    def __init__(self, mock, reader, writer, cid):
        self.mock = mock
        self.reader = reader
        self.writer = writer
        self.id = cid
        self.queue = asyncio.Queue()
        self.gone = asyncio.Event()
        self.gone_wall = None
        self.current = None             # the record being answered
        self.records = []

    async def read_requests(self):
        try:
            while True:
                try:
                    head = await self.reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    self.queue.put_nowait(("bad", "request head too long"))
                    break
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    self.queue.put_nowait(("bad", "bad request line %r"
                                           % lines[0][:80]))
                    break
                headers = []
                for line in lines[1:]:
                    if not line:
                        continue
                    name, sep, value = line.partition(":")
                    if not sep:
                        self.queue.put_nowait(("bad", "bad header line"))
                        return
                    headers.append((name.strip(), value.strip()))
                req = Request(parts[0], parts[1], parts[2], headers, b"")
                te = ",".join(req.get_all("transfer-encoding")).lower()
                cl = req.get_all("content-length")
                if "chunked" in te:
                    body = bytearray()
                    while True:
                        size = int((await self.reader.readuntil(b"\r\n"))
                                   .split(b";")[0], 16)
                        if size == 0:
                            await self.reader.readuntil(b"\r\n")
                            break
                        body += await self.reader.readexactly(size)
                        await self.reader.readexactly(2)
                        if len(body) > MAX_BODY:
                            raise ValueError("body too big")
                    req.body = bytes(body)
                    req.chunked = True
                elif cl:
                    n = int(cl[0])
                    if n > MAX_BODY:
                        self.queue.put_nowait(("bad", "body too big"))
                        break
                    req.body = await self.reader.readexactly(n)
                self.queue.put_nowait(("req", req))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError,
                OSError):
            pass
        finally:
            self.gone_wall = time.time()
            self.gone.set()
            self.queue.put_nowait(("eof", None))
            for rec in self.records:
                rec.data["conn_closed"] = self.gone_wall
                if not rec.data["finished"]:
                    rec.data["client_closed"] = self.gone_wall
                rec.touch()

    async def write(self, data):
        if self.gone.is_set():
            raise ClientGone()
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            raise ClientGone()
        if self.gone.is_set():
            raise ClientGone()

    async def pause(self, seconds):
        """Waits, but returns early (by raising) when the client leaves."""
        if seconds <= 0:
            if self.gone.is_set():
                raise ClientGone()
            return
        try:
            await asyncio.wait_for(self.gone.wait(), seconds)
        except asyncio.TimeoutError:
            return
        raise ClientGone()

    async def serve(self):
        reader_task = asyncio.ensure_future(self.read_requests())
        try:
            while True:
                kind, item = await self.queue.get()
                if kind != "req":
                    if kind == "bad":
                        await self.simple(400, "text/plain",
                                          (item + "\n").encode(), close=True)
                    break
                keep = await self.mock.dispatch(self, item)
                if not keep:
                    break
        except ClientGone:
            pass
        finally:
            reader_task.cancel()
            try:
                self.writer.close()
            except Exception:
                pass

    async def simple(self, status, ctype, body, headers=(), close=False):
        head = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status")),
                "Content-Type: " + ctype,
                "Content-Length: %d" % len(body)]
        head += ["%s: %s" % kv for kv in headers]
        if close:
            head.append("Connection: close")
        await self.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 415: "Unsupported Media Type",
           429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable",
           529: "Overloaded"}


def error_body(dialect, status, message=None):
    if dialect == "anthropic":
        kind = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error",
                413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 529: "overloaded_error"}.get(
                    status, "api_error")
        return {"type": "error",
                "error": {"type": kind,
                          "message": message or REASONS.get(status, "error")}}
    kind, code = {400: ("invalid_request_error", None),
                  401: ("invalid_request_error", "invalid_api_key"),
                  404: ("invalid_request_error", "unknown_url"),
                  429: ("requests", "rate_limit_exceeded"),
                  500: ("server_error", None)}.get(
                      status, ("server_error", None))
    return {"error": {"message": message or REASONS.get(status, "error"),
                      "type": kind, "param": None, "code": code}}


# ---- the mock --------------------------------------------------------------

class Mock:

    def __init__(self, args, scripts, tools):
        self.args = args
        self.scripts = scripts
        self.tools = tools
        self.registry = Registry(args.state_dir)
        self.sequences = {}
        self.next_conn = 1

    async def on_connect(self, reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(self, reader, writer, self.next_conn)
        self.next_conn += 1
        await conn.serve()

    async def dispatch(self, conn, req):
        url = urllib.parse.urlsplit(req.target)
        if url.path == STATE_PATH and req.method == "GET":
            q = dict(urllib.parse.parse_qsl(url.query))
            try:
                if "since" in q:
                    await self.registry.wait_change(
                        int(q["since"]), float(q.get("timeout", 10)))
            except ValueError:
                await conn.simple(400, "text/plain",
                                  b"since and timeout must be numbers\n")
                return True
            body = json.dumps(self.registry.snapshot()).encode()
            await conn.simple(200, "application/json", body,
                              [("Cache-Control", "no-store")])
            return True
        if url.path.startswith(TOOL_PREFIX):
            return await self.tool(conn, req, url.path[len(TOOL_PREFIX):])
        if url.path in (OPENAI_PATH, ANTHROPIC_PATH):
            return await self.completion(conn, req, url)
        await conn.simple(404, "application/json",
                          json.dumps(error_body("openai", 404,
                                                "no such path")).encode())
        return True

    # /tool/<name>
    async def tool(self, conn, req, name):
        rec = self.registry.new_record("tool")
        d = rec.data
        d["conn"] = conn.id
        d["method"] = req.method
        d["path"] = req.target
        d["name"] = name
        d["headers"] = {k.lower(): v for k, v in req.headers}
        text = req.body.decode("utf-8", "replace")
        d["raw_body"] = text
        try:
            d["body"] = json.loads(text) if text else None
        except ValueError:
            rec.note("the body is not JSON")
        conn.records.append(rec)
        spec = self.tools.get(name, {"body": {"ok": True}})
        d["script"] = name if name in self.tools else None
        if req.method != "POST":
            rec.violation("tool endpoint called with %s" % req.method)
        try:
            await conn.pause(float(spec.get("delay", 0)))
            body = spec.get("body", {"ok": True})
            body = body.encode() if isinstance(body, str) else \
                json.dumps(body).encode()
            status = int(spec.get("status", 200))
            d["status"] = status
            await conn.simple(status, "application/json", body,
                              list(spec.get("headers", {}).items()))
            rec.sent("response", status=status)
        except ClientGone:
            rec.finish("client_closed")
            raise
        rec.finish("complete")
        return True

    def pick_script(self, rec, dialect, body):
        user, rounds, results = conversation(dialect, body)
        rec.data["user_text"] = user
        rec.data["tool_rounds"] = rounds
        m = SELECTOR.match(user)
        spec = m.group(1) if m else "default"
        rest = user[m.end():] if m else user
        names = [n for n in spec.split(",") if n]
        if len(names) > 1:
            key = hashlib.sha256(json.dumps(
                [dialect, body.get("messages")], sort_keys=True)
                .encode()).hexdigest()
            n = self.sequences.get(key, 0)
            self.sequences[key] = n + 1
            rec.data["script_sequence"] = names
            rec.data["script_index"] = n
            name = names[min(n, len(names) - 1)]
        else:
            name = names[0] if names else "default"
        if name not in self.scripts:
            return None, name, rest, results
        script = self.scripts[name]
        # a reply to tool results continues with the after_tool script
        while rounds > 0 and script.get("after_tool") is not None:
            at = script["after_tool"]
            nxt = at if isinstance(at, str) else at[min(rounds, len(at)) - 1]
            name = nxt
            script = self.scripts[name]
            rounds = 0
        return script, name, rest, results

    async def completion(self, conn, req, url):
        dialect = "openai" if url.path == OPENAI_PATH else "anthropic"
        rec = self.registry.new_record("request")
        conn.records.append(rec)
        conn.current = rec
        d = rec.data
        d["conn"] = conn.id
        d["method"] = req.method
        d["path"] = req.target
        d["dialect"] = dialect
        d["http_version"] = req.version
        if getattr(req, "chunked", False):
            rec.note("the request body came chunked")
        hdrs = {}
        for k, v in req.headers:
            key = k.lower()
            if key == "authorization":
                scheme, _, cred = v.partition(" ")
                v = "%s <%d bytes, not recorded>" % (scheme, len(cred))
            elif key == "x-api-key":
                v = "<%d bytes, not recorded>" % len(v)
            hdrs[key] = hdrs[key] + ", " + v if key in hdrs else v
        d["headers"] = hdrs
        text = req.body.decode("utf-8", "replace")
        d["raw_body"] = text if len(text) <= 65536 else text[:65536]
        keep = "close" not in ",".join(req.get_all("connection")).lower()

        async def refuse(status, message, violation=True):
            if violation:
                rec.violation(message)
            d["status"] = status
            body = json.dumps(error_body(dialect, status, message)).encode()
            extra = [("request-id", "req_mock%d" % d["id"])]
            await conn.simple(status, "application/json", body, extra,
                              close=not keep)
            rec.sent("http_error", status=status)
            rec.finish("refused")
            return keep

        try:
            if req.method != "POST":
                return await refuse(405, "method %s" % req.method)
            # auth first, as the providers do
            if dialect == "openai":
                auth = req.get_all("authorization")
                good = len(auth) == 1 and auth[0] == "Bearer " + self.args.key
                d["auth"] = ("ok" if good else "missing" if not auth else
                             "repeated" if len(auth) > 1 else "wrong")
                if not good:
                    return await refuse(401, "Incorrect API key provided "
                                        "(Authorization %s)" % d["auth"])
            else:
                auth = req.get_all("x-api-key")
                good = len(auth) == 1 and auth[0] == self.args.key
                d["auth"] = ("ok" if good else "missing" if not auth else
                             "repeated" if len(auth) > 1 else "wrong")
                if not good:
                    return await refuse(401, "invalid x-api-key (%s)"
                                        % d["auth"])
                ver = req.get_all("anthropic-version")
                if ver != [ANTHROPIC_VERSION]:
                    d["auth"] = "bad_version"
                    return await refuse(
                        401 if not ver else 400,
                        "anthropic-version must be %s, got %r"
                        % (ANTHROPIC_VERSION, ver))
                if req.get_all("authorization"):
                    rec.note("an Authorization header too")
            ctype = req.get_all("content-type")
            if len(ctype) != 1 or ctype[0].split(";")[0].strip().lower() \
                    != "application/json":
                return await refuse(400, "Content-Type must be "
                                    "application/json, got %r" % ctype)
            try:
                body = json.loads(text)
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                return await refuse(400, "the body is not a JSON object: %s"
                                    % e)
            d["body"] = body
            problems = []
            (check_openai if dialect == "openai" else check_anthropic)(
                body, problems.append, rec.note)
            script, name, rest, results = self.pick_script(rec, dialect,
                                                           body)
            d["script"] = name
            for p in problems:
                rec.violation(p)
            if script is None:
                return await refuse(400, "unknown mock script %r" % name)
            if problems and script.get("violations", "refuse") == "refuse":
                d["status"] = 400
                body400 = json.dumps(error_body(dialect, 400,
                                                problems[0])).encode()
                await conn.simple(400, "application/json", body400,
                                  close=not keep)
                rec.sent("http_error", status=400)
                rec.finish("refused")
                return keep
            player = Player(self, conn, rec, dialect, body, script, rest,
                            results)
            return await player.play(keep)
        except ClientGone:
            rec.finish("complete" if d.get("stream_complete")
                       else "client_closed")
            return False
        finally:
            conn.current = None


class Player:
    """Plays one script as a streamed response in one dialect."""

    def __init__(self, mock, conn, rec, dialect, body, script, user,
                 results):
        self.mock = mock
        self.conn = conn
        self.rec = rec
        self.dialect = dialect
        self.body = body
        self.s = script
        self.model = body.get("model") or "mock"
        # "hello." in "I heard: {user}." must not end in two stops
        self.user = user.strip().rstrip(".!?")
        self.results = results
        self.nl = "\r\n" if script.get("crlf") else "\n"
        seed = script.get("split_seed", rec.data["id"])
        self.rnd = random.Random(seed)
        self.chunked = script.get("framing", "chunked") == "chunked"
        self.ntokens = 0
        self.rid = "%s%d" % ("chatcmpl-mock" if dialect == "openai"
                             else "msg_mock", rec.data["id"])
        self.created = int(time.time())

    def dumps(self, obj):
        if self.s.get("json_style") == "spaced":
            return json.dumps(obj, ensure_ascii=False)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    def text(self):
        def fill(t):
            return (t.replace("{user}", self.user)
                    .replace("{tool_result}", "; ".join(self.results)))
        if "tokens" in self.s:
            return [fill(t) for t in self.s["tokens"]]
        if "text" in self.s:
            return tokenize(fill(self.s["text"]))
        if self.s.get("tool_calls") or "status" in self.s:
            return []
        return tokenize(fill(DEFAULT_TEXT))

    def delay(self, i):
        delays = self.s.get("delays")
        if delays:
            return delays[min(i, len(delays) - 1)]
        rate = self.s.get("rate", 50)
        return 1.0 / rate if rate else 0.0

    async def out(self, data):
        """Writes bytes of the body, framed, and split when asked."""
        raw = data.encode("utf-8")
        if not self.s.get("split"):
            await self.conn.write(self.frame(raw))
            return
        top = self.s.get("split_max", 5)
        i = 0
        while i < len(raw):
            n = self.rnd.randint(1, max(1, top))
            await self.conn.write(self.frame(raw[i:i + n]))
            i += n
            if i < len(raw):
                # lets each piece leave in its own segment
                await self.conn.pause(0.001)

    def frame(self, raw):
        if not self.chunked:
            return raw
        return b"%x\r\n" % len(raw) + raw + b"\r\n"

    async def event(self, kind, obj, sse=None, **rec_fields):
        nl = self.nl
        head = ("event: %s%s" % (sse, nl)) if sse else ""
        self.rec.sent(kind, **rec_fields)
        await self.out(head + "data: " + self.dumps(obj) + nl + nl)

    async def headers(self, keep):
        h = ["HTTP/1.1 200 OK",
             "Content-Type: text/event-stream; charset=utf-8",
             "Cache-Control: no-cache"]
        if self.chunked:
            h.append("Transfer-Encoding: chunked")
            if not keep:
                h.append("Connection: close")
        else:
            h.append("Connection: close")
        h.append(("x-request-id: " if self.dialect == "openai"
                  else "request-id: ") + self.rid)
        self.rec.data["status"] = 200
        self.rec.sent("headers")
        await self.conn.write(("\r\n".join(h) + "\r\n\r\n").encode())

    async def play(self, keep):
        s = self.s
        rec = self.rec
        if s.get("stall_before_headers"):
            rec.sent("stall")
            await self.conn.gone.wait()
            raise ClientGone()
        if "status" in s:
            await self.conn.pause(s.get("ttft", 0))
            status = s["status"]
            body = s.get("body")
            if body is None:
                body = error_body(self.dialect, status)
            body = body if isinstance(body, str) else json.dumps(body)
            rec.data["status"] = status
            await self.conn.simple(status, "application/json",
                                   body.encode(),
                                   list(s.get("headers", {}).items()),
                                   close=not keep)
            rec.sent("http_error", status=status)
            rec.finish("http_error")
            return keep
        await self.headers(keep and self.chunked)
        if s.get("stall_after_headers"):
            rec.sent("stall")
            await self.conn.gone.wait()
            raise ClientGone()
        try:
            if self.dialect == "openai":
                await self.play_openai()
            else:
                await self.play_anthropic()
        except StreamOver:
            if self.chunked:
                await self.conn.write(b"0\r\n\r\n")
            rec.finish("midstream_error")
            return keep and self.chunked
        if s.get("no_done"):
            rec.sent("eof_without_end")
            rec.finish("no_done")
            return False
        # the stream is whole: a client that hangs up now, without
        # waiting for the last chunk, has had everything
        rec.data["stream_complete"] = True
        if self.chunked:
            await self.conn.write(b"0\r\n\r\n")
        rec.finish("complete")
        return keep and self.chunked

    async def fault(self, i):
        """Faults placed after i tokens; True when the stream ends here."""
        s = self.s
        if s.get("stall_after") == i:
            self.rec.sent("stall", after=i)
            await self.conn.gone.wait()
            raise ClientGone()
        if s.get("malformed_after") == i:
            bad = s.get("malformed_text", '{"choices": [ this is not json')
            self.rec.sent("malformed", after=i)
            await self.out("data: " + bad + self.nl + self.nl)
        if s.get("error_after") == i:
            if self.dialect == "openai":
                err = s.get("error", {"message": "The server had an error "
                                      "while processing your request.",
                                      "type": "server_error",
                                      "param": None, "code": None})
                await self.event("error", {"error": err}, error=err)
            else:
                err = s.get("error", {"type": "overloaded_error",
                                      "message": "Overloaded"})
                await self.event("error", {"type": "error", "error": err},
                                 sse="error", error=err)
            raise StreamOver()
        return False

    def tool_pieces(self, tc, k):
        args = tc.get("arguments", {})
        text = args if isinstance(args, str) else self.dumps(args)
        n = max(1, min(tc.get("fragments", 3), len(text)))
        cuts = sorted(self.rnd.sample(range(1, len(text)), n - 1)) \
            if n > 1 else []
        cuts = [0] + cuts + [len(text)]
        tid = tc.get("id") or ("call_mock%d_%d" % (self.rec.data["id"], k)
                               if self.dialect == "openai"
                               else "toolu_mock%d_%d" % (self.rec.data["id"],
                                                         k))
        return tid, text, [text[a:b] for a, b in zip(cuts, cuts[1:])]

    def usage(self):
        prompt = len(json.dumps(self.body.get("messages", []))) // 4
        u = self.s.get("usage")
        if self.dialect == "openai":
            return u or {"prompt_tokens": prompt,
                         "completion_tokens": self.ntokens,
                         "total_tokens": prompt + self.ntokens}
        return u or {"input_tokens": prompt, "output_tokens": self.ntokens}

    async def tokens(self, emit):
        toks = self.text()
        # time to the first token, after the headers and the preamble
        await self.conn.pause(self.s.get("ttft", 0.05))
        await self.fault(0)
        for i, tok in enumerate(toks):
            if i > 0:
                await self.conn.pause(self.delay(i - 1))
            await emit(i, tok)
            self.ntokens += 1
            await self.fault(i + 1)
        return toks

    async def play_openai(self):
        s = self.s
        include = bool((self.body.get("stream_options") or {})
                       .get("include_usage"))

        def chunk(delta, finish=None):
            c = {"id": self.rid, "object": "chat.completion.chunk",
                 "created": self.created, "model": self.model,
                 "system_fingerprint": "fp_mock",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": finish}]}
            if include:
                c["usage"] = None
            return c

        await self.event("role", chunk({"role": "assistant",
                                        "content": "",
                                        "refusal": None}))

        async def emit(i, tok):
            await self.event("text", chunk({"content": tok}), text=tok)
        await self.tokens(emit)
        calls = s.get("tool_calls", [])
        for k, tc in enumerate(calls):
            tid, full, pieces = self.tool_pieces(tc, k)
            await self.event("tool_start", chunk({"tool_calls": [{
                "index": k, "id": tid, "type": "function",
                "function": {"name": tc["name"], "arguments": ""}}]}),
                id=tid, name=tc["name"], arguments=full)
            for p in pieces:
                await self.conn.pause(self.delay(0))
                await self.event("tool_args", chunk({"tool_calls": [{
                    "index": k, "function": {"arguments": p}}]}),
                    piece=p)
        finish = s.get("finish", "tool_calls" if calls else "stop")
        await self.event("finish", chunk({}, finish), finish=finish)
        if include:
            c = {"id": self.rid, "object": "chat.completion.chunk",
                 "created": self.created, "model": self.model,
                 "system_fingerprint": "fp_mock", "choices": [],
                 "usage": self.usage()}
            await self.event("usage", c)
        if not s.get("no_done"):
            self.rec.sent("done")
            await self.out("data: [DONE]" + self.nl + self.nl)

    async def play_anthropic(self):
        s = self.s
        every = s.get("ping_every", 4)
        await self.event("message_start", {
            "type": "message_start",
            "message": {"id": self.rid, "type": "message",
                        "role": "assistant", "model": self.model,
                        "content": [], "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": self.usage()[
                            "input_tokens"], "output_tokens": 1}}},
            sse="message_start")
        await self.event("ping", {"type": "ping"}, sse="ping")
        index = 0
        toks = self.text()
        if toks or not s.get("tool_calls"):
            await self.event("block_start", {
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}},
                sse="content_block_start", index=0)

            async def emit(i, tok):
                if every and i and i % every == 0:
                    await self.event("ping", {"type": "ping"},
                                     sse="ping")
                await self.event("text", {
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": tok}},
                    sse="content_block_delta", text=tok)
            await self.tokens(emit)
            await self.event("block_stop", {
                "type": "content_block_stop", "index": 0},
                sse="content_block_stop", index=0)
            index = 1
        else:
            await self.conn.pause(s.get("ttft", 0.05))
            await self.fault(0)
        calls = s.get("tool_calls", [])
        for k, tc in enumerate(calls):
            tid, full, pieces = self.tool_pieces(tc, k)
            await self.event("tool_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": tid,
                                  "name": tc["name"], "input": {}}},
                sse="content_block_start", id=tid, name=tc["name"],
                arguments=full)
            for p in pieces:
                await self.conn.pause(self.delay(0))
                await self.event("tool_args", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta",
                              "partial_json": p}},
                    sse="content_block_delta", piece=p)
            await self.event("block_stop", {
                "type": "content_block_stop", "index": index},
                sse="content_block_stop", index=index)
            index += 1
        finish = s.get("finish", "tool_calls" if calls else "stop")
        finish = {"stop": "end_turn", "length": "max_tokens",
                  "tool_calls": "tool_use"}.get(finish, finish)
        await self.event("finish", {
            "type": "message_delta",
            "delta": {"stop_reason": finish, "stop_sequence": None},
            "usage": {"output_tokens": self.ntokens}},
            sse="message_delta", finish=finish)
        if not s.get("no_done"):
            await self.event("done", {"type": "message_stop"},
                             sse="message_stop")


class StreamOver(Exception):
    """The script ended the stream early (a mid-stream error)."""


async def main_async(args, scripts, tools):
    loop = asyncio.get_running_loop()
    mock = Mock(args, scripts, tools)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))
    server = await asyncio.start_server(mock.on_connect, args.host,
                                        args.port, limit=MAX_HEAD,
                                        backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    await stop
    server.close()
    for rec in mock.registry.requests + mock.registry.tool_calls:
        if not rec.data["finished"]:
            rec.finish("mock_stopped")
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
                         "{\"scripts\": {...}, \"tools\": {...}}")
    args = ap.parse_args()
    try:
        scripts, tools = load_scripts(args.script)
    except (OSError, ValueError, ScriptError) as exc:
        print("llm mock: %s" % exc, file=sys.stderr)
        return 2
    os.makedirs(args.state_dir, exist_ok=True)
    asyncio.run(main_async(args, scripts, tools))
    return 0


if __name__ == "__main__":
    sys.exit(main())
