"""Tool calls: the model calls a tool, nginx POSTs the arguments to the
tool's location as a subrequest, and the reply goes on with the result.

The tool locations of nginx.conf.in forward to the LLM mock's /tool/<name>
endpoints, which record every call: weather answers, fail answers 500,
slow answers only after 30 s (the locations wait voice_tool_timeout).
The mock's tool records carry no tag of ours, so a test counts the records
that arrived after it began; the tests of this file run one at a time.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from llmtest import (LlmTestCase, WAIT, conversation, finished, mock_state,
                     new_id, records, start)


WEATHER = {"temp_c": 21, "conditions": "sunny"}


async def tool_mark():
    """How many tool calls the mock has seen so far."""
    return len((await mock_state())["tool_calls"])


async def tool_records(mark, cond, timeout=WAIT, what="tool calls"):
    """Long-polls the mock until the tool calls after mark satisfy cond."""
    deadline = time.monotonic() + timeout
    st = await mock_state()
    while True:
        recs = sorted(st["tool_calls"], key=lambda r: r["id"])[mark:]
        if cond(recs):
            return recs
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("mock tool calls: %s not reached; last seen "
                                 "%s" % (what, json.dumps(recs)[:3000]))
        st = await mock_state(st["version"], min(left, 5.0))


def _json_or_text(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def tool_results(rec):
    """The tool results a model request carries, parsed when JSON."""
    return [_json_or_text(t) for role, t in conversation(rec)
            if role == "tool_result"]


def index_of(s, type_, **fields):
    for i, (_, m) in enumerate(s.events):
        if m.get("type") == type_ and all(m.get(k) == v
                                          for k, v in fields.items()):
            return i
    raise AssertionError("no %s %r in %r" % (type_, fields, s.messages()))


@unittest.skipIf(os.environ.get("VOICE_NO_TOOLS") == "1",
                 "the module does not take voice_tool yet")
class Tools(LlmTestCase):

    async def test_tool_call_result_and_reply(self):
        tag = new_id("tw")
        mark = await tool_mark()
        s = await start("/tools", self)

        turn, deltas, text = await s.ask("mock:tool_weather " + tag)

        call = s.messages("tool.call", turn=turn)
        self.assertEqual(len(call), 1, s.messages())
        call = call[0]
        self.assertEqual(call["name"], "get_weather")
        self.assertEqual(call["arguments"],
                         {"city": "Paris", "unit": "celsius"})
        self.assertTrue(call["id"])

        result = s.messages("tool.result", turn=turn)
        self.assertEqual(len(result), 1, s.messages())
        self.assertEqual(result[0]["id"], call["id"])
        self.assertEqual(result[0]["name"], "get_weather")
        self.assertEqual(result[0]["result"], WEATHER)

        # the call, then its result, then the reply that used it
        self.assertLess(index_of(s, "tool.call", turn=turn),
                        index_of(s, "tool.result", turn=turn))
        self.assertLess(index_of(s, "tool.result", turn=turn),
                        index_of(s, "response.text.delta", turn=turn))
        self.assertEqual(s.messages("error"), [])

        # the mock's answer reads the tool result back
        self.assertIn("The tool said", text)
        self.assertIn("sunny", text)
        self.assertEqual("".join(deltas), text)

        # the tool got the arguments as a JSON POST, once
        tools = await tool_records(mark, finished(1))
        self.assertEqual(len(tools), 1, tools)
        t = tools[0]
        self.assertEqual(t["method"], "POST")
        self.assertEqual(t["path"], "/tool/weather")
        self.assertEqual(t["body"], call["arguments"])
        self.assertEqual(t["headers"].get("content-type"), "application/json")
        self.assertEqual(int(t["headers"]["content-length"]),
                         len(t["raw_body"].encode()))
        self.assertEqual(t["end"], "complete")
        for h in ("upgrade", "sec-websocket-key", "sec-websocket-version"):
            self.assertNotIn(h, t["headers"])

        # the model's second request carries the call and its result
        reqs = await records(tag, finished(2))
        self.assertEqual(len(reqs), 2, reqs)
        roles = [r for r, _ in conversation(reqs[1])]
        self.assertIn("tool_call", roles)
        self.assertEqual(tool_results(reqs[1]), [WEATHER])
        msgs = reqs[1]["body"]["messages"]
        self.assertEqual(msgs[-1]["role"], "tool")
        self.assertEqual(msgs[-1]["tool_call_id"], call["id"])
        self.assertEqual(tool_results(reqs[0]), [])

        # the client sees the session carry on
        self.assertEqual(s.messages("state")[-1]["state"], "listening")
        turn2, _, _ = await s.ask("and now something else " + tag)
        self.assertGreater(turn2, turn)

    async def test_two_calls_run_once_each(self):
        tag = new_id("t2")
        mark = await tool_mark()
        s = await start("/tools", self)

        turn, _, text = await s.ask("mock:tool_two " + tag)

        calls = s.messages("tool.call", turn=turn)
        results = s.messages("tool.result", turn=turn)
        self.assertEqual(len(calls), 2, s.messages())
        ids = [c["id"] for c in calls]
        self.assertEqual(len(set(ids)), 2, ids)
        self.assertEqual(sorted(r["id"] for r in results), sorted(ids))
        for r in results:
            self.assertEqual(r["result"], WEATHER)

        tools = await tool_records(mark, finished(2))
        self.assertEqual(len(tools), 2, tools)
        self.assertEqual(sorted(t["body"]["city"] for t in tools),
                         ["Paris", "Rome"])

        reqs = await records(tag, finished(2))
        self.assertEqual(tool_results(reqs[1]), [WEATHER, WEATHER])

        # nothing more reaches the tool after the turn is over
        await s.ask("one more turn " + tag)
        st = await mock_state()
        self.assertEqual(len(st["tool_calls"]) - mark, 2)

    async def test_retried_model_request_does_not_rerun_tool(self):
        # the model's first request fails (500) and is retried; the retry
        # calls the tool (scripts_tools.json), which runs exactly once
        tag = new_id("tr")
        mark = await tool_mark()
        s = await start("/tools", self)

        turn, _, text = await s.ask("mock:tool_flaky_first,tool_weather "
                                    + tag)

        calls = s.messages("tool.call", turn=turn)
        self.assertEqual(len(calls), 1, s.messages())
        self.assertEqual(len(s.messages("tool.result", turn=turn)), 1)
        self.assertIn("The tool said", text)

        reqs = await records(tag, finished(3))
        self.assertEqual([r["status"] for r in reqs], [500, 200, 200])
        self.assertEqual(tool_results(reqs[1]), [])
        self.assertEqual(tool_results(reqs[2]), [WEATHER])

        tools = await tool_records(mark, finished(1))
        self.assertEqual(len(tools), 1, tools)
        self.assertEqual(tools[0]["body"], calls[0]["arguments"])

    async def test_tool_500_is_tool_fail_and_model_is_told(self):
        tag = new_id("tf")
        mark = await tool_mark()
        s = await start("/tools-fail", self)

        mk = await s.say("mock:tool_weather " + tag)
        err = await s.wait_type("error", since=mk)
        self.assertEqual(err["code"], "TOOL_FAIL")
        self.assertIs(err["recoverable"], True)
        done = await s.wait_type("response.text.done", since=mk)
        turn = done["turn"]

        self.assertEqual(len(s.messages("tool.result", turn=turn)), 1,
                         s.messages())
        self.assertLess(index_of(s, "tool.call", turn=turn),
                        index_of(s, "error", code="TOOL_FAIL"))

        tools = await tool_records(mark, finished(1))
        self.assertEqual(len(tools), 1, tools)
        self.assertEqual(tools[0]["status"], 500)

        reqs = await records(tag, finished(2))
        told = tool_results(reqs[1])
        self.assertEqual(len(told), 1, told)
        self.assertIn("error", json.dumps(told[0]))

        # the session goes on
        await s.ask("are you still there " + tag)

    async def test_tool_timeout_is_tool_fail_and_tool_is_dropped(self):
        tag = new_id("tt")
        mark = await tool_mark()
        s = await start("/tools-slow", self)

        mk = await s.say("mock:tool_weather " + tag)
        call = await s.wait_type("tool.call", since=mk)
        err = await s.wait_type("error", since=mk)
        self.assertEqual(err["code"], "TOOL_FAIL")
        self.assertIs(err["recoverable"], True)
        done = await s.wait_type("response.text.done", since=mk)
        self.assertEqual(done["turn"], call["turn"])

        reqs = await records(tag, finished(2))
        told = tool_results(reqs[1])
        self.assertEqual(len(told), 1, told)
        self.assertIn("error", json.dumps(told[0]))
        self.assertNotIn("temp_c", json.dumps(told[0]))

        # nobody waits for the slow tool any more: its request is closed
        # long before the mock's 30 s are up
        tools = await tool_records(mark, finished(1))
        self.assertEqual(len(tools), 1, tools)
        self.assertEqual(tools[0]["end"], "client_closed")

    async def test_client_leaves_mid_call(self):
        tag = new_id("tl")
        mark = await tool_mark()
        s = await start("/tools-slow", self)

        mk = await s.say("mock:tool_weather " + tag)
        await s.wait_type("tool.call", since=mk)
        await tool_records(mark, lambda recs: len(recs) >= 1)
        s.abort()

        # the tool's request is let go, the model is not asked again
        tools = await tool_records(mark, finished(1))
        self.assertEqual(tools[0]["end"], "client_closed")
        reqs = await records(tag, finished(1))
        self.assertEqual(len(reqs), 1, reqs)

        # the server is fine: a new session calls a tool again
        s2 = await start("/tools", self)
        turn, _, text = await s2.ask("mock:tool_weather " + new_id("tl"))
        self.assertIn("sunny", text)

    async def test_client_ends_session_mid_call(self):
        tag = new_id("te")
        mark = await tool_mark()
        s = await start("/tools-slow", self)

        mk = await s.say("mock:tool_weather " + tag)
        await s.wait_type("tool.call", since=mk)
        self.assertEqual(await s.end(), 1000)
        self.assertEqual(s.messages("tool.result"), [])

        tools = await tool_records(mark, finished(1))
        self.assertEqual(tools[0]["end"], "client_closed")

    async def test_anthropic_tool_use(self):
        tag = new_id("ta")
        s = await start("/tools-anthropic", self)

        turn, _, text = await s.ask("mock:tool_weather " + tag)

        calls = s.messages("tool.call", turn=turn)
        self.assertEqual(len(calls), 1, s.messages())
        self.assertEqual(s.messages("tool.result", turn=turn)[0]["result"],
                         WEATHER)
        self.assertIn("sunny", text)

        reqs = await records(tag, finished(2))
        self.assertEqual(tool_results(reqs[1]), [WEATHER])
        last = reqs[1]["body"]["messages"][-1]
        self.assertEqual(last["role"], "user")
        self.assertEqual(last["content"][0]["tool_use_id"], calls[0]["id"])


class ToolDirective(unittest.TestCase):
    """voice_tool is checked when nginx reads its configuration."""

    ROOT = os.path.normpath(os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "..", ".."))
    MODULE = os.path.join(ROOT, "build", "ngx_http_voice_module.so")

    def check(self, *tools):
        prefix = tempfile.mkdtemp(prefix="voice-tool-")
        self.addCleanup(shutil.rmtree, prefix, True)
        os.mkdir(os.path.join(prefix, "logs"))
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write("load_module %s;\n"
                    "error_log %s/logs/error.log;\n"
                    "pid %s/logs/nginx.pid;\n"
                    "events {}\n"
                    "http { server { listen 127.0.0.1:1; location /v {\n"
                    "    voice; voice_pipeline agent; voice_stt off;\n"
                    "    voice_llm embedded;\n%s\n} } }\n"
                    % (self.MODULE, prefix, prefix,
                       "\n".join("    voice_tool %s;" % t for t in tools)))
        rc = subprocess.run(["/usr/sbin/nginx", "-t", "-q", "-p", prefix,
                             "-c", conf], capture_output=True, text=True)
        return rc.returncode, rc.stderr

    def test_valid_tools(self):
        rc, err = self.check(
            "get_weather /tool/weather '{\"type\":\"object\"}'",
            "look-up_2 /tool/x?mode=a '{\"type\":\"object\","
            "\"properties\":{\"q\":{\"type\":\"string\"}}}'")
        self.assertEqual(rc, 0, err)

    def test_refused(self):
        cases = [
            ("a /t '{\"type\":\"object\"'", "not JSON"),
            ("a /t '[1,2]'", "must be a JSON object"),
            ("a /t '{\"type\":\"string\"}'", "must be a JSON object"),
            ("a /t '{\"properties\":{}}'", "must be a JSON object"),
            ("'bad name' /t '{\"type\":\"object\"}'", "may only have"),
            ("a t '{\"type\":\"object\"}'", "must start with"),
        ]
        for line, why in cases:
            with self.subTest(line=line):
                rc, err = self.check(line)
                self.assertNotEqual(rc, 0)
                self.assertIn(why, err)

    def test_duplicate_name(self):
        rc, err = self.check("a /t '{\"type\":\"object\"}'",
                             "a /u '{\"type\":\"object\"}'")
        self.assertNotEqual(rc, 0)
        self.assertIn("duplicate tool", err)


if __name__ == "__main__":
    unittest.main()
