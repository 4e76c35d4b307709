"""Converted echo between formats, paced playout and response.cancel.

What comes back is decoded here (mu-law by audiotest, not by the
server's code) and judged by its spectrum: the dominant frequency and a
lower bound of the signal-to-noise ratio.  Opus pairs are in
node/formats.test.mjs, which has an Opus codec of its own.
"""

import asyncio
import json
import time
import unittest

import audiotest as at
import voicetest as vt

SECONDS = 1.2
FRAMES = round(SECONDS * at.FRAMES_PER_SECOND)
# Frames that the resampler's delay and the padding at session.end may
# add or take away.
SLACK = 2
FREQ_TOLERANCE = 3.0  # Hz
# Lower bounds, well under what was measured: PCM through the resamplers
# 90-93 dB; G.711 34-37 dB, which is its own quantisation.
MIN_SNR = {"pcm": 60.0, "mulaw": 28.0}

PLAYOUT_LEAD = int(vt.os.environ.get("VOICE_PLAYOUT_LEAD_MS", "80")) / 1000.0


def snr_bound(inp, out):
    return min(MIN_SNR["mulaw" if f == "mulaw" else "pcm"]
               for f in (inp, out))


async def stream_and_end(path, inp, out, frames, paced=True):
    """Start a session, send the frames (in real time or at once), end
    it and read everything up to the close.  Returns (session.started,
    [(arrival, message)], close code)."""
    ws, started = await vt.start_session(path, at.session_start(inp, out))
    got = []

    async def reader():
        try:
            while True:
                msg = await ws.recv()
                got.append((time.monotonic(), msg))
        except vt.ConnectionClosed:
            pass

    reading = asyncio.ensure_future(reader())
    try:
        if paced:
            await at.send_paced(ws, frames)
        else:
            for frame in frames:
                await ws.send(frame)
        await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(reading, vt.WAIT + SECONDS)
        await asyncio.wait_for(ws.wait_closed(), vt.WAIT)
    finally:
        reading.cancel()
    code = ws.close_rcvd.code if ws.close_rcvd is not None else None
    return started, got, code


class FormatsTest(vt.VoiceTestCase):

    PAIRS = [
        ("pcm16k", "mulaw", 440),
        ("mulaw", "pcm16k", 1000),
        ("pcm48k", "pcm16k", 1000),
        ("pcm8k", "pcm24k", 440),
        ("pcm24k", "pcm48k", 1000),
        ("mulaw", "mulaw", 1000),
    ]

    @vt.timed(40)
    async def test_converted_echo_in_every_format(self):
        async def one(inp, out, freq):
            frames = at.frames_of(inp, at.tone(freq, at.rate_of(inp),
                                               SECONDS))
            return frames, await stream_and_end("/voice", inp, out, frames)

        results = await asyncio.gather(*[one(*p) for p in self.PAIRS],
                                       return_exceptions=True)
        for (inp, out, freq), result in zip(self.PAIRS, results):
            with self.subTest(pair="%s -> %s" % (inp, out)):
                if isinstance(result, BaseException):
                    raise result
                frames, (started, got, code) = result
                self.check_echo(inp, out, freq, frames, started, got, code)

    def check_echo(self, inp, out, freq, frames, started, got, code):
        self.assertEqual(started["audio"]["input"],
                         dict(at.FORMATS[inp], channels=1))
        self.assertEqual(started["audio"]["output"]["encoding"],
                         at.FORMATS[out]["encoding"])
        self.assertEqual(started["audio"]["output"]["sample_rate"],
                         at.rate_of(out))
        messages = [m for _, m in got]
        self.assertEqual(vt.texts(messages),
                         [{"type": "state", "state": "closed"}])
        self.assertEqual(code, 1000)
        echoed = vt.binaries(messages)
        if inp == out:
            # Same format both ways: the frames come back as sent.
            self.assertEqual(echoed, frames)
        else:
            self.assertLessEqual(abs(len(echoed) - FRAMES), SLACK,
                                 "%d frames for %d sent"
                                 % (len(echoed), FRAMES))
            sizes = sorted(set(len(f) for f in echoed))
            self.assertEqual(sizes, [at.frame_bytes(out)],
                             "sizes of the echoed frames")
        rate = at.rate_of(out)
        got_freq, snr = at.tone_report(at.decode(out, b"".join(echoed)),
                                       rate, freq)
        print("\n    %s -> %s: %d frames, %.1f Hz, SNR %.1f dB"
              % (inp, out, len(echoed), got_freq, snr), end=" ")
        self.assertLessEqual(abs(got_freq - freq), FREQ_TOLERANCE,
                             "dominant frequency %.1f Hz, sent %d Hz"
                             % (got_freq, freq))
        self.assertGreaterEqual(snr, snr_bound(inp, out),
                                "SNR %.1f dB" % snr)

    @vt.timed(40)
    async def test_paced_playout_keeps_count_and_order(self):
        """Three seconds sent at once come out as 150 frames of 20 ms, in
        order, never more than voice_playout_lead ahead of real time."""
        steps = [400 + 100 * k for k in range(15)]
        step = 0.2
        audio = at.staircase(steps, 16000, step)
        frames = at.frames_of("pcm16k", audio)
        expected = len(frames)
        self.assertEqual(expected, 150)

        started, got, code = await stream_and_end("/voice-burst", "pcm16k",
                                                  "pcm24k", frames,
                                                  paced=False)
        messages = [m for _, m in got]
        self.assertEqual(vt.texts(messages),
                         [{"type": "state", "state": "closed"}])
        self.assertEqual(code, 1000)
        arrivals = [t for t, m in got if isinstance(m, bytes)]
        echoed = vt.binaries(messages)
        self.assertLessEqual(abs(len(echoed) - expected), SLACK,
                             "%d frames for %d sent" % (len(echoed),
                                                        expected))
        self.assertEqual(sorted(set(len(f) for f in echoed)), [960])

        # Paced: frame k is due 20 ms * k after the first, and may be
        # sent up to the playout lead early (plus the millisecond of
        # nginx's clock).
        ahead = max(arrivals[0] + 0.020 * k - t
                    for k, t in enumerate(arrivals))
        print("\n    burst of %d frames: %d back, at most %.1f ms ahead "
              "of real time" % (expected, len(echoed), ahead * 1000),
              end=" ")
        self.assertLessEqual(ahead, PLAYOUT_LEAD + 0.003,
                             "frames came faster than real time")

        # In order: each step of the staircase is where it belongs.
        samples = at.decode("pcm24k", b"".join(echoed))
        rate = 24000
        start = at.onset(samples, rate)
        self.assertIsNotNone(start)
        heard = []
        for k in range(len(steps)):
            begin = start + int(rate * (k * step + 0.05))
            part = samples[begin:begin + int(rate * 0.1)]
            heard.append(round(at.dominant_frequency(part, rate)))
        for k, (want, have) in enumerate(zip(steps, heard)):
            self.assertLessEqual(abs(want - have), 10,
                                 "step %d: expected %d Hz, heard %r"
                                 % (k, want, heard))

    @vt.timed(40)
    async def test_response_cancel_drops_waiting_audio(self):
        """After response.cancel nothing that waited comes back; audio
        sent after it does."""
        first = at.frames_of("pcm16k", at.tone(500, 16000, 3.0))
        second = at.frames_of("pcm16k", at.tone(1500, 16000, 0.6))
        ws, _ = await vt.start_session(
            "/voice-burst", at.session_start("pcm16k", "mulaw"))
        for frame in first:
            await ws.send(frame)
        # The echo has begun: 3 s wait in the line and the queue.
        self.assertIsInstance(await vt.recv(ws), bytes)
        await ws.send(json.dumps({"type": "response.cancel"}))
        for frame in second:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "session.end"}))
        messages, code = await vt.collect_until_close(ws)
        self.assertEqual(code, 1000)
        self.assertEqual(vt.texts(messages),
                         [{"type": "state", "state": "closed"}])
        echoed = vt.binaries(messages)
        # What was on its way when the cancel came (the playout lead and
        # the socket) may still arrive; the rest of the 150 frames not.
        self.assertLess(len(echoed), len(first) // 3 + len(second) + SLACK,
                        "%d frames came back" % len(echoed))
        self.assertGreaterEqual(len(echoed), len(second) - SLACK)
        tail = at.mulaw_decode(b"".join(echoed[-len(second) + 5:-5]))
        self.assertLessEqual(abs(at.dominant_frequency(tail, 8000) - 1500),
                             FREQ_TOLERANCE * 2)

    @vt.timed(20)
    async def test_unsupported_formats_close_1008(self):
        for direction, fmt in (
                ("input", {"encoding": "mulaw", "sample_rate": 16000}),
                ("input", {"encoding": "opus", "sample_rate": 24000}),
                ("input", {"encoding": "pcm_s16le", "sample_rate": 44100}),
                ("input", {"encoding": "pcm_s16le", "channels": 2}),
                ("output", {"encoding": "pcm_f32le"}),
                ("output", {"encoding": "pcm_s16le", "sample_rate": 11025})):
            with self.subTest(direction=direction, **fmt):
                ws = await vt.connect("/voice")
                await ws.send(json.dumps({"type": "session.start",
                                          "audio": {direction: fmt}}))
                messages, code = await vt.collect_until_close(ws)
                texts = vt.texts(messages)
                self.assertEqual(len(messages), 1, repr(messages))
                self.assertEqual(texts[0].get("type"), "error")
                self.assertEqual(texts[0].get("code"), "UNSUPPORTED_FORMAT")
                self.assertIs(texts[0].get("recoverable"), False)
                self.assertEqual(code, 1008)


if __name__ == "__main__":
    unittest.main()
