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
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.join(ROOT, "build")
MODULE = os.path.join(BUILD, "ngx_http_voice_module.so")
PREFIX = os.path.abspath(os.environ.get("VOICE_LLM_PREFIX")
                         or os.path.join(BUILD, "llm"))
MOCK = os.path.join(ROOT, "t", "mock", "llm.py")
NGINX = "/usr/sbin/nginx"
PY = "/usr/bin/python3"

KEY = "llm-test-key-0123456789abcdef"
WRONG_KEY = "not-the-llm-key"

SETTINGS = {
    "FIRST_TOKEN_TIMEOUT_MS": 500,
    "TOTAL_TIMEOUT_MS": 2000,
    "RETRIES": 2,
    "TOOL_TIMEOUT_MS": 1000,
    "SYSTEM": "You are the test assistant. Answer briefly.",
}

VALGRIND = bool(os.environ.get("VOICE_LLM_VALGRIND"))
START_WAIT = 60.0 if VALGRIND else 10.0
# valgrind writes its leak report at exit, after the sessions closed
STOP_WAIT = 120.0 if VALGRIND else 20.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_scripts():
    """One library for the mock: every t/llm/scripts*.json merged (later
    files win).  The built-in scripts need no file."""
    lib = {"scripts": {}, "tools": {}}
    for path in sorted(glob.glob(os.path.join(HERE, "scripts*.json"))):
        with open(path) as f:
            data = json.load(f)
        lib["scripts"].update(data.get("scripts", {}))
        lib["tools"].update(data.get("tools", {}))
    out = os.path.join(PREFIX, "scripts.json")
    with open(out, "w") as f:
        json.dump(lib, f)
    return out


def start_mock(scripts):
    state = os.path.join(PREFIX, "mock")
    log = open(os.path.join(PREFIX, "logs", "mock.log"), "wb")
    proc = subprocess.Popen(
        [PY, MOCK, "--port", "0", "--state-dir", state, "--key", KEY,
         "--script", scripts], stdout=subprocess.PIPE, stderr=log)
    log.close()
    line = proc.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "READY":
        proc.kill()
        proc.wait()
        raise RuntimeError("the LLM mock did not start (see %s)"
                           % os.path.join(PREFIX, "logs", "mock.log"))
    return proc, int(line[1]), state


def write_config(values):
    with open(os.path.join(HERE, "nginx.conf.in")) as f:
        text = f.read()
    for name, value in values.items():
        text = text.replace("@%s@" % name, str(value))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError("unfilled names in nginx.conf.in: %s" % left)
    conf = os.path.join(PREFIX, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf


def nginx_args(conf):
    return [NGINX, "-p", PREFIX + "/", "-c", conf,
            "-e", os.path.join(PREFIX, "logs", "error.log")]


def without_tools(conf):
    """While the module cannot take voice_tool yet, the other tests still
    run: the tool lines are left out and VOICE_NO_TOOLS=1 tells the tool
    tests to skip."""
    with open(conf) as f:
        lines = f.readlines()
    with open(conf, "w") as f:
        f.writelines(l for l in lines
                     if not l.lstrip().startswith("voice_tool"))
    # the refusal went to the error log: it is not a finding
    open(os.path.join(PREFIX, "logs", "error.log"), "w").close()
    os.environ["VOICE_NO_TOOLS"] = "1"
    print("note: this module has no voice_tool yet: tools are left out")


def start_nginx(conf, port):
    rc = subprocess.run(nginx_args(conf) + ["-t", "-q"],
                        capture_output=True, text=True)
    if rc.returncode != 0 and \
            '"voice_tool" directive is not available' in rc.stderr:
        without_tools(conf)
        rc = subprocess.run(nginx_args(conf) + ["-t", "-q"],
                            capture_output=True, text=True)
    if rc.returncode != 0:
        raise RuntimeError("nginx -t failed:\n" + rc.stderr)
    out = open(os.path.join(PREFIX, "logs", "nginx.out"), "wb")
    cmd = nginx_args(conf) + ["-g", "daemon off; master_process on;"]
    if VALGRIND:
        # one process, so that the sessions run where valgrind watches
        cmd = (["valgrind", "--leak-check=full",
                "--show-leak-kinds=definite,indirect,possible",
                "--num-callers=30",
                "--log-file=" + os.path.join(PREFIX, "logs", "valgrind.%p")]
               + nginx_args(conf) + ["-g", "daemon off; master_process off;"])
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("nginx exited with status %d"
                               % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            # polling until the port opens
            time.sleep(0.02)
    raise RuntimeError("nginx not accepting on %d" % port)


def stop(proc, quit_cmd=None):
    if proc is None or proc.poll() is not None:
        return
    if quit_cmd:
        subprocess.call(quit_cmd)
    else:
        proc.terminate()
    try:
        proc.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_error_log():
    """Alerts, emergencies and crashes in the error log."""
    path = os.path.join(PREFIX, "logs", "error.log")
    with open(path, errors="replace") as f:
        lines = f.readlines()
    bad = [l for l in lines
           if "[alert]" in l or "[emerg]" in l or "segfault" in l
           or "exited on signal" in l]
    # the provider keys are never logged, at any level
    bad += ["the key is in the error log: " + l
            for l in lines if KEY in l or WRONG_KEY in l]
    notable = [l for l in lines if "[crit]" in l or "[error]" in l]
    if notable:
        print("note: %d [crit]/[error] lines in the error log, first ones:"
              % len(notable))
        sys.stdout.writelines(notable[:5])
    if bad:
        sys.stdout.writelines(bad[:20])
    return bad


class TimedResult(unittest.TextTestResult):

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.stream.writeln("    (%.2fs)" % (time.monotonic() - self._started))
        self.stream.flush()


def main():
    passed = failed = 0
    if not os.path.exists(MODULE):
        print("no module at %s: run make module first" % MODULE)
        print("llm: 0 passed, 1 failed")
        return 1

    shutil.rmtree(PREFIX, ignore_errors=True)
    for sub in ("logs", "temp", "modules"):
        os.makedirs(os.path.join(PREFIX, sub))
    # a private copy: a rebuild must not change the file under the worker
    module = os.path.join(PREFIX, "modules", os.path.basename(MODULE))
    shutil.copy2(MODULE, module)
    with open(os.path.join(PREFIX, "llm.key"), "w") as f:
        f.write(KEY + "\n")
    with open(os.path.join(PREFIX, "wrong.key"), "w") as f:
        f.write(WRONG_KEY + "\n")

    mock = nginx = conf = None
    try:
        mock, mock_port, state = start_mock(write_scripts())
        port = free_port()
        values = dict(SETTINGS, MODULE=module, PREFIX=PREFIX, PORT=port,
                      MOCK_PORT=mock_port, DEAD_PORT=free_port(),
                      LOG_LEVEL=os.environ.get("VOICE_LLM_LOG_LEVEL",
                                               "info"))
        conf = write_config(values)
        nginx = start_nginx(conf, port)
        os.environ.update({
            "VOICE_NGINX_PORT": str(port),
            "VOICE_MOCK_PORT": str(mock_port),
            "VOICE_MOCK_STATE": state,
            "VOICE_NGINX_PID": str(nginx.pid),
            "VOICE_PREFIX": PREFIX,
            "VOICE_LLM_SYSTEM": SETTINGS["SYSTEM"],
        })
        for k in ("FIRST_TOKEN_TIMEOUT_MS", "TOTAL_TIMEOUT_MS", "RETRIES",
                  "TOOL_TIMEOUT_MS"):
            os.environ["VOICE_" + k] = str(SETTINGS[k])
        sys.path.insert(0, HERE)
        if sys.argv[1:]:
            suite = unittest.defaultTestLoader.loadTestsFromNames(
                sys.argv[1:])
        else:
            suite = unittest.defaultTestLoader.discover(
                HERE, pattern="test_*.py", top_level_dir=HERE)
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                         resultclass=TimedResult).run(suite)
        bad = len(result.failures) + len(result.errors) \
            + len(result.unexpectedSuccesses)
        passed += result.testsRun - bad - len(result.skipped)
        failed += bad
        if result.skipped:
            print("skipped: %d" % len(result.skipped))
    except Exception as e:
        print("FAIL: setup: %s" % e)
        failed += 1
    finally:
        if nginx is not None:
            stop(nginx, nginx_args(conf) + ["-s", "quit"])
            if nginx.returncode not in (0, None):
                print("FAIL: nginx exited with status %d" % nginx.returncode)
                failed += 1
        stop(mock)

    try:
        bad = check_error_log()
    except OSError as e:
        bad = [str(e)]
    if bad:
        print("FAIL: the error log has %d alert/emerg/crash lines" % len(bad))
        failed += 1
    else:
        print("ok: the error log has no alert, emerg or crash")
        passed += 1

    print("llm: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
