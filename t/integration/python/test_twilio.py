"""voice_protocol twilio: a client that behaves as Twilio Media Streams
does (connected, start, media every 20 ms, mark answers, dtmf, stop),
and checks that only Twilio's own messages come back."""

import asyncio
import json
import unittest

import audiotest as at
import voicetest as vt
from phonetest import open_call

SLACK = 2
FREQ_TOLERANCE = 3.0
# mu-law in, mu-law out through 16 kHz: measured 34-37 dB.
MIN_SNR = 28.0


class TwilioTest(vt.VoiceTestCase):

    def check_tone(self, call, freq, sent):
        self.assertLessEqual(abs(len(call.media) - sent), SLACK,
                             "%d media back for %d sent"
                             % (len(call.media), sent))
        got, snr = at.tone_report(at.mulaw_decode(b"".join(call.media)),
                                  8000, freq)
        print("\n    twilio %d Hz: %d media back, %.1f Hz, SNR %.1f dB"
              % (freq, len(call.media), got, snr), end=" ")
        self.assertLessEqual(abs(got - freq), FREQ_TOLERANCE)
        self.assertGreaterEqual(snr, MIN_SNR)

    @vt.timed(30)
    async def test_call_echoes_the_tone_in_twilio_messages_only(self):
        call = await open_call(1)
        await call.start()
        payloads = at.frames_of("mulaw", at.tone(440, 8000, 1.5))
        half = len(payloads) // 2
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, payload in enumerate(payloads):
            delay = start + i * at.FRAME_MS / 1000.0 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i == half:
                await call.dtmf("1")
            await call.ws.send(call.media_message(payload))
        await call.stop()
        code = await call.finish()

        self.assertEqual(call.problems, [])
        self.assertEqual(code, 1000)
        self.assertEqual(call.check_marks(), [])
        # Marks were answered while the call went on (the last ones may
        # fall due after the close).
        self.assertGreater(len(call.acked), 0)
        self.assertEqual(call.acked,
                         [n for n, _ in call.marks][:len(call.acked)])
        self.check_tone(call, 440, len(payloads))

    @vt.timed(30)
    async def test_numbers_as_strings_in_the_media_format(self):
        call = await open_call(2)
        await call.start(rate="8000", channels="1")
        payloads = at.frames_of("mulaw", at.tone(1000, 8000, 0.6))
        await at.send_paced(call.ws, payloads,
                            send=lambda i, p: call.media_message(p))
        await call.stop()
        self.assertEqual(await call.finish(), 1000)
        self.assertEqual(call.problems, [])
        self.check_tone(call, 1000, len(payloads))

    @vt.timed(30)
    async def test_garbage_is_dropped_and_a_neighbour_is_unaffected(self):
        noisy = await open_call(3)
        clean = await open_call(4)
        await noisy.start()
        await clean.start()
        noisy_audio = at.frames_of("mulaw", at.tone(700, 8000, 1.2))
        clean_audio = at.frames_of("mulaw", at.tone(1300, 8000, 1.2))
        bad = {
            10: json.dumps({"event": "media", "sequenceNumber": "99",
                            "streamSid": noisy.stream_sid,
                            "media": {"track": "inbound", "chunk": "99",
                                      "timestamp": "0",
                                      "payload": "@@not base64@@"}}),
            20: b"\x00\x01\x02binary from nowhere",
            30: '{"event": "media", "media": ',
            40: json.dumps({"event": "something.new", "x": 1}),
        }

        async def noisy_stream():
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, payload in enumerate(noisy_audio):
                delay = start + i * at.FRAME_MS / 1000.0 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if i in bad:
                    await noisy.ws.send(bad[i])
                await noisy.ws.send(noisy.media_message(payload))
            await noisy.stop()

        async def clean_stream():
            await at.send_paced(clean.ws, clean_audio,
                                send=lambda i, p: clean.media_message(p))
            await clean.stop()

        await asyncio.gather(noisy_stream(), clean_stream())
        codes = await asyncio.gather(noisy.finish(), clean.finish())
        self.assertEqual(list(codes), [1000, 1000])
        for call in (noisy, clean):
            self.assertEqual(call.problems, [])
            self.assertEqual(call.check_marks(), [])
        self.check_tone(noisy, 700, len(noisy_audio))
        self.check_tone(clean, 1300, len(clean_audio))

    @vt.timed(20)
    async def test_media_before_start_closes_1008(self):
        call = await open_call(5)
        await call.ws.send(call.media_message(bytes(160)))
        self.assertEqual(await call.finish(), 1008)
        self.assertEqual(call.media, [])
        # Twilio understands no error event: nothing but the close.
        self.assertEqual(call.received, [])

    @vt.timed(20)
    async def test_start_with_another_format_closes_1008(self):
        for tag, kwargs in ((6, {"encoding": "audio/l16"}),
                            (7, {"rate": 16000}),
                            (8, {"channels": 2})):
            with self.subTest(**kwargs):
                call = await open_call(tag)
                await call.start(**kwargs)
                await call.ws.send(call.media_message(bytes(160)))
                self.assertEqual(await call.finish(), 1008)
                self.assertEqual(call.received, [])


if __name__ == "__main__":
    unittest.main()
