#!/usr/bin/python3
"""Tests of the LLM stage against the LLM mock.

Starts the mock (t/mock/llm.py) with the built-in scripts plus every
t/llm/scripts*.json library, fills t/llm/nginx.conf.in, starts nginx with
the module (one worker, error_log info), runs every t/llm/test_*.py
(unittest), then reads the error log.  Prints `llm: N passed, M failed`
last and exits non-zero on any failure.  Run it with Debian's
/usr/bin/python3.  Test names given as arguments (test_llm.Cancel) run
only those; VOICE_LLM_LOG_LEVEL=debug makes nginx log more.
VOICE_LLM_VALGRIND=1 runs nginx as one process (master_process off)
under valgrind --leak-check=full, whose report goes to
logs/valgrind.<pid> in the run prefix; tests bound by time or by the
worker's memory may then fail: their figures are not the point of such
a run.

The tests learn about the setup from the environment:

    VOICE_NGINX_PORT     nginx
    VOICE_MOCK_PORT      the mock (HTTP)
    VOICE_MOCK_STATE     the mock's record directory
    VOICE_NGINX_PID      nginx's master process
    VOICE_PREFIX         the run directory (build/llm)
    VOICE_LLM_SYSTEM     the system prompt of every location
    VOICE_FIRST_TOKEN_TIMEOUT_MS, VOICE_TOTAL_TIMEOUT_MS, VOICE_RETRIES,
    VOICE_TOOL_TIMEOUT_MS   settings of the short locations
    VOICE_NO_TOOLS       1 when the module does not take voice_tool yet
"""

import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import provider_harness  # noqa: E402

MOCK = os.path.join(provider_harness.ROOT, "t", "mock", "llm.py")

SETTINGS = {
    "FIRST_TOKEN_TIMEOUT_MS": 500,
    "TOTAL_TIMEOUT_MS": 2000,
    "RETRIES": 2,
    "TOOL_TIMEOUT_MS": 1000,
    "SYSTEM": "You are the test assistant. Answer briefly.",
}


def write_scripts(run):
    """One library for the mock: every t/llm/scripts*.json merged (later
    files win).  The built-in scripts need no file."""
    lib = {"scripts": {}, "tools": {}}
    for path in sorted(glob.glob(os.path.join(HERE, "scripts*.json"))):
        with open(path) as f:
            data = json.load(f)
        lib["scripts"].update(data.get("scripts", {}))
        lib["tools"].update(data.get("tools", {}))
    out = run.path("scripts.json")
    with open(out, "w") as f:
        json.dump(lib, f)
    return out


def without_tools(run, stderr):
    """While the module cannot take voice_tool yet, the other tests still
    run: the tool lines are left out and VOICE_NO_TOOLS=1 tells the tool
    tests to skip."""
    if '"voice_tool" directive is not available' not in stderr:
        return False
    with open(run.conf) as f:
        lines = f.readlines()
    with open(run.conf, "w") as f:
        f.writelines(l for l in lines
                     if not l.lstrip().startswith("voice_tool"))
    # the refusal went to the error log: it is not a finding
    open(run.path("logs", "error.log"), "w").close()
    os.environ["VOICE_NO_TOOLS"] = "1"
    print("note: this module has no voice_tool yet: tools are left out")
    return True


def setup(run):
    mock_port, state = run.start_mock(MOCK, write_scripts(run), "LLM")
    run.start_nginx(dict(SETTINGS, MOCK_PORT=mock_port,
                         DEAD_PORT=provider_harness.free_port()),
                    lambda stderr: without_tools(run, stderr))
    env = {"VOICE_MOCK_PORT": mock_port, "VOICE_MOCK_STATE": state,
           "VOICE_LLM_SYSTEM": SETTINGS["SYSTEM"]}
    for k in ("FIRST_TOKEN_TIMEOUT_MS", "TOTAL_TIMEOUT_MS", "RETRIES",
              "TOOL_TIMEOUT_MS"):
        env["VOICE_" + k] = SETTINGS[k]
    return env


if __name__ == "__main__":
    sys.exit(provider_harness.Runner(
        "llm", HERE, "llm-test-key-0123456789abcdef", "not-the-llm-key",
        "llm.key", valgrind_args=(
            "--show-leak-kinds=definite,indirect,possible",
            "--num-callers=30"),
        valgrind_stop_wait=120.0).main(setup))
