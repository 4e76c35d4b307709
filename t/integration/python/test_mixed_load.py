"""Fifty sessions at once in mixed formats and dialects, each with a
tone of its own: every one gets only its own tone back."""

import asyncio
import json
import unittest

import audiotest as at
import phonetest as pt
import voicetest as vt

SESSIONS = 50
SECONDS = 1.0
SLACK = 2
FREQ_TOLERANCE = 3.0
# A tone from another session would show as noise at this session's
# frequency: every kind has a bound well under what it measures alone
# (G.711 34-37 dB, PCM about 90 dB).
MIN_SNR = {"mulaw": 28.0, "pcm": 60.0}

# (kind, input, output) by session number modulo their count.
KINDS = [
    ("v1", "pcm16k", "pcm16k"),
    ("v1", "pcm16k", "mulaw"),
    ("v1", "mulaw", "pcm16k"),
    ("v1", "pcm48k", "pcm16k"),
    ("v1", "pcm8k", "pcm24k"),
    ("v1", "mulaw", "mulaw"),
    ("twilio", "mulaw", "mulaw"),
    ("vonage", "pcm16k", "pcm16k"),
    ("vonage", "pcm8k", "pcm8k"),
]


def frequency(i):
    # 300 Hz to 2995 Hz, 55 Hz apart: inside every format's band.
    return 300 + 55 * i


async def voice_v1(i, inp, out, freq):
    frames = at.frames_of(inp, at.tone(freq, at.rate_of(inp), SECONDS))
    ws, _ = await vt.start_session("/voice", at.session_start(inp, out))
    await at.send_paced(ws, frames)
    await ws.send(json.dumps({"type": "session.end"}))
    messages, code = await vt.collect_until_close(ws, vt.WAIT + SECONDS)
    problems = []
    if vt.texts(messages) != [{"type": "state", "state": "closed"}]:
        problems.append("text messages %r" % vt.texts(messages))
    if code != 1000:
        problems.append("close code %r" % code)
    return len(frames), vt.binaries(messages), problems


async def twilio(i, freq):
    call = await pt.open_call(100 + i)
    await call.start()
    frames = at.frames_of("mulaw", at.tone(freq, 8000, SECONDS))
    await at.send_paced(call.ws, frames,
                        send=lambda k, p: call.media_message(p))
    await call.stop()
    code = await call.finish()
    problems = call.problems + call.check_marks()
    if code != 1000:
        problems.append("close code %r" % code)
    return len(frames), call.media, problems


async def vonage(i, rate, freq):
    frames, got, texts, code = await pt.vonage_call(
        rate, freq, short=1, seconds=SECONDS, tag="load-%d" % i)
    problems = []
    if texts:
        problems.append("text messages %r" % texts)
    if code != 1000:
        problems.append("close code %r" % code)
    # The silence after the tone is not part of the comparison.
    return round(SECONDS * at.FRAMES_PER_SECOND), got, problems


async def session(i):
    kind, inp, out = KINDS[i % len(KINDS)]
    freq = frequency(i)
    if kind == "v1":
        return await voice_v1(i, inp, out, freq)
    if kind == "twilio":
        return await twilio(i, freq)
    return await vonage(i, at.rate_of(inp), freq)


class MixedLoadTest(vt.VoiceTestCase):

    @vt.timed(60)
    async def test_fifty_mixed_sessions_each_hear_their_own_tone(self):
        results = await asyncio.gather(*[session(i)
                                         for i in range(SESSIONS)],
                                       return_exceptions=True)
        problems = []
        worst = {}
        for i, result in enumerate(results):
            kind, inp, out = KINDS[i % len(KINDS)]
            label = "session %d (%s %s -> %s, %d Hz)" % (
                i, kind, inp, out, frequency(i))
            if isinstance(result, BaseException):
                problems.append("%s: %r" % (label, result))
                continue
            sent, echoed, trouble = result
            problems += ["%s: %s" % (label, p) for p in trouble]
            if kind != "vonage" and abs(len(echoed) - sent) > SLACK:
                problems.append("%s: %d frames back for %d"
                                % (label, len(echoed), sent))
            if kind == "vonage" and len(echoed) < sent:
                problems.append("%s: %d frames back for %d"
                                % (label, len(echoed), sent))
            size = at.frame_bytes(out)
            if inp == out and kind == "v1":
                size = at.frame_bytes(inp)
            sizes = set(len(f) for f in echoed)
            if sizes != {size}:
                problems.append("%s: frame sizes %s" % (label,
                                                        sorted(sizes)))
                continue
            rate = at.rate_of(out)
            samples = at.decode(out, b"".join(echoed))
            try:
                found, snr = at.tone_report(samples, rate, frequency(i),
                                            length=0.3)
            except AssertionError as e:
                problems.append("%s: %s" % (label, e))
                continue
            bound = MIN_SNR["mulaw" if "mulaw" in (inp, out) else "pcm"]
            key = "%s %s->%s" % (kind, inp, out)
            worst[key] = min(worst.get(key, 1e9), snr)
            if abs(found - frequency(i)) > FREQ_TOLERANCE:
                problems.append("%s: heard %.1f Hz" % (label, found))
            if snr < bound:
                problems.append("%s: SNR %.1f dB" % (label, snr))
        print("\n    lowest SNR by kind: " + ", ".join(
            "%s %.1f dB" % kv for kv in sorted(worst.items())), end=" ")
        self.assertEqual(problems, [])


if __name__ == "__main__":
    unittest.main()
