#!/usr/bin/python3
"""Tests of the streaming STT engines against the Deepgram mock.

Makes a throw-away CA and a server certificate for localhost, starts the
Deepgram mock twice (ws:// and wss://), starts nginx with the module and
t/stt/nginx.conf.in, runs every t/stt/test_*.py (unittest), then reads the
error log.  Prints `stt: N passed, M failed` last and exits non-zero on any
failure.  Run with Debian's /usr/bin/python3; test names given as
arguments (test_deepgram.Failures.test_malformed) run only those, and
VOICE_STT_LOG_LEVEL=debug makes nginx log more than info.
VOICE_STT_VALGRIND=1 runs nginx as one process under valgrind, whose
report goes to logs/valgrind.<pid> in the run prefix (timing-bound tests
may then fail: the figures are not the point of such a run).

The tests learn about the setup from the environment:

    VOICE_NGINX_PORT      nginx
    VOICE_MOCK_PORT       the mock, ws://
    VOICE_TLS_MOCK_PORT   the mock, wss:// (empty when it cannot do TLS)
    VOICE_CA_FILE         the CA that signed the mock's certificate
    VOICE_MOCK_STATE      the mock's record directory
    VOICE_NGINX_PID       nginx's master process
    VOICE_PREFIX          the run directory (build/stt)
    VOICE_SHORT_TIMEOUT_MS, VOICE_DEAD_RETRIES  settings of locations
"""

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
PREFIX = os.path.abspath(os.environ.get("VOICE_STT_PREFIX")
                         or os.path.join(BUILD, "stt"))
MOCK = os.path.join(ROOT, "t", "mock", "deepgram.py")
NGINX = "/usr/sbin/nginx"
PY = "/usr/bin/python3"

KEY = "stt-test-key-0123456789abcdef"
WRONG_KEY = "not-the-key"

SETTINGS = {
    "SHORT_TIMEOUT_MS": 500,
    "DEAD_RETRIES": 2,
}

START_WAIT = 60.0 if os.environ.get("VOICE_STT_VALGRIND") else 10.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certificates():
    """A CA, and a certificate it signs for DNS name localhost only (no IP
    address), so that a connection to 127.0.0.1 fails the name check."""
    ca_key = os.path.join(PREFIX, "ca.key")
    ca = os.path.join(PREFIX, "ca.pem")
    key = os.path.join(PREFIX, "server.key")
    csr = os.path.join(PREFIX, "server.csr")
    cert = os.path.join(PREFIX, "server.pem")
    ext = os.path.join(PREFIX, "server.ext")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=voice stt test CA", "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", key, "-out", csr)
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
    return ca, cert, key


def mock_has_tls():
    out = subprocess.run([PY, MOCK, "--help"], capture_output=True,
                         text=True).stdout
    return "--tls-cert" in out


def start_mock(name, extra):
    state = os.path.join(PREFIX, "mock-" + name)
    log = open(os.path.join(PREFIX, "logs", "mock-%s.log" % name), "wb")
    proc = subprocess.Popen(
        [PY, MOCK, "--port", "0", "--state-dir", state, "--key", KEY,
         "--script", os.path.join(PREFIX, "scripts.json")] + extra,
        stdout=subprocess.PIPE, stderr=log)
    log.close()
    line = proc.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "READY":
        proc.kill()
        proc.wait()
        raise RuntimeError("the %s mock did not start (see %s)"
                           % (name, os.path.join(PREFIX, "logs")))
    return proc, int(line[1]), state


def write_scripts():
    """Scripts beyond the mock's built-in ones: one distinct utterance per
    concurrent session (w0 ... w99)."""
    import json
    scripts = {}
    for i in range(100):
        word = "word%d" % i
        scripts["w%d" % i] = {
            "events": [
                {"at": 0.3, "type": "Results", "transcript": word},
                {"at": 0.6, "type": "Results",
                 "transcript": "%s is number %d." % (word.capitalize(), i),
                 "is_final": True, "speech_final": True},
            ],
        }
    with open(os.path.join(PREFIX, "scripts.json"), "w") as f:
        json.dump({"scripts": scripts}, f)


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


def start_nginx(conf, port):
    rc = subprocess.run(nginx_args(conf) + ["-t", "-q"],
                        capture_output=True, text=True)
    if rc.returncode != 0:
        raise RuntimeError("nginx -t failed:\n" + rc.stderr)
    out = open(os.path.join(PREFIX, "logs", "nginx.out"), "wb")
    cmd = nginx_args(conf) + ["-g", "daemon off; master_process on;"]
    if os.environ.get("VOICE_STT_VALGRIND"):
        # one process under valgrind; its report goes to logs/valgrind.*
        cmd = (["valgrind", "--leak-check=full", "--show-leak-kinds=definite",
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


def stop(proc, sig_quit=None):
    if proc is None or proc.poll() is not None:
        return
    if sig_quit:
        subprocess.call(sig_quit)
    else:
        proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_error_log():
    """Problems found in the error log: alerts, emergencies, crashes."""
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
        print("stt: 0 passed, 1 failed")
        return 1

    shutil.rmtree(PREFIX, ignore_errors=True)
    for sub in ("logs", "temp", "modules"):
        os.makedirs(os.path.join(PREFIX, sub))
    # a private copy: a rebuild must not change the file under the workers
    module = os.path.join(PREFIX, "modules", os.path.basename(MODULE))
    shutil.copy2(MODULE, module)
    with open(os.path.join(PREFIX, "deepgram.key"), "w") as f:
        f.write(KEY + "\n")
    with open(os.path.join(PREFIX, "wrong.key"), "w") as f:
        f.write(WRONG_KEY + "\n")

    mocks = []
    nginx = None
    conf = None
    try:
        ca, cert, key = make_certificates()
        write_scripts()
        proc, mock_port, state = start_mock("plain", [])
        mocks.append(proc)
        tls_port = ""
        if mock_has_tls():
            proc, tls_port, _ = start_mock(
                "tls", ["--tls-cert", cert, "--tls-key", key])
            mocks.append(proc)
        else:
            print("note: the mock has no --tls-cert option yet: "
                  "the TLS tests are skipped")
        port = free_port()
        dead = free_port()
        values = dict(SETTINGS, MODULE=module, PREFIX=PREFIX, PORT=port,
                      MOCK_PORT=mock_port, TLS_MOCK_PORT=tls_port or dead,
                      DEAD_PORT=dead,
                      LOG_LEVEL=os.environ.get("VOICE_STT_LOG_LEVEL",
                                               "info"))
        conf = write_config(values)
        nginx = start_nginx(conf, port)

        os.environ.update({
            "VOICE_NGINX_PORT": str(port),
            "VOICE_MOCK_PORT": str(mock_port),
            "VOICE_TLS_MOCK_PORT": str(tls_port),
            "VOICE_CA_FILE": ca,
            "VOICE_MOCK_STATE": state,
            "VOICE_NGINX_PID": str(nginx.pid),
            "VOICE_PREFIX": PREFIX,
            "VOICE_SHORT_TIMEOUT_MS": str(SETTINGS["SHORT_TIMEOUT_MS"]),
            "VOICE_DEAD_RETRIES": str(SETTINGS["DEAD_RETRIES"]),
        })
        sys.path.insert(0, HERE)
        if sys.argv[1:]:
            # only these tests, e.g. test_deepgram.Failures.test_malformed
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
        for proc in mocks:
            stop(proc)

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

    print("stt: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
