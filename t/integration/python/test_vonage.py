"""voice_protocol vonage: a client that behaves as the Vonage Voice API's
WebSocket does (websocket:connected, then 20 ms L16 frames, dtmf
events), and checks that only audio comes back."""

import unittest

import audiotest as at
import phonetest as pt
import voicetest as vt

SLACK = 2
FREQ_TOLERANCE = 3.0
MIN_SNR = 60.0      # measured about 90 dB: PCM through the resamplers


class VonageTest(vt.VoiceTestCase):

    def check(self, rate, freq, frames, got, texts, code):
        self.assertEqual(texts, [], "JSON came back to a Vonage client")
        self.assertEqual(code, 1000)
        self.assertLessEqual(abs(len(got) - len(frames)), SLACK)
        size = rate // 50 * 2
        self.assertEqual(sorted(set(len(f) for f in got)), [size],
                         "frame sizes")
        found, snr = at.tone_report(at.pcm_samples(b"".join(got)), rate,
                                    freq)
        print("\n    vonage %d Hz, %d Hz tone: %d frames back, %.1f Hz, "
              "SNR %.1f dB" % (rate, freq, len(got), found, snr), end=" ")
        self.assertLessEqual(abs(found - freq), FREQ_TOLERANCE)
        self.assertGreaterEqual(snr, MIN_SNR)

    @vt.timed(30)
    async def test_l16_16k_echo(self):
        frames, got, texts, code = await pt.vonage_call(16000, 440, short=0)
        self.check(16000, 440, frames, got, texts, code)
        # The same rate both ways: the samples come back exactly, only
        # re-framed.
        sent = b"".join(frames)
        back = b"".join(got)
        self.assertEqual(len(back), len(sent))
        self.assertEqual(back, sent)

    @vt.timed(30)
    async def test_l16_8k_echo(self):
        # 8 kHz goes up to 16 kHz and back: the resamplers hold back a
        # few samples, so the last frame waits for more audio.
        frames, got, texts, code = await pt.vonage_call(8000, 1000, short=1)
        self.check(8000, 1000, frames, got, texts, code)

    @vt.timed(20)
    async def test_binary_before_connected_closes_1008(self):
        ws = await vt.connect("/vonage", subprotocols=None)
        await ws.send(bytes(640))
        messages, code = await vt.collect_until_close(ws)
        self.assertEqual(messages, [])
        self.assertEqual(code, 1008)

    @vt.timed(20)
    async def test_unsupported_rate_closes_1008(self):
        ws = await vt.connect("/vonage", subprotocols=None)
        await ws.send(pt.vonage_connected(11025))
        await ws.send(bytes(440))
        messages, code = await vt.collect_until_close(ws)
        self.assertEqual(messages, [])
        self.assertEqual(code, 1008)


if __name__ == "__main__":
    unittest.main()
