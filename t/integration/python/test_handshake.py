"""Opening handshake seen through the websockets client library."""

import unittest

from websockets.exceptions import InvalidStatusCode

import voicetest as vt


class HandshakeTest(vt.VoiceTestCase):

    @vt.timed(20)
    async def test_selects_voice_v1_among_offers(self):
        ws = await vt.connect("/voice", subprotocols=("chat.v2", "voice.v1"))
        try:
            self.assertEqual(ws.subprotocol, "voice.v1")
            self.assertEqual(ws.response_headers.get("Sec-WebSocket-Protocol"),
                             "voice.v1")
            self.assertEqual(
                ws.response_headers.get("Upgrade", "").lower(), "websocket")
        finally:
            await ws.close()

    @vt.timed(20)
    async def test_refused_without_voice_v1(self):
        with self.assertRaises(InvalidStatusCode) as caught:
            ws = await vt.connect("/voice", subprotocols=("chat.v2",))
            await ws.close()
        self.assertEqual(caught.exception.status_code, 400)
        ctype = caught.exception.headers.get("Content-Type", "")
        self.assertTrue(ctype.startswith("text/plain"),
                        "refusal Content-Type is %r" % ctype)


if __name__ == "__main__":
    unittest.main()
