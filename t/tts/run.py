#!/usr/bin/python3
"""Tests of the TTS stage against the TTS mock.

Starts the TTS mock (t/mock/tts.py) with the built-in scripts plus every
t/tts/tts-scripts*.json library, and the LLM mock (t/mock/llm.py) with the
scripts of t/tts/llm-scripts*.json (replies that say the user's text, so a
test chooses what is spoken).  Fills t/tts/nginx.conf.in and every
t/tts/*.locations.in (the same @NAME@ values; the server includes them all),
starts nginx with the module (one worker, error_log info), runs every
t/tts/test_*.py (unittest), then reads the error log.  Prints
`tts: N passed, M failed` last and exits non-zero on any failure.  Run it
with Debian's /usr/bin/python3.  Test names given as arguments
(test_cartesia.Cancel) run only those; VOICE_TTS_LOG_LEVEL=debug makes
nginx log more.  VOICE_TTS_VALGRIND=1 runs nginx as one process
(master_process off) under valgrind --leak-check=full, whose report goes
to logs/valgrind.<pid> in the run prefix; tests bound by time may then
fail: their figures are not the point of such a run.

Names the templates may use, besides PORT, MODULE, PREFIX, LOG_LEVEL:

    TTS_MOCK_PORT   the TTS mock (ws:// and http://)
    LLM_MOCK_PORT   the LLM mock
    DEAD_PORT       a port where nothing listens
    the SETTINGS below (TIMEOUT_MS, CONNECT_TIMEOUT_MS)

Key files in the prefix: tts.key (the key both mocks take; LLM locations
use it too) and wrong.key (refused: 401).

The tests learn about the setup from the environment:

    VOICE_NGINX_PORT       nginx
    VOICE_NGINX_PID        nginx's master process
    VOICE_PREFIX           the run directory (build/tts)
    VOICE_TTS_MOCK_PORT    the TTS mock
    VOICE_TTS_MOCK_STATE   the TTS mock's record directory
    VOICE_LLM_MOCK_PORT    the LLM mock
    VOICE_LLM_MOCK_STATE   the LLM mock's record directory
    VOICE_DEAD_PORT        nothing listens there
    VOICE_TTS_TIMEOUT_MS, VOICE_TTS_CONNECT_TIMEOUT_MS  settings of the
                           short locations
"""

import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import provider_harness  # noqa: E402

TTS_MOCK = os.path.join(provider_harness.ROOT, "t", "mock", "tts.py")
LLM_MOCK = os.path.join(provider_harness.ROOT, "t", "mock", "llm.py")

SETTINGS = {
    "TIMEOUT_MS": 1000,
    "CONNECT_TIMEOUT_MS": 1000,
}

# The LLM scripts every TTS test may use: "mock:say TEXT" replies TEXT
# (so "mock:say mock:refuse_401 Hello." has the TTS mock refuse), quickly
# or slowly.  The mock drops the user text's final . ! or ?, so the
# reply ends in "." whatever the text ended with.  t/tts/llm-scripts*.json
# add more.
LLM_SCRIPTS = {
    "say": {"text": "{user}.", "ttft": 0.01, "rate": 200},
    "say_slow": {"text": "{user}.", "ttft": 0.01, "rate": 4},
    "say_now": {"text": "{user}.", "ttft": 0, "rate": 100000},
}


def merge(pattern, base, keys):
    """One library from the files matching pattern (later files win)."""
    lib = {k: dict(base.get(k, {})) for k in keys}
    for path in sorted(glob.glob(os.path.join(HERE, pattern))):
        with open(path) as f:
            data = json.load(f)
        for k in keys:
            lib[k].update(data.get(k, {}))
    return lib


def write_libraries(run):
    tts = merge("tts-scripts*.json", {}, ("scripts",))
    llm = merge("llm-scripts*.json", {"scripts": LLM_SCRIPTS},
                ("scripts", "tools"))
    paths = (run.path("tts-scripts.json"), run.path("llm-scripts.json"))
    for path, lib in zip(paths, (tts, llm)):
        with open(path, "w") as f:
            json.dump(lib, f)
    return paths


class TtsRunner(provider_harness.Runner):
    """The shared runner; the configuration is nginx.conf.in plus every
    *.locations.in of the suite, filled alike into the prefix's
    locations/ directory, which nginx.conf.in includes."""

    def write_config(self, values):
        outdir = self.path("locations")
        os.makedirs(outdir, exist_ok=True)
        for old in glob.glob(os.path.join(outdir, "*.conf")):
            os.unlink(old)
        for src in sorted(glob.glob(os.path.join(self.here,
                                                 "*.locations.in"))):
            with open(src) as f:
                text = f.read()
            for name, value in values.items():
                text = text.replace("@%s@" % name, str(value))
            left = re.findall(r"@[A-Z_]+@", text)
            if left:
                raise RuntimeError("unfilled names in %s: %s"
                                   % (os.path.basename(src), left))
            name = os.path.basename(src)[:-len(".locations.in")]
            with open(os.path.join(outdir, name + ".conf"), "w") as f:
                f.write(text)
        super().write_config(values)


def setup(run):
    tts_lib, llm_lib = write_libraries(run)
    tts_port, tts_state = run.start_mock(TTS_MOCK, tts_lib, "TTS", "tts")
    llm_port, llm_state = run.start_mock(LLM_MOCK, llm_lib, "LLM", "llm")
    dead = provider_harness.free_port()
    run.start_nginx(dict(SETTINGS, TTS_MOCK_PORT=tts_port,
                         LLM_MOCK_PORT=llm_port, DEAD_PORT=dead))
    env = {"VOICE_TTS_MOCK_PORT": tts_port, "VOICE_TTS_MOCK_STATE": tts_state,
           "VOICE_LLM_MOCK_PORT": llm_port, "VOICE_LLM_MOCK_STATE": llm_state,
           "VOICE_DEAD_PORT": dead}
    for k, v in SETTINGS.items():
        env["VOICE_TTS_" + k] = v
    return env


if __name__ == "__main__":
    sys.exit(TtsRunner(
        "tts", HERE, "tts-test-key-0123456789abcdef", "not-the-tts-key",
        "tts.key", valgrind_args=(
            "--show-leak-kinds=definite,indirect,possible",
            "--num-callers=30"),
        valgrind_stop_wait=120.0).main(setup))
