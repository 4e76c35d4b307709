#!/usr/bin/python3
"""Integration tests of the voice module with independent WebSocket clients.

Starts the stock nginx with the module loaded, runs the Python tests
(websockets) and the Node tests (ws), then stops nginx with `-s quit`
while sessions are open and checks how they end, and finally reads the
error log.  Prints `integration: N passed, M failed` last and exits
non-zero on any failure.

Run from this directory with Debian's /usr/bin/python3.
"""

import asyncio
import fcntl
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
# VOICE_INTEGRATION_PREFIX runs a second copy of the suite beside the
# default one; runs that share a prefix wait for each other (see main).
PREFIX = os.path.abspath(os.environ.get("VOICE_INTEGRATION_PREFIX")
                         or os.path.join(BUILD, "integration"))
NGINX = "/usr/sbin/nginx"
NODE = shutil.which("node") or "node"
NPM = shutil.which("npm") or "npm"

# The values written into the configuration; the tests get them too.
SETTINGS = {
    "ECHO_DELAY_MS": 100,
    "SLOW_ECHO_DELAY_MS": 100,
    "SLOW_SEND_TIMEOUT_MS": 2000,
    "VAD_SILENCE_MS": 700,
    "VAD_MIN_SPEECH_MS": 150,
    "SHORT_UTTERANCE_MS": 500,
    "PLAYOUT_LEAD_MS": 80,
}

SHUTDOWN_SESSIONS = 6     # per client library; half of them streaming
START_WAIT = 10.0         # for nginx to accept connections
EXIT_WAIT = 20.0          # for nginx to exit after -s quit


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def ok(self, name):
        self.passed += 1
        print("ok: " + name, flush=True)

    def fail(self, name, why=""):
        self.failed += 1
        self.failures.append(name)
        print("FAIL: " + name + (" -- " + why if why else ""), flush=True)

    def check(self, name, problems):
        if problems:
            self.fail(name, "; ".join(problems))
        else:
            self.ok(name)


def section(title):
    print("\n== %s ==" % title, flush=True)


# ---- node_modules --------------------------------------------------------

def node_modules_current():
    """True when every package of package-lock.json is installed at the
    version the lock names."""
    try:
        with open(os.path.join(HERE, "package-lock.json")) as f:
            lock = json.load(f)
    except (OSError, ValueError):
        return False
    for path, meta in lock.get("packages", {}).items():
        if not path:
            continue
        try:
            with open(os.path.join(HERE, path, "package.json")) as f:
                installed = json.load(f)
        except (OSError, ValueError):
            return False
        if installed.get("version") != meta.get("version"):
            return False
    return True


def ensure_node_modules():
    if shutil.which(NODE) is None or shutil.which(NPM) is None:
        print("node or npm is not installed", flush=True)
        return False
    if node_modules_current():
        return True
    print("installing node packages (npm ci)", flush=True)
    rc = subprocess.call([NPM, "ci", "--no-audit", "--no-fund"], cwd=HERE)
    return rc == 0 and node_modules_current()


# ---- nginx ---------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(port):
    shutil.rmtree(PREFIX, ignore_errors=True)
    for sub in ("logs", "temp", "modules", "work"):
        os.makedirs(os.path.join(PREFIX, sub))
    # nginx maps the module file; a rebuild that rewrites it in place would
    # crash the workers under the tests, so they load a private copy.
    module = os.path.join(PREFIX, "modules", os.path.basename(MODULE))
    shutil.copy2(MODULE, module)
    with open(os.path.join(HERE, "nginx.conf.in")) as f:
        text = f.read()
    values = dict(SETTINGS, MODULE=module, PREFIX=PREFIX, PORT=port)
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


def start_nginx(conf, port):
    out = open(os.path.join(PREFIX, "logs", "nginx.out"), "wb")
    proc = subprocess.Popen(nginx_args(conf), stdout=out,
                            stderr=subprocess.STDOUT)
    out.close()
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc, "nginx exited with status %d" % proc.returncode
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, None
        except OSError:
            pass
        # Polling interval while the port is not open yet.
        time.sleep(0.02)
    return proc, "port %d not accepting after %.0fs" % (port, START_WAIT)


def quit_nginx(conf):
    return subprocess.call(nginx_args(conf) + ["-s", "quit"])


def wait_exit(proc, seconds):
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def stop_hard(proc):
    if proc.poll() is None:
        proc.terminate()
        if not wait_exit(proc, 10):
            proc.kill()
            proc.wait()


def show_file(path, last=40):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return
    print("---- %s (last %d lines) ----" % (path, last))
    sys.stdout.writelines(lines[-last:])
    print("----", flush=True)


def check_error_log(tally):
    path = os.path.join(PREFIX, "logs", "error.log")
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        tally.fail("error log is readable", str(e))
        return
    bad = [l for l in lines if "[alert]" in l or "[emerg]" in l]
    notable = [l for l in lines if "[crit]" in l or "[error]" in l]
    if notable:
        print("note: %d [crit]/[error] lines in the error log, first ones:"
              % len(notable))
        sys.stdout.writelines(notable[:5])
    if bad:
        sys.stdout.writelines(bad[:20])
        tally.fail("error log has no [alert] or [emerg]",
                   "%d such lines" % len(bad))
    else:
        tally.ok("error log has no [alert] or [emerg]")


# ---- test suites ---------------------------------------------------------

class TimedResult(unittest.TextTestResult):
    """Verbose result that also tells how long each test took."""

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.stream.writeln("    (%.2fs)" % (time.monotonic() - self._started))
        self.stream.flush()


def run_python_tests(tally):
    suite = unittest.defaultTestLoader.discover(
        os.path.join(HERE, "python"), pattern="test_*.py",
        top_level_dir=os.path.join(HERE, "python"))
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=TimedResult).run(suite)
    bad = len(result.failures) + len(result.errors) \
        + len(result.unexpectedSuccesses)
    tally.passed += result.testsRun - bad - len(result.skipped)
    tally.failed += bad
    for test, _ in result.failures + result.errors:
        tally.failures.append("python: " + test.id())


def run_node_tests(tally, env):
    tap = os.path.join(PREFIX, "node.tap")
    files = sorted(os.path.join("node", f)
                   for f in os.listdir(os.path.join(HERE, "node"))
                   if f.endswith(".test.mjs"))
    cmd = [NODE, "--test", "--test-concurrency=1",
           "--test-reporter=spec", "--test-reporter-destination=stdout",
           "--test-reporter=tap", "--test-reporter-destination=" + tap] \
        + files
    rc = subprocess.call(cmd, cwd=HERE, env=env)
    counts = {}
    try:
        with open(tap) as f:
            for line in f:
                m = re.match(r"^# (pass|fail|cancelled|todo|skipped) (\d+)$",
                             line.strip())
                if m:
                    counts[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    passed = counts.get("pass", 0)
    failed = counts.get("fail", 0) + counts.get("cancelled", 0)
    if rc != 0 and failed == 0:
        failed = 1
    tally.passed += passed
    tally.failed += failed
    if failed:
        tally.failures.append("node: %d test(s), see above" % failed)
    if "pass" not in counts:
        print("node test runner gave no summary (exit status %d)" % rc)


async def shutdown_step(tally, conf, proc, env):
    """Open sessions with both libraries, `nginx -s quit`, and check that
    each session gets SERVER_SHUTDOWN then close 1001 and nginx exits."""
    import shutdown_clients

    node = await asyncio.create_subprocess_exec(
        NODE, os.path.join("node", "shutdown-clients.mjs"),
        str(SHUTDOWN_SESSIONS), cwd=HERE, env=env,
        stdout=asyncio.subprocess.PIPE)
    try:
        py_sessions = await asyncio.wait_for(
            shutdown_clients.open_sessions(SHUTDOWN_SESSIONS, 700), 30)
    except Exception as e:
        node.kill()
        await node.wait()
        tally.fail("graceful shutdown: python sessions open", repr(e))
        return False

    # Every session is open and the streaming ones have audio going both
    # ways when the quit arrives.
    flowing = [asyncio.Event() for _ in py_sessions]
    watchers = [asyncio.ensure_future(
        shutdown_clients.watch(ws, 700 + i, i % 2 == 0, flowing[i]))
        for i, ws in enumerate(py_sessions)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*[e.wait() for e in flowing]), 30)
        line = await asyncio.wait_for(node.stdout.readline(), 30)
    except asyncio.TimeoutError:
        line = b"sessions not streaming within 30s"
    if line.strip() != b"ready":
        tally.fail("graceful shutdown: sessions streaming before the quit",
                   line.decode(errors="replace").strip() or "no output")
        node.kill()
        for ws in py_sessions:
            ws.transport.abort()
        await node.wait()
        await asyncio.gather(*watchers, return_exceptions=True)
        return False

    rc = await asyncio.get_running_loop().run_in_executor(None, quit_nginx,
                                                          conf)
    if rc != 0:
        tally.fail("nginx -s quit", "exit status %d" % rc)

    results = await asyncio.gather(*watchers)
    problems = ["session %d: %s" % (i, ", ".join(p))
                for i, p in enumerate(results) if p]
    tally.check("graceful shutdown: python sessions get SERVER_SHUTDOWN "
                "and close 1001", problems)

    out, _ = await node.communicate()
    problems = []
    for text in out.decode(errors="replace").splitlines():
        if text.startswith("problem: "):
            problems.append(text[len("problem: "):])
    if node.returncode != 0 and not problems:
        problems.append("node client exited with status %d"
                        % node.returncode)
    tally.check("graceful shutdown: node sessions get SERVER_SHUTDOWN "
                "and close 1001", problems)

    exited = await asyncio.get_running_loop().run_in_executor(
        None, wait_exit, proc, EXIT_WAIT)
    if not exited:
        tally.fail("nginx exits after -s quit",
                   "still running %.0fs later" % EXIT_WAIT)
    elif proc.returncode != 0:
        tally.fail("nginx exits after -s quit",
                   "exit status %d" % proc.returncode)
    else:
        tally.ok("nginx exits after -s quit")
    return True


# ---- main ----------------------------------------------------------------

_prefix_lock = None


def hold_prefix():
    """Wait for any other run that uses the same prefix: each run wipes
    the prefix and its nginx lives in it.  The lock is held until this
    process exits."""
    global _prefix_lock
    os.makedirs(os.path.dirname(PREFIX), exist_ok=True)
    _prefix_lock = open(PREFIX + ".lock", "w")
    try:
        fcntl.flock(_prefix_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another run uses %s; waiting for it" % PREFIX, flush=True)
        fcntl.flock(_prefix_lock, fcntl.LOCK_EX)


def main():
    os.chdir(HERE)
    sys.path.insert(0, os.path.join(HERE, "python"))
    started = time.monotonic()
    tally = Tally()
    hold_prefix()

    node_ready = ensure_node_modules()
    if not node_ready:
        tally.fail("npm ci")

    if not os.path.exists(MODULE):
        tally.fail("module built", MODULE + " is missing (make module)")
        return finish(tally, started)

    port = free_port()
    conf = write_config(port)
    env = dict(os.environ, VOICE_TEST_URL="ws://127.0.0.1:%d" % port,
               VOICE_TEST_WORKDIR=os.path.join(PREFIX, "work"))
    for name, value in SETTINGS.items():
        env["VOICE_" + name] = str(value)
    os.environ.update(env)

    section("nginx")
    proc, why = start_nginx(conf, port)
    if why:
        tally.fail("nginx starts with the test configuration", why)
        stop_hard(proc)
        show_file(os.path.join(PREFIX, "logs", "nginx.out"))
        show_file(os.path.join(PREFIX, "logs", "error.log"))
        return finish(tally, started)
    print("nginx pid %d on port %d, prefix %s" % (proc.pid, port, PREFIX))

    try:
        section("python (websockets)")
        run_python_tests(tally)

        if node_ready:
            section("node (ws)")
            run_node_tests(tally, env)

        section("graceful shutdown")
        if proc.poll() is not None:
            tally.fail("nginx still running before the shutdown step",
                       "exited with status %d" % proc.returncode)
        elif node_ready:
            try:
                asyncio.run(shutdown_step(tally, conf, proc, env))
            except Exception as e:
                tally.fail("graceful shutdown step", repr(e))
    finally:
        if proc.poll() is None:
            quit_nginx(conf)
            if not wait_exit(proc, EXIT_WAIT):
                stop_hard(proc)

    section("error log")
    check_error_log(tally)
    return finish(tally, started)


def finish(tally, started):
    print("\nruntime %.1fs" % (time.monotonic() - started))
    for name in tally.failures:
        print("failed: " + name)
    print("integration: %d passed, %d failed" % (tally.passed, tally.failed),
          flush=True)
    return 1 if tally.failed or not tally.passed else 0


if __name__ == "__main__":
    sys.exit(main())
