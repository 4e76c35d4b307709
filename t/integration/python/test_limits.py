"""Sessions per node are bounded with nginx's own limit_conn: the session
over the limit is refused at the handshake with 503, and a session that
ends frees its place."""

import json
import unittest

import websockets

import voicetest as vt


class LimitTest(unittest.IsolatedAsyncioTestCase):

    @vt.timed(30)
    async def test_limit_conn_bounds_sessions(self):
        first, _ = await vt.start_session("/voice-limited")
        second, _ = await vt.start_session("/voice-limited")

        with self.assertRaises(websockets.InvalidStatusCode) as refused:
            await vt.connect("/voice-limited")
        self.assertEqual(refused.exception.status_code, 503)

        # the two sessions in place are untouched by the refusal
        for ws in (first, second):
            await ws.send(b"\x01\x02")
            self.assertEqual(await vt.recv(ws), b"\x01\x02")

        await first.send(json.dumps({"type": "session.end"}))
        messages, code = await vt.collect_until_close(first)
        self.assertEqual(code, 1000)

        third, _ = await vt.start_session("/voice-limited")
        for ws in (second, third):
            await ws.close()


if __name__ == "__main__":
    unittest.main()
