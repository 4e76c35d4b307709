#!/usr/bin/python3
"""
Builds the labelled voice activity set used by t/unit/test_vad.c and
tools/vad-bench.c.

    /usr/bin/python3 t/vad/gen.py [OUTDIR]        (default: build/vad)

Speech comes from espeak-ng, noise from sox's synth, both with fixed
settings and sox in repeatable mode, so every run writes the same bytes.
Every file is raw PCM16 little-endian mono 16 kHz (NAME.raw) with a label
file next to it (NAME.lab); OUTDIR/index.txt lists the files.  The format
is described in t/vad/README.md.

The truth comes from the clean speech alone: a 10 ms frame is speech when
its energy is within LABEL_RANGE_DB of the loudest frame of its sentence
and above LABEL_FLOOR_DBFS; gaps shorter than LABEL_BRIDGE_MS between
such frames are bridged, as a person marking words would do.  Noise is
mixed afterwards, so the labels of a noisy file are those of its clean
original.
"""

import array
import math
import os
import subprocess
import sys
import tempfile

RATE = 16000
FRAME = 160                     # 10 ms: the label resolution
LABEL_RANGE_DB = 40.0
LABEL_FLOOR_DBFS = -60.0
LABEL_BRIDGE_MS = 100
SPEECH_DBFS = -26.0             # active speech level of every track
FORMAT_VERSION = 1

SENTENCES = {
    "fox": "The quick brown fox jumps over the lazy dog.",
    "lights": "Please turn on the lights in the kitchen.",
    "weather": "What is the weather going to be like tomorrow morning?",
    "table": "I would like to book a table for two at seven.",
    "station": "Can you tell me how far it is to the station?",
    "thanks": "Thanks very much for your help today.",
    "yes": "Yes.",
    "no": "No.",
    "stop": "Stop.",
}

# (voice, words per minute, pitch)
VOICES = {
    "a": ("en-us", 160, 50),
    "b": ("en-gb+f3", 140, 60),
    "c": ("en-us+m3", 200, 40),
}

# A track: voice, leading silence, then (sentence, silence after it) pairs.
# The gaps sit clearly below or above the silence settings the tests use
# (300, 700, 2000 ms) so that the expected segmentation is not ambiguous.
TRACKS = {
    "t1": ("a", 1.0, [("fox", 1.2), ("lights", 2.6), ("yes", 1.0),
                      ("weather", 2.8)]),
    "t2": ("b", 1.5, [("table", 1.5), ("no", 0.9), ("station", 2.8),
                      ("thanks", 2.8)]),
    "t3": ("c", 0.2, [("thanks", 1.0), ("fox", 2.5), ("stop", 1.8),
                      ("lights", 2.8)]),
    # pauses shorter than the default silence: one utterance at 700 ms
    "p1": ("a", 1.0, [("fox", 0.4), ("lights", 0.5), ("table", 2.8)]),
    "p2": ("b", 1.0, [("weather", 0.45), ("stop", 2.8)]),
}

NOISES = ("white", "pink", "brown")
SNRS = (20, 10, 5)
NOISE_SECONDS = 120


def run(args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def read_raw(path):
    a = array.array("h")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a


def write_raw(path, samples):
    a = array.array("h", samples)
    if sys.byteorder != "little":
        a.byteswap()
    with open(path, "wb") as f:
        f.write(a.tobytes())


def to_pcm(values):
    out = array.array("h", bytes(2 * len(values)))
    for i, v in enumerate(values):
        v = int(round(v))
        out[i] = 32767 if v > 32767 else (-32768 if v < -32768 else v)
    return out


def power(samples):
    if not samples:
        return 0.0
    return sum(s * s for s in samples) / len(samples)


def dbfs(p):
    return 10.0 * math.log10(p / (32768.0 * 32768.0)) if p > 0 else -200.0


def speak(tmp, key, voice):
    name, wpm, pitch = VOICES[voice]
    wav = os.path.join(tmp, "%s-%s.wav" % (key, voice))
    raw = os.path.join(tmp, "%s-%s.raw" % (key, voice))
    run(["espeak-ng", "-v", name, "-s", str(wpm), "-p", str(pitch),
         "-w", wav, SENTENCES[key]])
    run(["sox", "-R", "-D", wav, "-r", str(RATE), "-b", "16",
         "-e", "signed-integer", "-c", "1", "-t", "raw", raw])
    pcm = read_raw(raw)

    # trim the silence espeak leaves around the words
    nz = [i for i, s in enumerate(pcm) if abs(s) > 16]
    return pcm[nz[0]:nz[-1] + 1]


def frame_labels(pcm):
    """per 10 ms frame: True when the clean speech is active"""
    n = (len(pcm) + FRAME - 1) // FRAME
    e = [dbfs(power(pcm[i * FRAME:(i + 1) * FRAME])) for i in range(n)]
    top = max(e)
    on = [x > top - LABEL_RANGE_DB and x > LABEL_FLOOR_DBFS for x in e]

    bridge = LABEL_BRIDGE_MS // 10
    last = None
    for i, v in enumerate(on):
        if v:
            if last is not None and 1 < i - last <= bridge + 1:
                for j in range(last + 1, i):
                    on[j] = True
            last = i
    return on


def regions(on, offset):
    out = []
    start = None
    for i, v in enumerate(on + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((offset + start * FRAME, offset + i * FRAME))
            start = None
    return out


def build_track(tmp, spec):
    voice, lead, items = spec
    pcm = array.array("h", bytes(2 * int(lead * RATE)))
    speech = []
    utts = []
    for key, gap in items:
        s = speak(tmp, key, voice)
        off = len(pcm)
        # the sentence occupies whole label frames
        pad = (-len(s)) % FRAME
        s.extend([0] * pad)
        r = regions(frame_labels(s), off)
        speech.extend(r)
        utts.append((r[0][0], r[-1][1]))
        pcm.extend(s)
        pcm.extend([0] * int(gap * RATE))
    return pcm, speech, utts


def noise(tmp, color):
    raw = os.path.join(tmp, "noise-%s.raw" % color)
    run(["sox", "-R", "-D", "-n", "-r", str(RATE), "-b", "16",
         "-e", "signed-integer", "-c", "1", "-t", "raw", raw,
         "synth", str(NOISE_SECONDS), color + "noise",
         "vol", "0.25", "highpass", "20"])
    pcm = read_raw(raw)
    return pcm, power(pcm)


def write_set(out, name, pcm, kind, cond, snr, speech, utts, index):
    write_raw(os.path.join(out, name + ".raw"), pcm)
    with open(os.path.join(out, name + ".lab"), "w") as f:
        f.write("# voice activity labels, format %d\n" % FORMAT_VERSION)
        f.write("rate %d\n" % RATE)
        f.write("samples %d\n" % len(pcm))
        f.write("kind %s\n" % kind)
        f.write("noise %s\n" % cond)
        f.write("snr %s\n" % snr)
        for a, b in speech:
            f.write("speech %d %d\n" % (a, b))
        for a, b in utts:
            f.write("utterance %d %d\n" % (a, b))
    index.append("%s %s %s %s" % (name, kind, cond, snr))


def clicks(total, background, rng):
    """impulses, short bursts, a beep and typing: none of them speech"""
    x = list(background)
    pos = RATE // 2

    def put(sig):
        nonlocal pos
        for i, v in enumerate(sig):
            if pos + i < total:
                x[pos + i] += v
        pos += len(sig) + RATE // 2

    for _ in range(3):
        put([30000.0, -20000.0, 8000.0])
    for ms in (5, 20, 40, 60, 80):
        n = ms * RATE // 1000
        put([rng() * 9000.0 * (1.0 - i / n) for i in range(n)])
    n = 60 * RATE // 1000
    put([12000.0 * math.sin(2 * math.pi * 1000 * i / RATE) for i in range(n)])
    # typing: a 8 ms decaying click every 120 ms for 3 seconds
    for _ in range(25):
        n = 8 * RATE // 1000
        sig = [rng() * 14000.0 * math.exp(-i / 30.0) for i in range(n)]
        sig.extend([0.0] * (120 * RATE // 1000 - n))
        put(sig)
        pos -= RATE // 2
    return to_pcm(x[:total])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/vad"
    os.makedirs(out, exist_ok=True)
    index = []

    seed = [0x2545F491]

    def rng():
        # xorshift32: a fixed, portable sequence in [-1, 1)
        s = seed[0]
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        seed[0] = s
        return s / 2147483648.0 - 1.0

    with tempfile.TemporaryDirectory() as tmp:
        noises = {c: noise(tmp, c) for c in NOISES}
        cursor = 0

        for name, spec in TRACKS.items():
            pcm, speech, utts = build_track(tmp, spec)
            active = [0.0, 0]
            for a, b in speech:
                active[0] += sum(s * s for s in pcm[a:b])
                active[1] += b - a
            level = active[0] / active[1]
            g = math.sqrt(10 ** (SPEECH_DBFS / 10) * 32768.0 ** 2 / level)
            clean = [s * g for s in pcm]
            write_set(out, name + "-clean", to_pcm(clean), "speech",
                      "none", "inf", speech, utts, index)

            for color in NOISES:
                npcm, npow = noises[color]
                for snr in SNRS:
                    want = 10 ** ((SPEECH_DBFS - snr) / 10) * 32768.0 ** 2
                    k = math.sqrt(want / npow)
                    # each file takes its own stretch of the noise
                    cursor = (cursor + 7919 * 16) % (len(npcm) - len(clean))
                    mix = [c + k * npcm[cursor + i]
                           for i, c in enumerate(clean)]
                    write_set(out, "%s-%s%d" % (name, color, snr),
                              to_pcm(mix), "speech", color, snr, speech,
                              utts, index)

        ten = 10 * RATE
        for color in NOISES:
            npcm, npow = noises[color]
            for lvl in (-31, -46):
                k = math.sqrt(10 ** (lvl / 10) * 32768.0 ** 2 / npow)
                cursor = (cursor + 7919 * 16) % (len(npcm) - ten)
                pcm = to_pcm([k * npcm[cursor + i] for i in range(ten)])
                write_set(out, "noise-%s%d" % (color, -lvl), pcm, "noise",
                          color, "-", [], [], index)

        # noise that grows by 20 dB over 6 seconds
        npcm, npow = noises["pink"]
        k = math.sqrt(10 ** (-51 / 10) * 32768.0 ** 2 / npow)
        pcm = to_pcm([k * npcm[i] * 10 ** (min(i / (6.0 * RATE), 1.0))
                      for i in range(ten)])
        write_set(out, "noise-pinkramp", pcm, "noise", "pink", "-", [], [],
                  index)

        write_set(out, "silence-zero", array.array("h", bytes(2 * ten)),
                  "silence", "none", "-", [], [], index)
        pcm = to_pcm([rng() * 1.5 for _ in range(ten)])
        write_set(out, "silence-dither", pcm, "silence", "dither", "-", [],
                  [], index)

        pcm = clicks(ten, [0.0] * ten, rng)
        write_set(out, "clicks-quiet", pcm, "clicks", "none", "-", [], [],
                  index)
        npcm, npow = noises["white"]
        k = math.sqrt(10 ** (-50 / 10) * 32768.0 ** 2 / npow)
        pcm = clicks(ten, [k * v for v in npcm[:ten]], rng)
        write_set(out, "clicks-noise", pcm, "clicks", "white", "-", [], [],
                  index)

    with open(os.path.join(out, "index.txt"), "w") as f:
        f.write("# name kind noise snr\n")
        f.write("\n".join(index) + "\n")


if __name__ == "__main__":
    main()
