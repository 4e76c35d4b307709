"""The provider connection over TLS: the chain and the host name are
verified, and a failure of either is an STT failure with its reason in the
error log.

The wss:// mock serves a certificate for DNS name localhost signed by a
throw-away CA (VOICE_CA_FILE).  Run through t/stt/run.py.
"""

import asyncio
import json
import os
import ssl
import time
import unittest
import urllib.request

from stttest import (CA_FILE, PREFIX, TLS_MOCK_PORT, WAIT, SttTestCase,
                     new_id, start)


def _tls_get(path, timeout):
    ctx = ssl.create_default_context(cafile=CA_FILE)
    url = "https://localhost:%d%s" % (TLS_MOCK_PORT, path)
    with urllib.request.urlopen(url, timeout=timeout + 5, context=ctx) as r:
        return json.loads(r.read())


async def tls_state(since=None, timeout=5.0):
    path = "/_mock/state"
    if since is not None:
        path += "?since=%d&timeout=%s" % (since, timeout)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _tls_get, path, timeout)


async def tls_records(mock_id, cond, timeout=WAIT, what="condition"):
    """Long-polls the wss:// mock until the records that carry mock_id
    satisfy cond; returns them."""
    deadline = time.monotonic() + timeout
    st = await tls_state()
    while True:
        recs = sorted((r for r in st["connections"]
                       if r["mock_params"].get("mock_id") == mock_id),
                      key=lambda r: r["id"])
        if cond(recs):
            return recs
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("wss mock records of %s: %s not reached; "
                                 "last seen %s" % (mock_id, what,
                                                   json.dumps(recs)[:2000]))
        st = await tls_state(st["version"], min(left, 5.0))


class ErrorLog:
    """What nginx logged from now on."""

    def __init__(self):
        self.path = os.path.join(PREFIX, "logs", "error.log")
        self.start = os.path.getsize(self.path)

    def new(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.start)
            return f.read()


@unittest.skipUnless(TLS_MOCK_PORT, "the mock cannot serve wss:// here")
class Tls(SttTestCase):

    async def works(self, path):
        """A session on path reaches the mock over TLS with the key."""
        mid = new_id("tls")
        s = await start(path, self, mock_id=mid)

        def upgraded(recs):
            return recs and recs[0]["handshake"]["status"] == 101

        recs = await s.keep_talking(
            tls_records(mid, upgraded, what="an upgraded connection"))
        rec = recs[0]
        self.assertEqual(rec["auth"], "ok")
        self.assertEqual(rec["path"], "/v1/listen")
        self.assertEqual(rec["violations"], [])
        self.assertEqual(s.errors(), [])
        await s.end()

    async def fails(self, path, logged):
        """A session on path gets STT_FAIL; the log says why."""
        log = ErrorLog()
        mid = new_id("tls")
        s = await start(path, self, mock_id=mid)
        err = await s.keep_talking(s.wait_type("error", code="STT_FAIL"))
        self.assertIn("recoverable", err)
        text = log.new()
        self.assertIn(logged, text)
        self.assertNotIn("[alert]", text)
        # nothing got as far as an HTTP request on the mock
        st = await tls_state()
        self.assertEqual([r for r in st["connections"]
                          if r["mock_params"].get("mock_id") == mid], [])

    async def test_trusted(self):
        await self.works("/tls-trusted")

    async def test_noverify(self):
        # the name does not match, and nothing is checked: it works
        await self.works("/tls-noverify")

    async def test_untrusted(self):
        # the system's store does not know the test CA
        await self.fails("/tls-untrusted", "provider certificate verify error")

    async def test_wronghost(self):
        # a good chain for "localhost", reached as 127.0.0.1
        await self.fails("/tls-wronghost",
                         "provider certificate does not match \"127.0.0.1\"")


if __name__ == "__main__":
    unittest.main()
