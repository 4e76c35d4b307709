"""Helpers of the TTS tests: voice.v1 sessions driven by text.input whose
replies are spoken, the audio they bring, its tones, and the mocks'
records.

run.py starts nginx and both mocks and tells the tests where they are
through VOICE_* environment variables (see run.py).  The LLM mock's "say"
script answers with the user's text itself, so `say_text("Hello there.")`
makes the module speak exactly "Hello there."; a reply that begins with
"mock:NAME" has the TTS mock play its script NAME.

Every phrase the TTS mock speaks is a sine tone whose frequency names it
(t/mock/README.md, "The tone"); tone_runs() finds the tones of a stretch
of audio by zero crossings, so a test can tell which phrases it heard and
in what order.
"""

import array
import asyncio
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import provider_harness as ph  # noqa: E402

NGINX_PORT = int(ph.env("VOICE_NGINX_PORT"))
NGINX_PID = int(ph.env("VOICE_NGINX_PID", "0"))
TTS_MOCK_PORT = int(ph.env("VOICE_TTS_MOCK_PORT"))
LLM_MOCK_PORT = int(ph.env("VOICE_LLM_MOCK_PORT"))
DEAD_PORT = int(ph.env("VOICE_DEAD_PORT", "0"))
TIMEOUT_MS = int(ph.env("VOICE_TTS_TIMEOUT_MS", "1000"))

# A guard against hanging, never a latency assertion.
WAIT = 20.0

# what a failed reply's error carries
TTS_FAIL = "TTS_FAIL"

_ids = iter(range(1, 10 ** 9))


def new_id(prefix="t"):
    """A word unique to this run, to find a session's records."""
    return "%s%dx%d" % (prefix, os.getpid(), next(_ids))


def start_msg(rate=16000, encoding="pcm_s16le"):
    """session.start asking for this output format."""
    return {"type": "session.start",
            "audio": {"input": {"encoding": "pcm_s16le",
                                "sample_rate": 16000, "channels": 1},
                      "output": {"encoding": encoding,
                                 "sample_rate": rate}}}


def say_text(text, slow=False, tts_script=None):
    """The user text that makes the LLM mock answer `text' (slowly: four
    words a second), spoken with the TTS mock's script tts_script.  The
    answer ends in "." whatever the text ended with."""
    if tts_script:
        text = "mock:%s %s" % (tts_script, text)
    return "mock:%s %s" % ("say_slow" if slow else "say", text)


TtsTestCase = ph.SessionTestCase
finished = ph.finished


class Reply:
    """What the client got for one turn: its events from mark on."""

    def __init__(self, session, mark, turn, end):
        self.session = session
        self.mark = mark
        self.turn = turn
        self.end = end              # the message that ended it

    def frames(self):
        """[(arrival wall time, bytes)] of the reply's audio: binary
        frames after mark, up to its end message."""
        return self.session.frames(self.mark, self.end)

    def pcm(self):
        return b"".join(f for _, f in self.frames())

    def samples(self):
        return pcm16(self.pcm())

    def event(self, type_):
        found = self.session.messages(type_, self.mark, turn=self.turn)
        return found[0] if found else None

    def states(self):
        return [m["state"] for m in self.session.messages("state", self.mark)]


class Session(ph.Session):
    """A session driven by text.input; binary frames are kept as bytes
    with their arrival time."""

    WAIT = WAIT

    rate = 16000                    # the output rate asked for

    def frames(self, since=0, until=None):
        """[(wall, bytes)] of binary frames from event index since, up to
        the event `until' (a message object) when given."""
        out = []
        for t, m in self.events[since:]:
            if until is not None and m is until:
                break
            if isinstance(m, (bytes, bytearray)):
                out.append((t, bytes(m)))
        return out

    def index_of(self, msg):
        for i, (_, m) in enumerate(self.events):
            if m is msg:
                return i
        return len(self.events)

    async def say(self, text):
        """Sends a text.input; returns the event index it was sent at."""
        mark = len(self.events)
        await self.send_json({"type": "text.input", "text": text})
        return mark

    async def turn_of(self, mark):
        def pred(s):
            for m in s.messages(since=mark):
                if "turn" in m and m["type"].startswith("response."):
                    return m["turn"]
            return None
        return await self.wait_for(pred, what="a response event")

    async def first_audio(self, mark, timeout=None):
        """Waits for the first binary frame after mark; returns
        (wall, bytes)."""
        def pred(s):
            f = s.frames(mark)
            return f[0] if f else None
        return await self.wait_for(pred, timeout, "audio")

    async def spoken(self, mark, timeout=None, ends=("response.audio.done",
                                                     "response.interrupted")):
        """Waits for the end of the speech of the reply begun after mark:
        response.audio.done (or interrupted), or an error.  Returns a
        Reply; the caller checks which end it was (reply.end)."""
        def pred(s):
            for m in s.messages(since=mark):
                if m["type"] in ends or m["type"] == "error":
                    return m
            return None
        end = await self.wait_for(pred, timeout, "the end of the speech")
        turn = end.get("turn")
        if turn is None:
            for m in self.messages(since=mark):
                if "turn" in m:
                    turn = m["turn"]
                    break
        return Reply(self, mark, turn, end)

    async def speak(self, text, timeout=None, **kw):
        """One whole spoken turn: say_text(text, **kw) as text.input,
        waits for response.audio.done and returns the Reply; fails on an
        error."""
        mark = await self.say(say_text(text, **kw))
        reply = await self.spoken(mark, timeout)
        if reply.end["type"] != "response.audio.done":
            raise AssertionError("turn %r not spoken: %r" % (text, reply.end))
        return reply

    async def listening(self, mark):
        """Waits for state listening after mark."""
        return await self.wait_type("state", mark, state="listening")


async def start(path, test=None, rate=16000, msg=None, query=None):
    """Connects to the location, starts a session with this output rate
    and waits for session.started."""
    session = await ph.start(ph.ws_url(NGINX_PORT, path, **(query or {})),
                             Session, test, msg or start_msg(rate))
    session.rate = rate
    return session


# ---- audio -----------------------------------------------------------------

def pcm16(data):
    """s16le bytes as a list of ints (an odd byte is an error)."""
    if len(data) % 2:
        raise AssertionError("odd PCM length %d" % len(data))
    a = array.array("h")
    a.frombytes(data)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def tone_freq(n, text):
    """The mock's tone for phrase n with this text (the mock's formula)."""
    import zlib
    return 300 + 50 * (2 * (n % 8) + (zlib.crc32(text.encode()) & 1))


def crossings(samples):
    """Positions (fractional, by linear interpolation) where the signal
    goes from negative to non-negative."""
    out = []
    prev = samples[0] if samples else 0
    for i in range(1, len(samples)):
        cur = samples[i]
        if prev < 0 <= cur:
            out.append(i - 1 + (-prev) / float(cur - prev))
        prev = cur
    return out


def zc_freq(samples, rate):
    """The frequency of a pure tone by counting its zero crossings."""
    c = crossings(samples)
    if len(c) < 2:
        return 0.0
    return rate * (len(c) - 1) / (c[-1] - c[0])


def tone_runs(samples, rate, tolerance=20.0, min_cycles=4, floor=200.0):
    """The tones of a stretch of audio, in order: [(freq, samples)].

    Each cycle (between two rising zero crossings) gives a frequency;
    consecutive cycles within `tolerance' Hz of their run's mean make a
    run.  Runs shorter than min_cycles (the joint between two phrases,
    where the phase jumps) are dropped, and so is anything slower than
    `floor' Hz (silence between phrases has no crossings)."""
    c = crossings(samples)
    runs = []
    cur = None
    for a, b in zip(c, c[1:]):
        f = rate / (b - a)
        if f < floor:
            cur = None
            continue
        if cur is not None and abs(f - cur[0] / cur[1]) <= tolerance:
            cur[0] += f
            cur[1] += 1
            cur[2] = b
            continue
        cur = [f, 1, b, a]
        runs.append(cur)
    out = []
    for total, n, end, begin in runs:
        if n < min_cycles:
            continue
        freq = total / n
        if out and abs(out[-1][0] - freq) <= tolerance:
            # one tone cut by a dropped glitch: join the pieces
            f0, s0 = out[-1]
            out[-1] = ((f0 * s0 + freq * (end - begin)) / (s0 + end - begin),
                       s0 + end - begin)
        else:
            out.append((freq, end - begin))
    return out


def tones(samples, rate, tolerance=20.0):
    """Just the frequencies of tone_runs(), rounded."""
    return [round(f) for f, _ in tone_runs(samples, rate, tolerance)]


def same_tones(heard, expected, tolerance=15.0):
    """heard (measured) matches expected (the mock's freq) one by one."""
    return (len(heard) == len(expected)
            and all(abs(h - e) <= tolerance for h, e in zip(heard, expected)))


def duration(reply_or_pcm, rate):
    data = reply_or_pcm.pcm() if isinstance(reply_or_pcm, Reply) \
        else reply_or_pcm
    return len(data) / 2.0 / rate


def rms(samples):
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


# ---- the mocks' records ----------------------------------------------------

def tts_state(since=None, timeout=5.0):
    return ph.mock_state(TTS_MOCK_PORT, since, timeout)


def llm_state(since=None, timeout=5.0):
    return ph.mock_state(LLM_MOCK_PORT, since, timeout)


def _mentions(rec, tag):
    return tag in json.dumps(rec.get("messages", [])) \
        or tag in (rec.get("raw_body") or "") \
        or tag in json.dumps(rec.get("phrases", []))


async def tts_records(tag, cond=None, timeout=WAIT, what=None,
                      kind="connections"):
    """Long-polls the TTS mock until its records (kind: "connections" for
    the WebSocket providers, "requests" for HTTP) that mention tag in what
    the module sent satisfy cond (default: at least one); returns them in
    arrival order."""
    return await ph.records(
        TTS_MOCK_PORT, lambda st: [r for r in st[kind] if _mentions(r, tag)],
        tag, cond or (lambda recs: len(recs) >= 1), timeout, what)


async def tts_record_where(pred, timeout=WAIT, what=None, kind="connections"):
    """Long-polls until a TTS record satisfies pred(record); returns it."""
    recs = await ph.records(
        TTS_MOCK_PORT, lambda st: [r for r in st[kind] if pred(r)],
        what or "a record", lambda recs: len(recs) >= 1, timeout, what)
    return recs[0]


async def wait_record(port, pick, cond, timeout=WAIT, what="a condition"):
    """Long-polls a mock until cond(pick(state)) holds; returns
    pick(state).  pick may return anything (a record, a list)."""
    deadline = time.monotonic() + timeout
    st = await ph.mock_state(port)
    while True:
        value = pick(st)
        if cond(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("mock state: %s not reached; last seen %s"
                                 % (what, json.dumps(value)[:3000]))
        st = await ph.mock_state(port, st["version"], min(left, 5.0))


async def tts_wait(pick, cond, timeout=WAIT, what="a condition"):
    """wait_record() on the TTS mock."""
    return await wait_record(TTS_MOCK_PORT, pick, cond, timeout, what)


def llm_records_sync(tag):
    """The LLM mock's requests whose body mentions tag (no waiting)."""
    st = ph._get(LLM_MOCK_PORT, "/_mock/state", 5)
    return [r for r in st["requests"] if tag in (r.get("raw_body") or "")]


def worker_rss_kb():
    return ph.worker_rss_kb(NGINX_PID)


async def gather(*aws):
    return await asyncio.gather(*aws)
