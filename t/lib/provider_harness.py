"""What the provider test suites (t/stt, t/llm) have in common.

The runner side: a private prefix with a copy of the module and the key
files, a mock that prints `READY <port>`, nginx started from the suite's
nginx.conf.in (optionally under valgrind), the unittest run, the error
log check and the closing `<suite>: N passed, M failed` line.

The test side: VOICE_* settings, voice.v1 client sessions that collect
every message with its arrival time, the mock's record long-poll and the
nginx worker's memory.
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), "..", ".."))
BUILD = os.path.join(ROOT, "build")
MODULE = os.path.join(BUILD, "ngx_http_voice_module.so")
NGINX = "/usr/sbin/nginx"
PY = "/usr/bin/python3"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the runner ------------------------------------------------------------

class TimedResult(unittest.TextTestResult):

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.stream.writeln("    (%.2fs)" % (time.monotonic() - self._started))
        self.stream.flush()


class Runner:
    """One suite's run: `suite` names it (stt, llm) and its environment
    variables VOICE_<SUITE>_PREFIX, _LOG_LEVEL and _VALGRIND; `here` holds
    nginx.conf.in and the test_*.py files."""

    def __init__(self, suite, here, key, wrong_key, key_file,
                 valgrind_args=("--show-leak-kinds=definite",),
                 valgrind_stop_wait=20.0):
        env = "VOICE_" + suite.upper() + "_"
        self.suite = suite
        self.here = here
        self.key = key
        self.wrong_key = wrong_key
        self.key_file = key_file
        self.prefix = os.path.abspath(os.environ.get(env + "PREFIX")
                                      or os.path.join(BUILD, suite))
        self.log_level = os.environ.get(env + "LOG_LEVEL", "info")
        self.valgrind = bool(os.environ.get(env + "VALGRIND"))
        self.valgrind_args = list(valgrind_args)
        self.start_wait = 60.0 if self.valgrind else 10.0
        # valgrind may write its leak report at exit, after the sessions
        self.stop_wait = valgrind_stop_wait if self.valgrind else 20.0
        self.module = os.path.join(self.prefix, "modules",
                                   os.path.basename(MODULE))
        self.mocks = []
        self.nginx = self.conf = self.port = None

    def path(self, *parts):
        return os.path.join(self.prefix, *parts)

    def make_prefix(self):
        shutil.rmtree(self.prefix, ignore_errors=True)
        for sub in ("logs", "temp", "modules"):
            os.makedirs(self.path(sub))
        # a private copy: a rebuild must not change the file under the workers
        shutil.copy2(MODULE, self.module)
        for name, key in ((self.key_file, self.key),
                          ("wrong.key", self.wrong_key)):
            with open(self.path(name), "w") as f:
                f.write(key + "\n")

    def start_mock(self, mock, scripts, label, name=None, extra=()):
        """Starts a mock on a free port; returns (port, state directory)."""
        tag = "mock-" + name if name else "mock"
        state = self.path(tag)
        logname = self.path("logs", tag + ".log")
        log = open(logname, "wb")
        proc = subprocess.Popen(
            [PY, mock, "--port", "0", "--state-dir", state, "--key", self.key,
             "--script", scripts] + list(extra),
            stdout=subprocess.PIPE, stderr=log)
        log.close()
        line = proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            proc.kill()
            proc.wait()
            raise RuntimeError("the %s mock did not start (see %s)"
                               % (label, logname))
        self.mocks.append(proc)
        return int(line[1]), state

    def write_config(self, values):
        with open(os.path.join(self.here, "nginx.conf.in")) as f:
            text = f.read()
        for name, value in values.items():
            text = text.replace("@%s@" % name, str(value))
        left = re.findall(r"@[A-Z_]+@", text)
        if left:
            raise RuntimeError("unfilled names in nginx.conf.in: %s" % left)
        self.conf = self.path("nginx.conf")
        with open(self.conf, "w") as f:
            f.write(text)

    def nginx_args(self):
        return [NGINX, "-p", self.prefix + "/", "-c", self.conf,
                "-e", self.path("logs", "error.log")]

    def config_test(self):
        return subprocess.run(self.nginx_args() + ["-t", "-q"],
                              capture_output=True, text=True)

    def start_nginx(self, values, refused=None):
        """Fills nginx.conf.in (PORT, MODULE, PREFIX and LOG_LEVEL added to
        values), starts nginx and waits until it accepts; returns its port.
        refused(stderr) may amend the configuration after a failed
        `nginx -t` and return True to have it tested again."""
        self.port = free_port()
        self.write_config(dict(values, PORT=self.port, MODULE=self.module,
                               PREFIX=self.prefix, LOG_LEVEL=self.log_level))
        rc = self.config_test()
        if rc.returncode != 0 and refused is not None and refused(rc.stderr):
            rc = self.config_test()
        if rc.returncode != 0:
            raise RuntimeError("nginx -t failed:\n" + rc.stderr)
        out = open(self.path("logs", "nginx.out"), "wb")
        cmd = self.nginx_args() + ["-g", "daemon off; master_process on;"]
        if self.valgrind:
            # one process, so that the sessions run where valgrind watches;
            # its report goes to logs/valgrind.<pid>
            cmd = (["valgrind", "--leak-check=full"] + self.valgrind_args
                   + ["--log-file=" + self.path("logs", "valgrind.%p")]
                   + self.nginx_args()
                   + ["-g", "daemon off; master_process off;"])
        self.nginx = subprocess.Popen(cmd, stdout=out,
                                      stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + self.start_wait
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                raise RuntimeError("nginx exited with status %d"
                                   % self.nginx.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=0.5):
                    return self.port
            except OSError:
                # polling until the port opens
                time.sleep(0.02)
        raise RuntimeError("nginx not accepting on %d" % self.port)

    def stop(self, proc, quit_cmd=None):
        if proc is None or proc.poll() is not None:
            return
        if quit_cmd:
            subprocess.call(quit_cmd)
        else:
            proc.terminate()
        try:
            proc.wait(self.stop_wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def check_error_log(self):
        """Problems found in the error log: alerts, emergencies, crashes,
        and a provider key, which is never logged at any level."""
        with open(self.path("logs", "error.log"), errors="replace") as f:
            lines = f.readlines()
        bad = [l for l in lines
               if "[alert]" in l or "[emerg]" in l or "segfault" in l
               or "exited on signal" in l]
        bad += ["the key is in the error log: " + l
                for l in lines if self.key in l or self.wrong_key in l]
        notable = [l for l in lines if "[crit]" in l or "[error]" in l]
        if notable:
            print("note: %d [crit]/[error] lines in the error log, first ones:"
                  % len(notable))
            sys.stdout.writelines(notable[:5])
        if bad:
            sys.stdout.writelines(bad[:20])
        return bad

    def run_tests(self):
        """Every test_*.py of the suite, or only the tests named as
        arguments (test_deepgram.Failures.test_malformed); returns
        (passed, failed)."""
        sys.path.insert(0, self.here)
        loader = unittest.defaultTestLoader
        if sys.argv[1:]:
            suite = loader.loadTestsFromNames(sys.argv[1:])
        else:
            suite = loader.discover(self.here, pattern="test_*.py",
                                    top_level_dir=self.here)
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                         resultclass=TimedResult).run(suite)
        bad = len(result.failures) + len(result.errors) \
            + len(result.unexpectedSuccesses)
        if result.skipped:
            print("skipped: %d" % len(result.skipped))
        return result.testsRun - bad - len(result.skipped), bad

    def main(self, setup):
        """setup(runner) starts the mocks and nginx and returns the
        VOICE_* variables for the tests beyond VOICE_NGINX_PORT,
        VOICE_NGINX_PID and VOICE_PREFIX.  Returns the exit status."""
        passed = failed = 0
        if not os.path.exists(MODULE):
            print("no module at %s: run make module first" % MODULE)
            print("%s: 0 passed, 1 failed" % self.suite)
            return 1

        self.make_prefix()
        try:
            env = setup(self)
            env.update({"VOICE_NGINX_PORT": self.port,
                        "VOICE_NGINX_PID": self.nginx.pid,
                        "VOICE_PREFIX": self.prefix})
            os.environ.update((k, str(v)) for k, v in env.items())
            passed, failed = self.run_tests()
        except Exception as e:
            print("FAIL: setup: %s" % e)
            failed += 1
        finally:
            if self.nginx is not None:
                self.stop(self.nginx, self.nginx_args() + ["-s", "quit"])
                if self.nginx.returncode not in (0, None):
                    print("FAIL: nginx exited with status %d"
                          % self.nginx.returncode)
                    failed += 1
            for proc in self.mocks:
                self.stop(proc)

        try:
            bad = self.check_error_log()
        except OSError as e:
            bad = [str(e)]
        if bad:
            print("FAIL: the error log has %d alert/emerg/crash lines"
                  % len(bad))
            failed += 1
        else:
            print("ok: the error log has no alert, emerg or crash")
            passed += 1

        print("%s: %d passed, %d failed" % (self.suite, passed, failed))
        return 1 if failed else 0


# ---- the tests' side -------------------------------------------------------

def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(name + " is not set: run the tests through run.py")
    return value


class SessionTestCase(unittest.IsolatedAsyncioTestCase):
    """Aborts the sessions a test left open."""

    async def asyncSetUp(self):
        # debug mode records a traceback per callback: too slow for load
        asyncio.get_running_loop().set_debug(False)
        self.sessions = []

    async def asyncTearDown(self):
        for s in self.sessions:
            s.abort()


class Session:
    """One client session: every message the server sent, with the wall
    time (time.time()) it arrived.  WAIT bounds the waits: a guard against
    hanging, never a latency assertion."""

    WAIT = 15.0

    def __init__(self, ws):
        self.ws = ws
        self.events = []            # (arrival wall time, message)
        self.close_code = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self):
        from websockets.exceptions import ConnectionClosed
        try:
            async for msg in self.ws:
                if isinstance(msg, str):
                    msg = json.loads(msg)
                self.events.append((time.time(), msg))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            rc = self.ws.close_rcvd
            self.close_code = rc.code if rc is not None else None
            self.closed.set()
            self._changed.set()

    def messages(self, type_=None, since=0, **fields):
        return [m for _, m in self.events[since:]
                if isinstance(m, dict)
                and (type_ is None or m.get("type") == type_)
                and all(m.get(k) == v for k, v in fields.items())]

    def timed(self, type_, **fields):
        return [(t, m) for t, m in self.events
                if isinstance(m, dict) and m.get("type") == type_
                and all(m.get(k) == v for k, v in fields.items())]

    async def wait_for(self, pred, timeout=None, what="a condition"):
        """Waits until pred(self) holds; returns its value."""
        deadline = time.monotonic() + (self.WAIT if timeout is None
                                        else timeout)
        while True:
            value = pred(self)
            if value:
                return value
            if self.closed.is_set():
                raise AssertionError("closed (%r) while waiting for %s; got "
                                     "%r" % (self.close_code, what,
                                             self.messages()))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; got %r"
                                     % (what, self.messages()))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_type(self, type_, since=0, timeout=None, **fields):
        def pred(s):
            found = s.messages(type_, since, **fields)
            return found[0] if found else None
        return await self.wait_for(pred, timeout, "%s %r" % (type_, fields))

    async def send_json(self, obj):
        await self.ws.send(json.dumps(obj))

    async def end(self, timeout=None):
        """session.end; waits for the close; returns the close code."""
        await self.send_json({"type": "session.end"})
        await asyncio.wait_for(self.closed.wait(),
                               self.WAIT if timeout is None else timeout)
        return self.close_code

    def abort(self):
        if self.ws.transport is not None:
            self.ws.transport.abort()
        self._reader.cancel()


def ws_url(port, path, **query):
    # nginx's $arg_ variables are the raw query: a list of mock scripts
    # must reach the mock as a comma, not as %2C
    q = urllib.parse.urlencode(query, safe=",")
    return "ws://127.0.0.1:%d%s%s" % (port, path, "?" + q if q else "")


async def start(url, session_class, test, start_msg):
    """Connects, sends start_msg and waits for session.started."""
    import websockets
    wait = session_class.WAIT
    ws = await websockets.connect(url, subprotocols=["voice.v1"],
                                  ping_interval=None, max_size=None,
                                  open_timeout=wait, close_timeout=wait)
    s = session_class(ws)
    if test is not None:
        test.sessions.append(s)
    await s.send_json(start_msg)
    await s.wait_type("session.started")
    return s


# ---- the mock's records ----------------------------------------------------

def _get(port, path, timeout):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=timeout + 5) as r:
        return json.loads(r.read())


async def mock_state(port, since=None, timeout=5.0):
    path = "/_mock/state"
    if since is not None:
        path += "?since=%d&timeout=%s" % (since, timeout)
    return await asyncio.get_running_loop().run_in_executor(
        None, _get, port, path, timeout)


def finished(n=1):
    return lambda recs: len(recs) >= n and all(r["finished"] for r in recs)


async def records(port, select, label, cond, timeout, what):
    """Long-polls the mock until the records select(state) picks (in
    arrival order) satisfy cond; returns them."""
    deadline = time.monotonic() + timeout
    st = await mock_state(port)
    while True:
        recs = sorted(select(st), key=lambda r: r["id"])
        if cond(recs):
            return recs
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("mock records of %s: %s not reached; last "
                                 "seen %s" % (label, what or "condition",
                                              json.dumps(recs)[:3000]))
        st = await mock_state(port, st["version"], min(left, 5.0))


# ---- the nginx worker ------------------------------------------------------

def worker_pids(master):
    pids = []
    for tid in os.listdir("/proc/%d/task" % master):
        with open("/proc/%d/task/%s/children" % (master, tid)) as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def worker_rss_kb(master):
    """VmRSS of the single worker, in KiB."""
    pids = worker_pids(master)
    if len(pids) != 1:
        raise AssertionError("expected one worker, found %r" % pids)
    with open("/proc/%d/status" % pids[0]) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
