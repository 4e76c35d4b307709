"""Audio for the integration tests, written here and nowhere else: tones,
G.711 mu-law, a spectrum, the signal-to-noise ratio of an echoed tone,
real-time pacing and speech from espeak-ng.

Samples are plain Python numbers in array('h') (16-bit, the machine's
byte order, which the tests check is little-endian like pcm_s16le).
Everything is pure Python, so the windows are kept short.
"""

import array
import asyncio
import cmath
import math
import os
import shutil
import subprocess
import sys
import wave

if sys.byteorder != "little":
    raise RuntimeError("pcm_s16le helpers assume a little-endian machine")

FRAME_MS = 20
FRAMES_PER_SECOND = 1000 // FRAME_MS


# ---- formats -------------------------------------------------------------

# voice.v1 format descriptions by short name, as session.start takes them.
FORMATS = {
    "pcm8k": {"encoding": "pcm_s16le", "sample_rate": 8000},
    "pcm16k": {"encoding": "pcm_s16le", "sample_rate": 16000},
    "pcm24k": {"encoding": "pcm_s16le", "sample_rate": 24000},
    "pcm48k": {"encoding": "pcm_s16le", "sample_rate": 48000},
    "mulaw": {"encoding": "mulaw", "sample_rate": 8000},
}


def rate_of(name):
    return FORMATS[name]["sample_rate"]


def frame_bytes(name):
    """Bytes of one 20 ms frame of a PCM or mu-law format."""
    fmt = FORMATS[name]
    samples = fmt["sample_rate"] // FRAMES_PER_SECOND
    return samples * (2 if fmt["encoding"] == "pcm_s16le" else 1)


def session_start(inp, out):
    return {"type": "session.start",
            "audio": {"input": dict(FORMATS[inp], channels=1),
                      "output": dict(FORMATS[out])}}


def encode(name, samples):
    if FORMATS[name]["encoding"] == "mulaw":
        return mulaw_encode(samples)
    return pcm_bytes(samples)


def decode(name, data):
    if FORMATS[name]["encoding"] == "mulaw":
        return mulaw_decode(data)
    return pcm_samples(data)


def frames_of(name, samples):
    """The samples in the format, cut into whole 20 ms frames."""
    per = rate_of(name) // FRAMES_PER_SECOND
    return [encode(name, samples[i:i + per])
            for i in range(0, len(samples) - per + 1, per)]


# ---- signals -------------------------------------------------------------

def tone(freq, rate, seconds, amplitude=0.5, phase=0.0):
    n = int(round(rate * seconds))
    w = 2.0 * math.pi * freq / rate
    peak = amplitude * 32767.0
    return array.array("h", (int(round(peak * math.sin(w * i + phase)))
                             for i in range(n)))


def staircase(freqs, rate, step_seconds, amplitude=0.5):
    """A tone that steps through freqs, step_seconds each, with a
    continuous phase."""
    out = array.array("h")
    phase = 0.0
    per = int(round(rate * step_seconds))
    peak = amplitude * 32767.0
    for f in freqs:
        w = 2.0 * math.pi * f / rate
        out.extend(int(round(peak * math.sin(phase + w * i)))
                   for i in range(per))
        phase = (phase + w * per) % (2.0 * math.pi)
    return out


def silence(rate, seconds):
    return array.array("h", bytes(2 * int(round(rate * seconds))))


def pcm_bytes(samples):
    return array.array("h", samples).tobytes()


def pcm_samples(data):
    if len(data) % 2:
        raise AssertionError("pcm_s16le data of odd length %d" % len(data))
    out = array.array("h")
    out.frombytes(data)
    return out


# ---- G.711 mu-law ---------------------------------------------------------

_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635


def _mulaw_encode_one(sample):
    sign = 0
    if sample < 0:
        sample = -sample
        sign = 0x80
    sample = min(sample, _MULAW_CLIP) + _MULAW_BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _mulaw_decode_one(byte):
    byte = ~byte & 0xFF
    exponent = (byte >> 4) & 0x07
    magnitude = (((byte & 0x0F) << 3) + _MULAW_BIAS) << exponent
    magnitude -= _MULAW_BIAS
    return -magnitude if byte & 0x80 else magnitude


_MULAW_DECODE = array.array("h", (_mulaw_decode_one(b) for b in range(256)))


def mulaw_encode(samples):
    return bytes(_mulaw_encode_one(s) for s in samples)


def mulaw_decode(data):
    return array.array("h", (_MULAW_DECODE[b] for b in data))


# ---- analysis ------------------------------------------------------------

def rms(samples):
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def onset(samples, rate, threshold=0.25):
    """Index of the first 5 ms block whose RMS reaches `threshold` of the
    loudest block, or None for silence."""
    block = max(1, rate // 200)
    levels = [rms(samples[i:i + block])
              for i in range(0, len(samples) - block + 1, block)]
    if not levels or max(levels) < 1.0:
        return None
    top = max(levels)
    for i, level in enumerate(levels):
        if level >= threshold * top:
            return i * block
    return None


def _fft(values):
    """In-place iterative radix-2 FFT of a list of complex numbers."""
    n = len(values)
    j = 0
    for i in range(1, n):
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            values[i], values[j] = values[j], values[i]
    size = 2
    while size <= n:
        step = cmath.exp(-2j * math.pi / size)
        half = size // 2
        for start in range(0, n, size):
            w = 1.0
            for k in range(start, start + half):
                a = values[k]
                b = values[k + half] * w
                values[k] = a + b
                values[k + half] = a - b
                w *= step
        size *= 2
    return values


def dominant_frequency(samples, rate):
    """Frequency of the strongest spectral peak (Hann window, parabolic
    interpolation between bins) over the largest power-of-two prefix of
    samples, at most 8192."""
    n = 1
    while n * 2 <= min(len(samples), 8192):
        n *= 2
    if n < 256:
        raise AssertionError("%d samples are too few to analyse"
                             % len(samples))
    mean = sum(samples[:n]) / n
    values = [complex((samples[i] - mean)
                      * (0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1))))
              for i in range(n)]
    spectrum = [abs(v) for v in _fft(values)[:n // 2]]
    k = max(range(1, n // 2 - 1), key=spectrum.__getitem__)
    a, b, c = (math.log(spectrum[k - 1] + 1e-9), math.log(spectrum[k] + 1e-9),
               math.log(spectrum[k + 1] + 1e-9))
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return (k + shift) * rate / n


def tone_power(samples, rate, freq):
    """Power of the best-fitting sinusoid at freq."""
    return _fit(samples, rate, freq)[0]


def _solve3(m, v):
    """Solves the 3x3 system m x = v (Cramer's rule)."""
    def det(a):
        return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
                - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))
    d = det(m)
    out = []
    for col in range(3):
        a = [row[:] for row in m]
        for r in range(3):
            a[r][col] = v[r]
        out.append(det(a) / d)
    return out


def _fit(samples, rate, freq):
    """Least-squares fit of offset + a cos + b sin at freq.  Returns
    (power of the sinusoid, power of what the fit leaves)."""
    n = len(samples)
    w = 2.0 * math.pi * freq / rate
    cos = [math.cos(w * i) for i in range(n)]
    sin = [math.sin(w * i) for i in range(n)]
    sc = sum(cos)
    ss = sum(sin)
    cc = sum(c * c for c in cos)
    s2 = sum(s * s for s in sin)
    cs = sum(c * s for c, s in zip(cos, sin))
    x1 = float(sum(samples))
    xc = sum(x * c for x, c in zip(samples, cos))
    xs = sum(x * s for x, s in zip(samples, sin))
    d, a, b = _solve3([[n, sc, ss], [sc, cc, cs], [ss, cs, s2]],
                      [x1, xc, xs])
    residual = sum((x - d - a * c - b * s) ** 2
                   for x, c, s in zip(samples, cos, sin)) / n
    return (a * a + b * b) / 2.0, residual


def snr_db(samples, rate, freq):
    """Signal-to-noise ratio in dB of a tone at freq: the power of the
    fitted sinusoid against everything else but a constant offset
    (noise, distortion, other tones).  Only a tone at exactly freq
    scores high, which is the point: a resampler that drifts fails."""
    fitted, residual = _fit(samples, rate, freq)
    return 10.0 * math.log10(max(fitted, 1e-9) / max(residual, 1e-9))


def steady_part(samples, rate, skip=0.1, length=0.5):
    """A window of the echoed tone away from its edges: from `skip`
    seconds after the onset, `length` seconds long (or what there is,
    keeping `skip` off the end)."""
    start = onset(samples, rate)
    if start is None:
        raise AssertionError("the echo is silent (%d samples)"
                             % len(samples))
    begin = start + int(rate * skip)
    end = min(begin + int(rate * length), len(samples) - int(rate * skip))
    if end - begin < rate // 20:
        raise AssertionError("the echoed tone is too short: %d samples "
                             "after its onset at %d" % (len(samples) - start,
                                                        start))
    return samples[begin:end]


def tone_report(samples, rate, freq, skip=0.1, length=0.5):
    """(dominant frequency, SNR dB) of the steady part of an echo."""
    part = steady_part(samples, rate, skip, length)
    return dominant_frequency(part, rate), snr_db(part, rate, freq)


# ---- real-time sending ---------------------------------------------------

async def send_paced(ws, frames, interval=FRAME_MS / 1000.0, start=None,
                     send=None):
    """Send frames at start + i * interval (absolute deadlines, so the
    pace does not drift).  Returns the loop time the first frame was due.
    `send` turns a frame into the message when given."""
    loop = asyncio.get_running_loop()
    if start is None:
        start = loop.time()
    for i, frame in enumerate(frames):
        due = start + i * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(send(i, frame) if send else frame)
    return start


# ---- speech --------------------------------------------------------------

SPEECH_RATE = 16000


def workdir():
    path = os.environ.get("VOICE_TEST_WORKDIR")
    if not path:
        raise RuntimeError("VOICE_TEST_WORKDIR is not set: run through "
                           "run.py")
    os.makedirs(path, exist_ok=True)
    return path


def speech(text, name):
    """Speech from espeak-ng, as 16 kHz mono samples trimmed of the
    synthesiser's own leading and trailing silence.  The WAV files are
    made in the test work directory at each run."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(tool + " is not installed")
    raw = os.path.join(workdir(), name + ".espeak.wav")
    wav = os.path.join(workdir(), name + ".16k.wav")
    if not os.path.exists(wav):
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", raw,
                        text], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["sox", raw, "-r", str(SPEECH_RATE), "-c", "1", "-b",
                        "16", "-e", "signed-integer", wav], check=True)
    with wave.open(wav) as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) \
                != (1, 2, SPEECH_RATE):
            raise RuntimeError("sox made an unexpected %s" % wav)
        samples = pcm_samples(w.readframes(w.getnframes()))
    return trim(samples)


def trim(samples, threshold=0.02):
    """Drop the leading and trailing samples quieter than threshold of
    full scale."""
    level = threshold * 32767
    loud = [i for i, s in enumerate(samples) if abs(s) >= level]
    if not loud:
        raise RuntimeError("no speech in the synthesised audio")
    return samples[loud[0]:loud[-1] + 1]
