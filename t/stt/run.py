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

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import provider_harness  # noqa: E402

MOCK = os.path.join(provider_harness.ROOT, "t", "mock", "deepgram.py")

SETTINGS = {
    "SHORT_TIMEOUT_MS": 500,
    "DEAD_RETRIES": 2,
}

def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certificates(run):
    """A CA, and a certificate it signs for DNS name localhost only (no IP
    address), so that a connection to 127.0.0.1 fails the name check."""
    ca_key, ca, key, csr, cert, ext = (run.path(n) for n in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem",
        "server.ext"))
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
    out = subprocess.run([provider_harness.PY, MOCK, "--help"],
                         capture_output=True, text=True).stdout
    return "--tls-cert" in out


def write_scripts(run):
    """Scripts beyond the mock's built-in ones: one distinct utterance per
    concurrent session (w0 ... w99)."""
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
    path = run.path("scripts.json")
    with open(path, "w") as f:
        json.dump({"scripts": scripts}, f)
    return path


def setup(run):
    ca, cert, key = make_certificates(run)
    scripts = write_scripts(run)
    mock_port, state = run.start_mock(MOCK, scripts, "plain", "plain")
    tls_port = ""
    if mock_has_tls():
        tls_port, _ = run.start_mock(MOCK, scripts, "tls", "tls",
                                     ["--tls-cert", cert, "--tls-key", key])
    else:
        print("note: the mock has no --tls-cert option yet: "
              "the TLS tests are skipped")
    dead = provider_harness.free_port()
    run.start_nginx(dict(SETTINGS, MOCK_PORT=mock_port,
                         TLS_MOCK_PORT=tls_port or dead, DEAD_PORT=dead))
    return {
        "VOICE_MOCK_PORT": mock_port,
        "VOICE_TLS_MOCK_PORT": tls_port,
        "VOICE_CA_FILE": ca,
        "VOICE_MOCK_STATE": state,
        "VOICE_SHORT_TIMEOUT_MS": SETTINGS["SHORT_TIMEOUT_MS"],
        "VOICE_DEAD_RETRIES": SETTINGS["DEAD_RETRIES"],
    }


if __name__ == "__main__":
    sys.exit(provider_harness.Runner(
        "stt", HERE, "stt-test-key-0123456789abcdef", "not-the-key",
        "deepgram.key").main(setup))
