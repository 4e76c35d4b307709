"""The embedded TTS: espeak-ng in nginx's thread pool, offline, no key.

There is no provider to record what the module asked for, so the tests
judge the audio itself against espeak-ng's command line, which runs the
same library with the same voice: a reply lasts as long as the command
line's rendering of its text (the library is deterministic), it is speech
(energy, pauses between sentences) in the client's format, it is paced at
real time, and the module's own embedded STT hears its words.  Cancel,
sessions that go away mid-reply and twenty sessions at once share the one
synthesizer of the worker.
"""

import array
import asyncio
import math
import os
import random
import re
import struct
import subprocess
import sys
import time
import unittest
import wave

from ttstest import (TtsTestCase, start, start_msg, say_text, pcm16,
                     LLM_MOCK_PORT)
import provider_harness as ph


PREFIX = ph.env("VOICE_PREFIX")
MODULE = os.path.join(PREFIX, "modules", "ngx_http_voice_module.so")

WPM = 175                           # espeak-ng's rate at voice_tts_speed 1

# A window of audio is speech when its RMS is above this (espeak-ng speaks
# at several thousand; its pauses are digital silence).
VOICED_RMS = 300.0
WINDOW = 0.02

# espeak-ng's sentence pause is about 300 ms at 175 words a minute; the
# gaps inside a sentence are shorter than this.
SENTENCE_GAP = 0.2

SENTENCES = [
    "The weather is cold and windy today.",
    "Please take an umbrella when you leave.",
    "The bus to the station comes at nine.",
]

# a reply long enough to fill the client's queue (the engine is paused
# and resumed) and to be cancelled in the middle
LONG = (
    "Thanks for calling. I looked at your account and I can see that the "
    "last payment arrived on the fourth of March, so the late fee should "
    "not have been charged. I have removed it, and you will see the "
    "corrected balance within one or two business days. Is there anything "
    "else I can help you with today?")

_refs = {}


def reference(text, voice="en-us", wpm=WPM):
    """Seconds of audio espeak-ng's command line makes of text, spoken
    as one piece.  The module keeps the pause after a phrase that ends a
    clause and drops it after one cut in mid-clause (-z)."""
    key = (text, voice, wpm)
    if key in _refs:
        return _refs[key]
    d = os.path.join(PREFIX, "espeak-ref")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "%d.wav" % len(_refs))
    pause = [] if text.rstrip()[-1:] in (".", "!", "?", ";", ":", ",") \
        else ["-z"]
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm)] + pause
                   + ["-w", path, text], check=True)
    with wave.open(path) as w:
        seconds = w.getnframes() / float(w.getframerate())
    _refs[key] = seconds
    return seconds


def ulaw_decode(data):
    """G.711 mu-law bytes as PCM16 samples."""
    out = array.array("h")
    for b in data:
        u = ~b & 0xff
        mag = ((((u & 0x0f) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84
        out.append(-mag if u & 0x80 else mag)
    return out


def windows(samples, rate):
    """The RMS of each WINDOW of the audio."""
    n = int(rate * WINDOW)
    out = []
    for i in range(0, len(samples) - n + 1, n):
        w = samples[i:i + n]
        out.append(math.sqrt(sum(s * s for s in w) / float(n)))
    return out


def voiced_fraction(samples, rate):
    w = windows(samples, rate)
    return sum(1 for r in w if r > VOICED_RMS) / float(max(len(w), 1))


def bursts(samples, rate, gap=SENTENCE_GAP):
    """Stretches of speech separated by at least gap seconds of quiet."""
    out = []
    last = None
    for i, r in enumerate(windows(samples, rate)):
        if r <= VOICED_RMS:
            continue
        if last is None or (i - last - 1) * WINDOW >= gap:
            out.append([i, i])
        out[-1][1] = i
        last = i
    return [(a * WINDOW, (b + 1) * WINDOW) for a, b in out]


def noise(seconds, rate=16000, level=10, seed=1):
    """A quiet room: the STT's VAD learns its floor from it."""
    rnd = random.Random(seed)
    n = int(rate * seconds)
    return struct.pack("<%dh" % n, *[rnd.randint(-level, level)
                                     for _ in range(n)])


def words(text):
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def close_to(seconds, ref, tolerance=0.02, slack=0.08):
    """seconds within tolerance (a fraction) and slack of ref."""
    return abs(seconds - ref) <= ref * tolerance + slack


class Spoken(TtsTestCase):

    async def check_reply(self, path, rate, encoding, text, voice="en-us",
                          wpm=WPM, tolerance=0.02):
        s = await start(path, self, msg=start_msg(rate, encoding))
        s.rate = rate
        reply = await s.speak(text)
        data = reply.pcm()
        samples = ulaw_decode(data) if encoding == "mulaw" else pcm16(data)
        seconds = len(samples) / float(rate)
        # the reply as the LLM wrote it (its mock ends it with a stop)
        ref = reference(reply.event("response.text.done")["text"], voice,
                        wpm)
        print("\n    %.3f s of audio, espeak-ng makes %.3f s"
              % (seconds, ref), end=" ")
        self.assertTrue(close_to(seconds, ref, tolerance),
                        "%.3f s of audio, espeak-ng makes %.3f s"
                        % (seconds, ref))
        self.assertGreater(voiced_fraction(samples, rate), 0.4)
        frames = reply.frames()
        return s, reply, samples, frames

    async def test_a_reply_is_speech_at_real_time(self):
        text = " ".join(SENTENCES)
        s, reply, samples, frames = await self.check_reply(
            "/embedded", 16000, "pcm_s16le", text)

        # a pause after each sentence: three stretches of speech
        b = bursts(samples, 16000)
        self.assertEqual(len(b), len(SENTENCES), b)

        # paced: the frames arrive over about the audio's length (the
        # client's queue runs ahead by at most a second or so)
        span = frames[-1][0] - frames[0][0]
        self.assertGreaterEqual(span, len(samples) / 16000.0 - 1.5)

        self.assertIsNotNone(reply.event("response.text.done"))
        states = reply.states()
        self.assertIn("speaking", states)
        self.assertEqual(states[-1], "listening", states)
        self.assertLess(states.index("speaking"),
                        len(states) - 1 - states[::-1].index("listening"))

    async def test_rates_and_encodings(self):
        text = SENTENCES[0]
        for rate, encoding in ((8000, "mulaw"), (24000, "pcm_s16le"),
                               (48000, "pcm_s16le")):
            with self.subTest(rate=rate, encoding=encoding):
                await self.check_reply("/embedded", rate, encoding, text)

    async def test_a_long_reply_is_whole(self):
        """Long enough that the client's queue pauses the engine: nothing
        is lost or repeated across the pauses."""
        await self.check_reply("/embedded", 16000, "pcm_s16le", LONG)

    async def test_many_short_phrases_in_order(self):
        # phrases of 16 characters at most: a dozen jobs in a row
        text = " ".join(SENTENCES)
        # each phrase is a synthesis of its own, with its own onset and
        # ending: a little longer than the text spoken as one
        s, reply, samples, frames = await self.check_reply(
            "/embedded-short", 16000, "pcm_s16le", text, tolerance=0.15)
        self.assertGreaterEqual(len(bursts(samples, 16000)), len(SENTENCES))

    async def test_speed(self):
        text = SENTENCES[1]
        await self.check_reply("/embedded-fast", 16000, "pcm_s16le", text,
                               wpm=2 * WPM)
        self.assertLess(reference(text, wpm=2 * WPM),
                        0.7 * reference(text))

    async def test_first_audio_before_the_text_ends(self):
        """The first phrase is spoken while the LLM still writes."""
        s = await start("/embedded", self)
        mark = await s.say(say_text(" ".join(SENTENCES), slow=True))
        first = await s.first_audio(mark)
        done = await s.wait_type("response.text.done", mark)
        t_done = [t for t, m in s.events if m is done][0]
        self.assertLess(first[0], t_done)
        reply = await s.spoken(mark)
        self.assertEqual(reply.end["type"], "response.audio.done")


class Words(TtsTestCase):
    """The module's embedded STT (pocketsphinx) hears what the embedded
    TTS said.  It hears espeak-ng's Klatt voice fairly well and its
    default voice badly; even so it gets a word wrong now and then,
    depending on what its decoder heard before, so the test asks for most
    of the key words, not all: audio at a wrong rate, in a wrong byte
    order or with phrases lost or shuffled gives next to none."""

    # sentences and key words as the STT's own tests have them
    SAYINGS = [
        ("what is the weather like today", ["weather"]),
        ("set an alarm for seven o'clock", ["alarm", "seven"]),
        ("open the front door please", ["front", "door"]),
        ("i would like to book a table for two", ["book", "table"]),
    ]

    HEARD_BOUND = 0.6

    async def test_the_stt_hears_the_words(self):
        async def say(text):
            s = await start("/embedded-klatt", self)
            return (await s.speak(text)).pcm()

        speech = await asyncio.gather(*[say(t) for t, _ in self.SAYINGS])

        # one caller says them in turn, in real time, with a quiet room
        # before, between and after, as the STT's own tests do
        s = await start("/embedded-stt", self)
        frame = 640                         # 20 ms at 16 kHz
        heard = []
        for n, pcm in enumerate(speech, 1):
            data = (noise(0.5) if n == 1 else b"") + pcm + noise(2.0, seed=n)
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(data), frame)):
                delay = t0 + k * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await s.ws.send(data[i:i + frame])
            final = await s.wait_type("transcript.final", 0, turn=n)
            heard.append(words(final["text"]))

        keys = [(k, h) for (_, ks), h in zip(self.SAYINGS, heard) for k in ks]
        got = sum(1 for k, h in keys if k in h)
        sys.stdout.write("\n    the STT heard %d of %d key words: %s "
                         % (got, len(keys),
                            "; ".join(" ".join(h) for h in heard)))
        self.assertGreaterEqual(got, self.HEARD_BOUND * len(keys),
                                list(zip(self.SAYINGS, heard)))


class Cancel(TtsTestCase):

    async def test_cancel_mid_reply(self):
        s = await start("/embedded", self)
        mark = await s.say(say_text(LONG))

        # a second of the reply heard, then the user cancels
        await s.wait_for(lambda s: sum(len(f) for _, f in s.frames(mark))
                         >= 32000, what="a second of audio")
        await s.send_json({"type": "response.cancel"})
        intr = await s.wait_type("response.interrupted", mark)
        self.assertEqual(intr["reason"], "cancel")

        # what was heard is the reply's first words, by the word timing
        heard = intr["spoken_text"]
        self.assertTrue(LONG.startswith(heard), heard)
        self.assertGreater(len(words(heard)), 0)
        self.assertLess(len(heard), len(LONG) // 2)

        # nothing of the cancelled reply arrives after the interruption: a
        # ping's pong follows whatever the server queued before it
        after = s.index_of(intr)
        await (await s.ws.ping())
        late = [m for _, m in s.events[after:]
                if isinstance(m, (bytes, bytearray))]
        self.assertEqual(late, [])

        # the next reply speaks, and only its own audio
        mark2 = await s.say(say_text(SENTENCES[2]))
        reply = await s.spoken(mark2)
        self.assertEqual(reply.end["type"], "response.audio.done")
        seconds = len(reply.pcm()) / 32000.0
        ref = reference(reply.event("response.text.done")["text"])
        self.assertTrue(close_to(seconds, ref), (seconds, ref))

    async def test_sessions_leave_mid_reply(self):
        """Sessions that go away while their phrases are queued or in the
        thread: their jobs are dropped, the synthesizer serves on."""
        gone = []
        for i in range(8):
            s = await start("/embedded-short", self)
            await s.say(say_text(LONG))
            gone.append(s)
        # some leave at once, some once their first audio came
        for s in gone[::2]:
            s.abort()
        for s in gone[1::2]:
            await s.first_audio(0)
            s.abort()

        s = await start("/embedded", self)
        reply = await s.speak(SENTENCES[0])
        ref = reference(reply.event("response.text.done")["text"])
        self.assertTrue(close_to(len(reply.pcm()) / 32000.0, ref))


class Concurrent(TtsTestCase):

    N = 20

    async def test_twenty_sessions(self):
        """Each session hears its own text: replies of different lengths
        last as long as their own text takes, not another's."""
        # one phrase each (a sentence under voice_tts_max_phrase), of one
        # to ten words: neighbours differ by a word, a third of a second
        lists = ["one two three four five six seven eight nine ten",
                 "red green blue yellow black white orange purple brown pink"]
        texts = [" ".join(lists[i // 10].split()[:1 + i % 10]) + "."
                 for i in range(self.N)]
        sessions = await asyncio.gather(*[start("/embedded", self)
                                          for _ in range(self.N)])

        async def one(s, text):
            reply = await s.speak(text, timeout=60)
            return (reply.event("response.text.done")["text"],
                    len(reply.pcm()) / 32000.0)

        got = await asyncio.gather(*[one(s, t)
                                     for s, t in zip(sessions, texts)])
        for text, (said, seconds) in zip(texts, got):
            # its own text came back as its reply, and its own audio
            self.assertEqual(said, text)
            ref = reference(said)
            self.assertTrue(close_to(seconds, ref),
                            "%r: %.3f s, espeak-ng makes %.3f s"
                            % (said, seconds, ref))


class Config(unittest.TestCase):
    """nginx -t knows a voice espeak-ng does not have."""

    def config_test(self, voice, wrap=()):
        d = os.path.join(PREFIX, "conftest")
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
load_module %(module)s;
error_log %(d)s/logs/error.log;
pid %(d)s/logs/nginx.pid;
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
        location /v {
            voice;
            voice_pipeline agent;
            voice_stt off;
            voice_llm openai;
            voice_llm_url http://127.0.0.1:%(llm)d/v1/chat/completions;
            voice_llm_key file:%(prefix)s/tts.key;
            voice_tts embedded;
            voice_tts_voice "%(voice)s";
        }
    }
}
""" % {"module": MODULE, "d": d, "port": ph.free_port(), "llm": LLM_MOCK_PORT,
       "prefix": PREFIX, "voice": voice})
        return subprocess.run(list(wrap) + [
            "/usr/sbin/nginx", "-t", "-p", d + "/", "-c", conf, "-e",
            os.path.join(d, "logs", "error.log")],
            capture_output=True, text=True)

    def test_a_voice_espeak_has(self):
        rc = self.config_test("en-us+klatt")
        self.assertEqual(rc.returncode, 0, rc.stderr)

    def test_a_voice_espeak_has_not(self):
        rc = self.config_test("xx-nosuchvoice")
        self.assertNotEqual(rc.returncode, 0)
        self.assertIn('"voice_tts_voice" "xx-nosuchvoice" is not an '
                      'espeak-ng voice', rc.stderr)

    def test_no_espeak_data(self):
        """espeak-ng's data hidden (an empty directory mounted over it in
        a mount namespace of nginx -t alone): nginx -t says what is
        missing."""
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True,
                             text=True).stdout
        m = re.search(r"Data at: (\S+)", out)
        self.assertIsNotNone(m, out)
        hide = ["unshare", "-m", "sh", "-c",
                'mount -t tmpfs none "$0" && exec "$@"', m.group(1)]
        if subprocess.run(hide + ["true"]).returncode != 0:
            self.skipTest("no mount namespace here")
        rc = self.config_test("en-us", wrap=hide)
        self.assertNotEqual(rc.returncode, 0)
        self.assertIn('"voice_tts embedded" needs espeak-ng and its data',
                      rc.stderr)

    def test_a_name_too_long(self):
        rc = self.config_test("x" * 80)
        self.assertNotEqual(rc.returncode, 0)
        self.assertIn("is not an espeak-ng voice name", rc.stderr)


if __name__ == "__main__":
    unittest.main()
