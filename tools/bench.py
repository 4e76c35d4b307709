#!/usr/bin/python3
"""The standard load scenarios of ngx_http_voice_module (`make bench`).

Every scenario gets a fresh nginx (conf/bench.conf, written into a prefix
under build/bench/<scenario>/ with a copy of the module, so that a rebuild
during a long run cannot pull the code from under the workers) and runs
build/voice-bench against its echo pipeline; every figure of a scenario
lands in build/bench/<scenario>/result.json.

  a  rtt100   100 sessions, 20 ms frames, 30 s      added RTT p99 < 5 ms
  b  rtt1000  1,000 sessions, 20 ms frames, 30 s    added RTT p99 < 20 ms
  c  soak     one duplex session for 10 minutes     no reordering, flat RSS
  d  mem      1,000 sessions, 500 ms of audio in    <= 64 KiB RSS per session
              flight each
  e  churn    10,000 sessions opened and closed,    flat RSS
              100 at a time
  f  codecs   per codec configuration: 500          RSS and worker CPU
              sessions (fewer if they would not     per session
              fit in 70% of a core) streaming 20 ms
              frames in real time for 20 s
  g  pacing   pcm16k -> mulaw at 100 and 1,000      output interval
              sessions: output frames at the        p50/p99/max (ideal
              client                                20 ms); lead <= 100 ms
  h  costs    build/audio-bench and build/vad-bench: conversion cost per
              20 ms frame for each format, VAD cost per frame
  i  stt      agent sessions streaming to the       partial/final latency,
              Deepgram mock (t/mock/deepgram.py):   no cross-session bleed,
              transcripts, echo RTT beside them,    echo RTT alone and
              memory at 100 and 1,000 sessions,     loaded, RSS per session,
              1,000 sessions opened and closed      flat RSS
  j  llm      agent sessions driven by text.input   first-token latency,
              against the LLM mock (t/mock/llm.py,  no cross-session bleed,
              OpenAI dialect): replies streamed,    echo RTT alone and
              echo RTT beside them, memory at 100   loaded, RSS per session,
              and 1,000 sessions, 1,000 sessions    flat RSS
              opened, one turn each, and closed
  k  tts      100 agent sessions whose replies  first audio latency,
              are spoken by the Cartesia engine     speech.started -> last
              against the TTS mock (5x real time)   audio frame <= 20 ms,
              and written by the LLM mock, each     frame gaps/underruns,
              cut by the client's own speech        cancel timing, RSS and
              (a voiced buzz) after 1.5 s of audio; CPU per session
              the client is Python asyncio here,
              not voice-bench

usage: bench.py [--seconds S] [--soak-seconds S] [--churn N] [--workers N]
                [--codec-seconds S] [--codec-sessions N] [--codec-budget P]
                [--pacing-seconds S] [--stt-seconds S] [--stt-sessions N]
                [--stt-mem-seconds S] [--stt-mem-interval MS]
                [--stt-churn N] [--llm-seconds S] [--llm-sessions N]
                [--llm-churn N] [--tts-sessions N]
                [scenario ...]

Scenarios are named by letter or name (default: all, in order).  The same
settings can come from the environment: BENCH_SECONDS (a and b, default
30), BENCH_SOAK_SECONDS (c, default 600), BENCH_CHURN (e, default 10000),
BENCH_WORKERS (default 1), BENCH_CODEC_SECONDS (f, default 20),
BENCH_CODEC_SESSIONS (f, default 500), BENCH_CODEC_BUDGET (f, default
70), BENCH_PACING_SECONDS (g, default 20), BENCH_STT_SECONDS (i,
default 20), BENCH_STT_SESSIONS (i, default 100), BENCH_STT_MEM_SECONDS
(i, default 10), BENCH_STT_MEM_INTERVAL (i, default 200), BENCH_STT_CHURN
(i, default 1000), BENCH_LLM_SECONDS (j, default 20), BENCH_LLM_SESSIONS
(j, default 100), BENCH_LLM_CHURN (j, default 1000),
BENCH_TTS_SESSIONS (k, default 100).

Speech-to-text (i) runs nginx with the echo at /voice and an agent
pipeline at /dg whose Deepgram engine talks to the mock, each run with a
fresh nginx and mock.  The mock plays a script per session: an utterance
every 1.5 s of audio, an interim Results every 150 ms with one word more,
then the final; every word names its session ("s17u3w2"), so each
transcript a client gets says whose it is.  The agent sessions send
silence in real time (build/voice-bench --listen; the local VAD then never
ends a turn, the scripted finals do) and log each transcript event with
the wall clock time its bytes reached this host; the mock logs the wall
clock time it sent each message (`wall` in its records), and the two are
joined by session and text.  The runs:

  - the echo alone: 100 sessions, 20 ms frames (as a), the reference;
  - the same echo while --stt-sessions agent sessions stream 20 ms frames
    to the mock: partial and final latency (mock send -> client kernel
    arrival; the figure at the generator's read beside it), the bleed
    check (a transcript with another session's word, or one the mock did
    not send on that session's stream, is a functional failure, and so is
    a scripted final that never arrived), echo RTT loaded, the worker's
    CPU (over the echo's run, both loads) and the mock's;
  - memory: 100 agent sessions with 20 ms frames, and 1,000 with
    --stt-mem-interval ms frames: still real time, but the mock (Python,
    one thread, and it rewrites a JSON record per connection as audio
    comes) cannot take 50,000 messages a second on this machine, while
    5,000 a second it can; RSS per session as in d;
  - --stt-churn agent sessions opened and closed, 50 at a time, 1.2 s of
    audio each (the mock's built-in "hello" script): flat as in e.

The mock, the generators and nginx share the machine: the mock's CPU is
printed (mean and busiest second, in percent of one core), and a run
where the mock was busy 95% of some second or more says MISSED there, as
its figures then measure the mock.  Before nginx is stopped the run waits
until the mock has seen every upstream connection end.

The language model stage (j) runs nginx with the echo at /voice and an
agent pipeline at /llm (voice_stt off, voice_llm openai) whose engine
talks to the LLM mock, each run with a fresh nginx and mock.  Every turn
is a text.input "mock:bench s<session>t<turn>", which makes the mock play
its "bench" script: 40 tokens at 50 tokens a second after 50 ms to the
first, the reply naming its session and turn three times.  The sessions
(build/voice-bench --text-turns) send a turn, read the reply's deltas to
response.text.done (they must add up to its text), and send the next;
each reply is logged with the wall clock time its first delta reached
this host (kernel receive stamp), and the mock logs the wall clock time
it wrote each token (`wall` in its records' `sent`); the two are joined
by session and turn.  The runs:

  - the echo alone: 100 sessions, 20 ms frames (as a), the reference;
  - the same echo while --llm-sessions agent sessions take turns back to
    back: first-token latency (mock writes the first token -> client
    kernel arrival of the first delta; at the generator's read beside
    it; and text.input -> first delta, which holds the script's 50 ms),
    the bleed check (a reply naming another session or turn, or one that
    is not the text the mock sent for that session's turn, is a
    functional failure), echo RTT loaded, the worker's and the mock's
    CPU;
  - memory: 100 and 1,000 agent sessions, one turn each, then held open
    with their one-turn history: RSS per session as in d;
  - --llm-churn agent sessions opened, one turn each, and closed, 50 at
    a time: flat as in e.

The codec configurations of f: pcm16k -> pcm16k (the raw echo, matched
byte for byte: the baseline), pcm16k -> mulaw, mulaw -> pcm16k, pcm48k ->
pcm16k, pcm16k -> opus, opus -> pcm16k, Twilio (mu-law both ways in JSON
media messages, through the conversion, marks answered as they play),
Vonage at 16 kHz, and pcm16k -> mulaw once more with each of
voice_resample_quality fastest and linear.  Converted output is counted,
not matched: conversion changes the bytes.

Why f may run fewer than 500 sessions: memory per session means
something only while the worker keeps up with the audio; a worker that
falls behind queues audio (and on this kind of machine, when it falls far
behind, every session suffers, not only the extra ones).  So each
configuration first runs 50 sessions for 4 s on a fresh nginx to measure
the worker CPU one session takes, and the real run then has at most as
many sessions as fit in --codec-budget percent of one core (0: no cap).
Every configuration gets its own fresh nginx, so that no run inherits the
allocator arenas of another.

Pacing (g) is pcm16k -> mulaw at the default quality with 100 and 1,000
sessions, and 1,000 once more with the linear resampler, which separates
how the pacing behaves from whether the worker has the CPU for the
sessions.  The interval is the time between output frames as they reached
this host (kernel receive stamps); the lead is the audio received minus
the time since the first output frame, sampled at each frame after the
first second of output (goal: at most voice_playout_lead, 80 ms, plus one
frame).  "Underruns" counts frames that came more than 1 ms after a
client playing at real time had run out of audio.

Saturation: when the worker used 95% of a core or more over some second
of a run of f or g, sessions that failed and frames that were lost in
that run are reported as over capacity (MISSED), not as a functional
failure; protocol errors, corrupt frames, a worker that went away and
[alert] lines still are.

Why one worker: the machine this runs on has two cores and the generator
needs one of them.  With a single worker, nginx and the generator each
have a core, so latency figures are not inflated by two workers and the
generator fighting over the cores, and every session lands in the same
worker, which makes "RSS per session" a plain quotient instead of
depending on how the kernel spread the connections.  A session lives in
one worker anyway, so one worker on one core is the unit a fleet scales.

Added RTT is the echo's round trip minus the echo delay, judged on when
the echo reached this host (the kernel's receive stamp), so that time the
echo then waited for the generator to read it does not count against the
server; the figure at the generator's read is shown next to it.  The
generator also reports its own lag (frames sent late because it was busy
or descheduled): when its p99 exceeds 1 ms the latency figures of that
scenario say as much about this machine as about the module.

Memory is the summed VmRSS of the workers (user space only: socket
buffers live in the kernel and are not in it).  Per session (d) is the
peak while every session streamed minus the figure before any opened,
divided by the sessions.  Flat for the churn (e) compares the end with
the point where 10% of the sessions were done, because the first sessions
grow the allocator's arenas once; for the soak (c) it is the spread of
the samples taken after the first 10 s.

The exit status is 1 only on a functional failure: sessions that failed,
frames lost, reordered or corrupted, protocol errors, a worker that went
away, nginx that does not start or stop, or an [alert] (or worse) in the
error log.  A figure that misses its goal is reported, never fatal.
"""

import argparse
import json
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
MODULE = os.path.join(BUILD, "ngx_http_voice_module.so")
GENERATOR = os.path.join(BUILD, "voice-bench")
AUDIO_BENCH = os.path.join(BUILD, "audio-bench")
VAD_BENCH = os.path.join(BUILD, "vad-bench")
TEMPLATE = os.path.join(ROOT, "conf", "bench.conf")
PREFIX_ROOT = os.path.join(BUILD, "bench")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")

ECHO_DELAY_MS = 500
PLAYOUT_LEAD_MS = 80        # voice_playout_lead's default, as bench.conf
FRAME_MS = 20
# Descriptors: as many as the hard limit lets the workers have (a master
# that may not raise it would log an [alert]), up to 32768.
_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
NOFILE = 32768 if _HARD == resource.RLIM_INFINITY else min(_HARD, 32768)
CONNECTIONS = min(16384, NOFILE - 64)

# What "flat" tolerates: a few pages of allocator noise.  A leak of one
# small allocation per session over the churn shows well above it.
SOAK_FLAT_KIB = 64
CHURN_FLAT_KIB = 256
MEM_GOAL_KIB = 64.0

# f: the short run that measures the CPU of one session
CALIBRATE_SESSIONS = 50
CALIBRATE_SECONDS = 4
MIN_SESSIONS = 10
# a second in which the worker used this much of a core: saturated
SATURATED_PCT = 95.0

# f: label, directory, location, generator arguments
CODEC_CONFIGS = [
    ("pcm16k->pcm16k (raw)", "pcm16k-pcm16k", "/voice",
     ["--input", "pcm16k", "--output", "pcm16k"]),
    ("pcm16k->mulaw", "pcm16k-mulaw", "/voice",
     ["--input", "pcm16k", "--output", "mulaw"]),
    ("mulaw->pcm16k", "mulaw-pcm16k", "/voice",
     ["--input", "mulaw", "--output", "pcm16k"]),
    ("pcm48k->pcm16k", "pcm48k-pcm16k", "/voice",
     ["--input", "pcm48k", "--output", "pcm16k"]),
    ("pcm16k->opus", "pcm16k-opus", "/voice",
     ["--input", "pcm16k", "--output", "opus"]),
    ("opus->pcm16k", "opus-pcm16k", "/voice",
     ["--input", "opus", "--output", "pcm16k"]),
    ("twilio mulaw<->mulaw", "twilio", "/twilio",
     ["--dialect", "twilio"]),
    ("vonage 16k", "vonage", "/vonage",
     ["--dialect", "vonage", "--input", "pcm16k"]),
    ("pcm16k->mulaw fastest", "pcm16k-mulaw-fastest", "/voice-fastest",
     ["--input", "pcm16k", "--output", "mulaw"]),
    ("pcm16k->mulaw linear", "pcm16k-mulaw-linear", "/voice-linear",
     ["--input", "pcm16k", "--output", "mulaw"]),
]

# g: label, directory, sessions, location
PACING_RUNS = [
    ("n=100", "100", 100, "/voice"),
    ("n=1000", "1000", 1000, "/voice"),
    ("n=1000 linear", "1000-linear", 1000, "/voice-linear"),
]


class Failure(Exception):
    """Something that makes the run fail, with the reason."""


def env_number(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        sys.exit("bench.py: %s must be a number, not %r" % (name, value))


# ---- scenarios a to e ---------------------------------------------------

def scenario_args(name, opts):
    """voice-bench arguments of a scenario (the URL comes last)."""
    seconds = "%g" % opts.seconds
    if name == "rtt100":
        return ["-n", "100", "-d", seconds, "-r", "200"]
    if name == "rtt1000":
        # Opened at 500 a second: a real fleet does not see 1,000
        # handshakes in the same millisecond, and the first frames'
        # figures should not be those of a SYN flood.
        return ["-n", "1000", "-d", seconds, "-r", "500"]
    if name == "soak":
        return ["-n", "1", "-d", "%g" % opts.soak_seconds,
                "--rss-every", "10"]
    if name == "mem":
        # All 1,000 sessions stream together from about 2 s to 6 s; the
        # echo line is full (500 ms of audio) from 2.5 s on, and the peak
        # is sampled every second while all of them stream.
        return ["-n", "1000", "-d", "6", "-r", "500", "--rss-every", "1"]
    if name == "churn":
        return ["--churn", "%d" % opts.churn, "-n", "100",
                "--churn-frames", "5", "--rss-every", "5"]
    raise ValueError(name)


def scenario_timeout(name, opts):
    """Seconds after which a generator that has not finished has hung."""
    if name in ("rtt100", "rtt1000"):
        return opts.seconds + 60
    if name == "soak":
        return opts.soak_seconds + 60
    if name == "mem":
        return 70
    return 120 + opts.churn / 50.0


def rss_growth(samples, after_s):
    """Largest minus smallest RSS among samples taken at or after after_s
    while sessions were streaming."""
    # a sample: [seconds, VmRSS KiB, sessions streaming, anonymous KiB,
    #            worker CPU seconds so far]
    values = [sample[1] for sample in samples
              if sample[0] >= after_s and sample[2] > 0]
    if len(values) < 2:
        return None
    return max(values) - min(values)


def peak_cpu_pct(r):
    """The workers' highest CPU over a sampling period of at least half a
    second, in percent of one core (None without a timeline)."""
    samples = [x for x in r.get("rss_samples", []) if len(x) >= 5]
    peak = None
    for a, b in zip(samples, samples[1:]):
        dt = b[0] - a[0]
        if dt >= 0.5:
            pct = 100.0 * (b[4] - a[4]) / dt
            peak = pct if peak is None else max(peak, pct)
    return peak


def ms3(h):
    # the histograms start at -100 ms: below it a quantile reads -99.99
    return " / ".join("<-100" if v <= -99.99 else "%.2f" % v
                      for v in (h["p50"], h["p99"], h["max"]))


def common_rows(r):
    """Sessions, frames, server events and the generator's validity."""
    rows = []
    rows.append(("sessions ok / failed", "%d / %d" % (
        r["sessions_ok"], r["sessions_failed"]), "0 failed",
        r["sessions_failed"] == 0))
    rows.append(("frames sent / lost / reordered", "%d / %d / %d" % (
        r["frames_sent"], r["frames_lost"], r["frames_reordered"]),
        "0 lost", r["frames_lost"] == 0 and r["frames_reordered"] == 0))
    events = (r["backpressure"], r["buffer_full"], r["protocol_errors"],
              r["frames_corrupt"])
    if any(events):
        rows.append(("backpressure/buffer full/errors/corrupt",
                     "%d / %d / %d / %d" % events, "0", False))
    lag = r["lag_ms"]
    rows.append(("generator lag p99 / max ms, CPU",
                 "%.2f / %.2f, %.0f%%" % (lag["p99"], lag["max"],
                                          r["gen_cpu_pct"]),
                 "valid: p99<=1", lag["p99"] <= 1.0))
    return rows


def figures(name, r):
    """(figure, measured, goal, met) rows of one scenario's result."""
    rows = []
    rtt = r["rtt_arrival_ms"]
    rtt_text = "%.2f / %.2f / %.2f / %.2f" % (rtt["p50"], rtt["p95"],
                                              rtt["p99"], rtt["max"])
    read = r["rtt_added_ms"]
    read_row = ("  the same, when the generator read it", "%.2f / %.2f / "
                "%.2f / %.2f" % (read["p50"], read["p95"], read["p99"],
                                 read["max"]), "-", None)

    # The goal is judged on the echo's arrival at this host (kernel
    # receive stamp): the server's doing, not the generator's read delay.
    if name == "rtt100":
        rows.append(("added RTT p50/p95/p99/max ms", rtt_text,
                     "p99 < 5 ms", rtt["n"] > 0 and rtt["p99"] < 5))
        rows.append(read_row)
    elif name == "rtt1000":
        rows.append(("added RTT p50/p95/p99/max ms", rtt_text,
                     "p99 < 20 ms", rtt["n"] > 0 and rtt["p99"] < 20))
        rows.append(read_row)
    elif name == "soak":
        rows.append(("frames reordered", "%d" % r["frames_reordered"],
                     "0", r["frames_reordered"] == 0))
        growth = rss_growth(r["rss_samples"], 10)
        if growth is None:
            rows.append(("RSS growth while streaming", "too short",
                         "<= %d KiB" % SOAK_FLAT_KIB, None))
        else:
            rows.append(("RSS growth while streaming (t >= 10 s)",
                         "%d KiB" % growth, "<= %d KiB" % SOAK_FLAT_KIB,
                         growth <= SOAK_FLAT_KIB))
        rows.append(("added RTT p50/p95/p99/max ms", rtt_text, "-", None))
    elif name == "mem":
        per = r["rss_per_session_kib"]
        rows.append(("RSS per session, 500 ms in flight",
                     "%.1f KiB" % per if per is not None else "n/a",
                     "<= %g KiB" % MEM_GOAL_KIB,
                     per is not None and per <= MEM_GOAL_KIB))
        anon = r["rss_anon_per_session_kib"]
        rows.append(("  of it anonymous (heap) memory",
                     "%.1f KiB" % anon if anon is not None else "n/a",
                     "-", None))
        kib = r["rss_kib"]
        rows.append(("RSS before / peak / after KiB", "%s / %s / %s" % (
            kib["before"], kib["peak"], kib["after"]), "-", None))
    elif name == "churn":
        kib = r["rss_kib"]
        rows.append(("RSS before / after 10% / after KiB", "%s / %s / %s" % (
            kib["before"], kib["warm"], kib["after"]), "-", None))
        if kib["warm"] is not None and kib["after"] is not None:
            growth = kib["after"] - kib["warm"]
            rows.append(("RSS growth after warm-up", "%d KiB" % growth,
                         "<= %d KiB" % CHURN_FLAT_KIB,
                         growth <= CHURN_FLAT_KIB))
        anon = r["rss_anon_kib"]
        if anon["warm"] is not None and anon["after"] is not None:
            rows.append(("  of it anonymous (heap) memory", "%d KiB" % (
                anon["after"] - anon["warm"]), "-", None))
        if kib["before"] is not None and kib["after"] is not None:
            rows.append(("RSS growth over the whole run", "%d KiB" % (
                kib["after"] - kib["before"]), "-", None))

    rows.extend(common_rows(r))
    if "server_cpu_pct" in r:
        rows.append(("nginx worker CPU", "%.0f%% of a core" %
                     r["server_cpu_pct"], "-", None))
    return rows


SCENARIOS = [
    ("a", "rtt100", "100 sessions, 20 ms frames"),
    ("b", "rtt1000", "1,000 sessions, 20 ms frames"),
    ("c", "soak", "one duplex session, RSS over time"),
    ("d", "mem", "memory per session, 500 ms in flight"),
    ("e", "churn", "sessions opened and closed"),
    ("f", "codecs", "memory and CPU per session, per codec configuration"),
    ("g", "pacing", "pacing of converted audio, pcm16k -> mulaw"),
    ("h", "costs", "conversion and VAD cost per 20 ms frame"),
    ("i", "stt", "streaming speech-to-text through the Deepgram mock"),
    ("j", "llm", "streamed language model replies through the LLM mock"),
    ("k", "tts", "spoken replies through Cartesia and the TTS mock, "
                 "interrupted by speech"),
]


# ---- nginx --------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(prefix, port, workers):
    for sub in ("logs", "temp", "modules"):
        os.makedirs(os.path.join(prefix, sub), exist_ok=True)
    # nginx maps the module it loads: a rebuild that rewrites
    # build/ngx_http_voice_module.so in place during a long run would
    # crash the workers, so the run loads a copy of its own.
    module = os.path.join(prefix, "modules", os.path.basename(MODULE))
    shutil.copyfile(MODULE, module)
    with open(TEMPLATE) as f:
        text = f.read()
    values = {
        "MODULE": module,
        "PREFIX": prefix,
        "PORT": str(port),
        "WORKERS": str(workers),
        "CONNECTIONS": str(CONNECTIONS),
        "NOFILE": str(NOFILE),
        "DELAY_MS": str(ECHO_DELAY_MS),
    }
    for key, value in values.items():
        text = text.replace("@%s@" % key, value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise Failure("conf/bench.conf has unknown placeholders %s" % left)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf


def nginx_cmd(prefix, conf, *extra):
    return [NGINX, "-p", prefix + "/", "-c", conf,
            "-e", os.path.join(prefix, "logs", "error.log")] + list(extra)


def wait_ready(port, deadline):
    """Until a worker answers /ready (the listening socket alone could be
    served by the kernel's backlog before any worker runs)."""
    request = b"GET /ready HTTP/1.1\r\nHost: localhost\r\n" \
              b"Connection: close\r\n\r\n"
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port),
                                          timeout=2) as s:
                s.sendall(request)
                reply = s.recv(64)
                if reply.startswith(b"HTTP/1.1 204"):
                    return
                last = reply[:40]
        except OSError as e:
            last = e
        # nothing to wait on while nginx starts but the port itself
        time.sleep(0.05)
    raise Failure("nginx did not answer on port %d (%s)" % (port, last))


def wait_exit(pid, timeout):
    """Wait for a process that is not our child to exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def start_nginx(prefix, conf, port):
    test = subprocess.run(nginx_cmd(prefix, conf, "-t", "-q"),
                          capture_output=True, text=True)
    if test.returncode != 0:
        raise Failure("nginx -t failed:\n" + test.stderr.strip())
    start = subprocess.run(nginx_cmd(prefix, conf),
                           capture_output=True, text=True)
    if start.returncode != 0:
        raise Failure("nginx did not start:\n" + start.stderr.strip())
    with open(os.path.join(prefix, "nginx.pid")) as f:
        pid = int(f.read().strip())
    try:
        wait_ready(port, time.monotonic() + 10)
    except Failure:
        stop_nginx(prefix, conf, pid)
        raise
    return pid


def stop_nginx(prefix, conf, pid):
    subprocess.run(nginx_cmd(prefix, conf, "-s", "quit"),
                   capture_output=True, text=True)
    if not wait_exit(pid, 30):
        os.kill(pid, 9)
        raise Failure("nginx did not exit within 30 s of -s quit")


def scan_log(prefix):
    """Counts of the error log's levels and the lines of [alert] or worse."""
    counts = {}
    bad = []
    path = os.path.join(prefix, "logs", "error.log")
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.search(r"\[(emerg|alert|crit|error|warn|notice)\]",
                              line)
                if not m:
                    continue
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
                if m.group(1) in ("emerg", "alert", "crit"):
                    bad.append(line.rstrip())
    except FileNotFoundError:
        pass
    return counts, bad


# ---- running ------------------------------------------------------------

def run_generator(prefix, gen_args, timeout, port, master, path):
    args = [GENERATOR] + gen_args + [
        "--json", "--nginx-pid", str(master),
        "ws://127.0.0.1:%d%s" % (port, path)]
    print("  $ " + " ".join(os.path.relpath(a, ROOT) if a == GENERATOR
                            else a for a in args), flush=True)
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure("voice-bench did not finish in time")
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if proc.returncode >= 2 or result is None:
        raise Failure("voice-bench exited with %d" % proc.returncode)
    # every figure, for whoever wants more than the table
    with open(os.path.join(prefix, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    return proc.returncode, result


def run_one(key, gen_args, timeout, opts, path="/voice"):
    """One generator run against a fresh nginx in build/bench/<key>/.

    Returns the generator's exit code (None when it did not report), its
    result, the problems that always fail the run (nginx, the worker, the
    error log) and the error log's counts."""
    prefix = os.path.join(PREFIX_ROOT, key)
    shutil.rmtree(prefix, ignore_errors=True)
    problems = []
    result = None
    code = None

    try:
        port = free_port()
        conf = write_conf(prefix, port, opts.workers)
        master = start_nginx(prefix, conf, port)
    except Failure as e:
        return {"code": None, "result": None, "problems": [str(e)],
                "log": {}}
    try:
        code, result = run_generator(prefix, gen_args, timeout, port,
                                     master, path)
        if result["workers_changed"]:
            problems.append("an nginx worker exited during the run")
    except Failure as e:
        problems.append(str(e))
    finally:
        try:
            stop_nginx(prefix, conf, master)
        except Failure as e:
            problems.append(str(e))

    counts, bad = scan_log(prefix)
    if bad:
        problems.append("error log has %d [alert]-or-worse lines, first: %s"
                        % (len(bad), bad[0]))
    log_text = ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items()))
    print("  error log: %s" % (log_text or "no lines at notice or above"))
    return {"code": code, "result": result, "problems": problems,
            "log": counts}


def print_rows(rows):
    for figure, measured, goal, met in rows:
        print("  %-44s %-36s goal %-14s %s" % (
            figure, measured, goal,
            "" if met is None else ("met" if met else "MISSED")))


def run_scenario(letter, name, title, opts):
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    out = run_one(name, scenario_args(name, opts),
                  scenario_timeout(name, opts), opts)
    problems = out["problems"]
    result = out["result"]
    if out["code"]:
        problems.insert(0, "voice-bench reported a functional failure")

    rows = figures(name, result) if result else []
    print_rows(rows)
    if result and result["lag_ms"]["p99"] > 1.0:
        print("  note: the generator itself ran late (lag p99 %.2f ms); "
              "latency figures include that" % result["lag_ms"]["p99"])
    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": result, "log": out["log"]}


def judge(label, out, rows, problems):
    """Adds the outcome of a run of f or g: a functional failure, or, when
    the worker saturated, the same symptoms reported as over capacity."""
    r = out["result"]
    problems.extend("%s: %s" % (label, p) for p in out["problems"])
    if r is None or not out["code"]:
        return
    peak = peak_cpu_pct(r)
    hard = (r["protocol_errors"] or r["frames_corrupt"]
            or r.get("output_extra") or r["workers_changed"])
    if peak is not None and peak >= SATURATED_PCT and not hard:
        rows.append(("  OVER CAPACITY: worker at %.0f%% of a core" % peak,
                     "%d failed, %d frames lost" % (
                         r["sessions_failed"], r["frames_lost"]),
                     "-", False))
        return
    problems.append("%s: voice-bench reported a functional failure "
                    "(%d sessions failed, %d frames lost, %d protocol "
                    "errors, %d corrupt)" % (
                        label, r["sessions_failed"], r["frames_lost"],
                        r["protocol_errors"], r["frames_corrupt"]))


def run_codecs(letter, name, title, opts):
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    rows = []
    problems = []
    results = {}
    seconds = "%g" % opts.codec_seconds

    for label, key, path, args in CODEC_CONFIGS:
        print("\n  -- %s" % label, flush=True)
        sessions = opts.codec_sessions
        capped = False

        if opts.codec_budget > 0 and sessions > CALIBRATE_SESSIONS:
            cal = run_one("codecs/%s-calibrate" % key, args + [
                "-n", "%d" % CALIBRATE_SESSIONS, "-d",
                "%d" % CALIBRATE_SECONDS, "-r", "200"], 70, opts, path)
            r = cal["result"]
            if cal["problems"] or cal["code"] or r is None:
                rows.append(("%s: calibration failed" % label, "-", "-",
                             False))
                judge(label + " (calibration)", cal, rows, problems)
                if not cal["code"] and not cal["problems"]:
                    problems.append("%s: calibration gave no result" % label)
                continue
            per = r.get("server_cpu_per_session_pct")
            if per:
                fit = int(opts.codec_budget / per)
                if fit < sessions:
                    sessions = max(fit, MIN_SESSIONS)
                    capped = True
            print("  one session takes %.3f%% of a core: %d sessions%s" % (
                per or 0, sessions,
                " (capped to %g%% of a core)" % opts.codec_budget
                if capped else ""), flush=True)

        out = run_one("codecs/%s" % key, args + [
            "-n", "%d" % sessions, "-d", seconds, "-r", "500",
            "--rss-every", "1"], opts.codec_seconds + 90, opts, path)
        r = out["result"]
        results[key] = r
        figure = "%s, n=%d%s" % (label, sessions,
                                 " (capped)" if capped else "")
        if r is None:
            rows.append((figure, "no result", "-", False))
            judge(label, out, rows, problems)
            continue

        per = r["rss_per_session_kib"]
        anon = r["rss_anon_per_session_kib"]
        cpu = r.get("server_cpu_per_session_pct")
        measured = "RSS %s KiB (anon %s), CPU %s" % (
            "%.1f" % per if per is not None else "n/a",
            "%.1f" % anon if anon is not None else "n/a",
            "%.3f%%" % cpu if cpu is not None else "n/a")
        row = (figure, measured, "-", None)
        rows.append(row)
        print_rows([row])

        if r["sessions_failed"] or r["frames_lost"] or r["protocol_errors"] \
                or r["frames_corrupt"] or r.get("output_extra"):
            extra = [("  sessions failed / frames lost / errors",
                      "%d / %d / %d" % (r["sessions_failed"],
                                        r["frames_lost"],
                                        r["protocol_errors"]),
                      "0", False)]
            rows.extend(extra)
            print_rows(extra)
        judge(label, out, rows, problems)

    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": results, "log": {}}


def pacing_rows(label, r):
    rows = []
    lead = r["lead_ms"]
    goal = PLAYOUT_LEAD_MS + FRAME_MS
    rows.append(("%s: interval p50/p99/max ms" % label,
                 ms3(r["interval_ms"]) if r["interval_ms"]["n"] else "n/a",
                 "ideal 20", None))
    rows.append(("  lead p50/p99/max ms (steady state)",
                 ms3(lead) if lead["n"] else "n/a",
                 "max <= %d" % goal,
                 lead["n"] > 0 and lead["max"] <= goal))
    rows.append(("  underruns (client ran dry > 1 ms)", "%d of %d frames" % (
        r["underruns"], r["frames_received"]), "-", None))
    cpu = r.get("server_cpu_per_session_pct")
    rows.append(("  worker CPU per session (all streaming)",
                 "%.3f%% (%.0f%% of a core)" % (
                     cpu, r["server_cpu_streaming_pct"])
                 if cpu is not None else "n/a (never all streaming)",
                 "-", None))
    rows.append(("  frames expected / received / lost", "%d / %d / %d" % (
        r["output_expected"], r["frames_received"], r["frames_lost"]),
        "0 lost", r["frames_lost"] == 0))
    if r["sessions_failed"] or r["protocol_errors"] or r["frames_corrupt"]:
        rows.append(("  sessions failed / errors / corrupt",
                     "%d / %d / %d" % (r["sessions_failed"],
                                       r["protocol_errors"],
                                       r["frames_corrupt"]), "0", False))
    lag = r["lag_ms"]
    rows.append(("  generator lag p99 / max ms, CPU",
                 "%.2f / %.2f, %.0f%%" % (lag["p99"], lag["max"],
                                          r["gen_cpu_pct"]),
                 "valid: p99<=1", lag["p99"] <= 1.0))
    return rows


def run_pacing(letter, name, title, opts):
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    rows = []
    problems = []
    results = {}

    for label, key, sessions, path in PACING_RUNS:
        print("\n  -- %s%s" % (label, "" if path == "/voice"
                               else " (%s)" % path), flush=True)
        # more than one thread would share the generator's core anyway
        out = run_one("pacing/%s" % key, [
            "--input", "pcm16k", "--output", "mulaw",
            "-n", "%d" % sessions, "-d", "%g" % opts.pacing_seconds,
            "-r", "500", "--rss-every", "1"],
            opts.pacing_seconds + 90, opts, path)
        r = out["result"]
        results[key] = r
        if r is not None:
            new = pacing_rows(label, r)
            print_rows(new)
            rows.extend(new)
        else:
            rows.append((label, "no result", "-", False))
        judge(label, out, rows, problems)

    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": results, "log": {}}


# ---- h: the cost of conversions and of the VAD ---------------------------

def parse_audio_bench(text):
    """{(table, format): {quality: us}} from audio-bench's report, where a
    table is "codec" (decode, encode at the format's own rate), "decode"
    (decode + resample to 16 kHz) or "encode <rate>" (resample from that
    rate + encode); and the memory lines."""
    costs = {}
    memory = {}
    table = None
    names = []
    for line in text.splitlines():
        m = re.match(r"codec alone", line)
        if m:
            table, names = "codec", ["decode", "encode"]
            continue
        m = re.match(r"decode \+ resample to \d+\s+(.*)$", line)
        if m:
            table, names = "decode", m.group(1).split()
            continue
        m = re.match(r"resample from\s+(\d+) \+ encode\s+(.*)$", line)
        if m:
            table, names = "encode %s" % m.group(1), m.group(2).split()
            continue
        m = re.match(r"\s+codec (\S+ \d+)\s+decoder\s+(\d+)\s+encoder\s+"
                     r"(\d+)", line)
        if m:
            memory[m.group(1)] = (int(m.group(2)), int(m.group(3)))
            continue
        m = re.match(r"\s+(\d+) -> (\d+)\s+((?:\d+\+\s*\d+\s*)+)$", line)
        if m and "resampler" not in memory:
            pairs = re.findall(r"(\d+)\+\s*(\d+)", m.group(3))
            memory["resampler"] = [int(a) + int(b) for a, b in pairs]
            continue
        m = re.match(r"\s+(pcm_s16le \d+|mulaw \d+|opus \d+)\s+(.*)$", line)
        if m and table:
            values = [float(v) for v in re.findall(r"([\d.]+) us",
                                                    m.group(2))]
            if len(values) == len(names):
                costs[(table, m.group(1))] = dict(zip(names, values))
            continue
        if line.strip() == "" or line.startswith("("):
            continue
        if not line.startswith(" "):
            table = None
    return costs, memory


def us(v):
    return "%.2f" % v if v < 10 else "%.1f" % v


def cost_rows(costs, memory):
    """Per format: decode to the pipeline (16 kHz) and encode from it, at
    the default resampler (fastest) and the cheapest (linear)."""
    formats = [("pcm8k", "pcm_s16le 8000"), ("pcm16k", "pcm_s16le 16000"),
               ("pcm24k", "pcm_s16le 24000"), ("pcm48k", "pcm_s16le 48000"),
               ("mulaw", "mulaw 8000"), ("opus", "opus 48000")]
    rows = []
    for short, name in formats:
        codec = costs.get(("codec", name))
        dec = costs.get(("decode", name))
        enc = costs.get(("encode 16000", name))
        if codec is None:
            rows.append(("%s: in / out us per 20 ms frame" % short,
                         "n/a (not in audio-bench's report)", "-", None))
            continue
        # no rate change (pcm16k), or Opus that decodes at 16 kHz itself:
        # the codec alone
        d_fast = dec["fastest"] if dec else codec["decode"]
        d_lin = dec["linear"] if dec else codec["decode"]
        e_fast = enc["fastest"] if enc else codec["encode"]
        e_lin = enc["linear"] if enc else codec["encode"]
        rows.append(("%s: in / out us per 20 ms frame" % short,
                     "%s / %s (linear %s / %s)" % tuple(
                         us(v) for v in (d_fast, e_fast, d_lin, e_lin)),
                     "-", None))
    opus = memory.get("opus 48000")
    rs = memory.get("resampler")
    if opus and rs and len(rs) >= 5:
        rows.append(("heap: Opus dec / enc, resampler fast / lin",
                     "%.1f / %.1f KiB, %.1f / %.1f KiB" % (
                         opus[0] / 1024, opus[1] / 1024, rs[2] / 1024,
                         rs[4] / 1024), "-", None))
    return rows


def run_tool(path, args, timeout):
    print("  $ %s" % " ".join([os.path.relpath(path, ROOT)] + args),
          flush=True)
    try:
        proc = subprocess.run([path] + args, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure("%s did not finish in time" % os.path.basename(path))
    with open(os.path.join(PREFIX_ROOT, "costs",
                           os.path.basename(path) + ".txt"), "w") as f:
        f.write(proc.stdout)
    if proc.returncode != 0:
        raise Failure("%s exited with %d: %s" % (
            os.path.basename(path), proc.returncode,
            proc.stdout.strip().splitlines()[-1:]))
    return proc.stdout


def run_costs(letter, name, title, opts):
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    rows = []
    problems = []
    shutil.rmtree(os.path.join(PREFIX_ROOT, "costs"), ignore_errors=True)
    os.makedirs(os.path.join(PREFIX_ROOT, "costs"))

    try:
        costs, memory = parse_audio_bench(run_tool(AUDIO_BENCH, [], 300))
        rows.extend(cost_rows(costs, memory))
    except Failure as e:
        problems.append(str(e))

    try:
        text = run_tool(VAD_BENCH, [], 120)
        m = re.search(r"cost per 20 ms frame: median ([\d.]+) us, "
                      r"p99 ([\d.]+) us", text)
        mem = re.search(r"memory per instance: (\d+) bytes", text)
        rows.append(("VAD per 20 ms frame, median / p99",
                     "%s / %s us" % (m.group(1), m.group(2)) if m
                     else "n/a (not in vad-bench's report)", "-", None))
        if mem:
            rows.append(("VAD memory per instance", "%s bytes" %
                         mem.group(1), "-", None))
    except Failure as e:
        problems.append(str(e))

    print_rows(rows)
    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": None, "log": {}}


# ---- i: streaming speech-to-text against the Deepgram mock --------------

MOCK = os.path.join(ROOT, "t", "mock", "deepgram.py")
MOCK_PYTHON = "/usr/bin/python3"    # the one with python3-websockets
STT_KEY = "bench-deepgram-key"

# The scripted speech of one session: an utterance every UTTERANCE_S of
# audio, an interim Results every INTERIM_S with one word more each time,
# then the final (speech_final) of the utterance.  Every word names its
# session, utterance and place, so every message a client gets is unique
# and says whose it is.
UTTERANCE_S = 1.5
INTERIM_S = 0.15
UTTERANCE_WORDS = 6
FINAL_AT_S = 1.05
STT_TAIL_S = 1.0        # audio without scripted events before the end
WORD_RE = re.compile(r"^s(\d+)u\d+w\d+$")

PROVIDER_CONF = """# written by tools/bench.py for the @SCENARIO@ scenario
load_module @MODULE@;
daemon on;
master_process on;
worker_processes 1;
worker_rlimit_nofile @NOFILE@;
pid @PREFIX@/nginx.pid;
error_log @PREFIX@/logs/error.log notice;

events {
    worker_connections @CONNECTIONS@;
}

http {
    access_log off;
    client_body_temp_path @PREFIX@/temp/client_body;
    proxy_temp_path       @PREFIX@/temp/proxy;
    fastcgi_temp_path     @PREFIX@/temp/fastcgi;
    uwsgi_temp_path       @PREFIX@/temp/uwsgi;
    scgi_temp_path        @PREFIX@/temp/scgi;

    server {
        listen 127.0.0.1:@PORT@ backlog=4096;
        server_name localhost;

        location = /voice {
            voice;
            voice_echo_delay @DELAY_MS@ms;
        }

@LOCATION@

        location = /ready {
            return 204;
        }

        location / {
            return 404;
        }
    }
}
"""

STT_LOCATION = """        location = /dg {
            voice;
            voice_pipeline agent;
            voice_llm off;
            voice_tts off;
            voice_stt deepgram;
            voice_stt_url ws://127.0.0.1:@MOCK_PORT@/v1/listen;
            voice_stt_key file:@PREFIX@/deepgram.key;
            voice_stt_param mock_script $arg_mock_script;
            voice_stt_param mock_id $arg_mock_id;
        }"""


def stt_scripts(sessions, seconds):
    """The mock's script library: script bN for session N, with as many
    utterances as end (their final sent) within the first `seconds` of
    audio.  Callers leave a quiet tail before session.end: a session that
    ends drops what its provider says after that, by design, so a final
    racing the end would be no fault of the module's."""
    scripts = {}
    utterances = max(0, int((seconds - FINAL_AT_S) / UTTERANCE_S) + 1)
    for n in range(sessions):
        events = []
        for u in range(utterances):
            base = u * UTTERANCE_S
            words = []
            for w in range(UTTERANCE_WORDS):
                words.append("s%du%dw%d" % (n, u, w))
                events.append({"at": round(base + INTERIM_S * (w + 1), 3),
                               "type": "Results",
                               "transcript": " ".join(words)})
            events.append({"at": round(base + FINAL_AT_S, 3),
                           "type": "Results", "transcript": " ".join(words),
                           "is_final": True, "speech_final": True})
        scripts["b%d" % n] = {"events": events}
    return {"scripts": scripts}


class CpuSampler:
    """The CPU a process takes, sampled every second from /proc in a
    thread: mean over the run and the busiest second."""

    def __init__(self, pid):
        import threading
        self.pid = pid
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def ticks(self):
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf(
                "SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def run(self):
        while True:
            cpu = self.ticks()
            if cpu is not None:
                self.samples.append((time.monotonic(), cpu))
            if self.stop.wait(1.0):
                return

    def window(self, start, end):
        """(mean %, peak %) of one core between two monotonic times."""
        s = [x for x in self.samples if start <= x[0] <= end]
        if len(s) < 2:
            return None, None
        peak = max(100.0 * (b[1] - a[1]) / (b[0] - a[0])
                   for a, b in zip(s, s[1:]))
        return 100.0 * (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0]), peak

    def close(self):
        self.stop.set()
        self.thread.join()


class ProviderSetup:
    """A fresh provider mock and nginx in build/bench/<kind>/<key>/: the
    echo at /voice beside the scenario's own location."""

    def __init__(self, kind, key, mock, name, secret, key_file, scripts,
                 scenario, location):
        self.prefix = os.path.join(PREFIX_ROOT, kind, key)
        shutil.rmtree(self.prefix, ignore_errors=True)
        for sub in ("logs", "temp", "modules"):
            os.makedirs(os.path.join(self.prefix, sub))
        self.state = os.path.join(self.prefix, "mock-state")
        self.mock = None
        self.master = None
        self.cpu = None

        with open(os.path.join(self.prefix, key_file), "w") as f:
            f.write(secret + "\n")
        script_file = os.path.join(self.prefix, "scripts.json")
        with open(script_file, "w") as f:
            json.dump(scripts, f)

        self.mock_log = open(os.path.join(self.prefix, "logs", "mock.log"),
                             "wb")
        self.mock = subprocess.Popen(
            [MOCK_PYTHON, mock, "--port", "0", "--state-dir", self.state,
             "--key", secret, "--script", script_file],
            stdout=subprocess.PIPE, stderr=self.mock_log)
        ready, _, _ = select.select([self.mock.stdout], [], [], 60)
        line = self.mock.stdout.readline().split() if ready else []
        if len(line) != 2 or line[0] != b"READY":
            self.close()
            raise Failure("the %s mock did not start (see %s)" % (
                name, os.path.join(self.prefix, "logs", "mock.log")))
        self.mock_port = int(line[1])
        self.cpu = CpuSampler(self.mock.pid)

        module = os.path.join(self.prefix, "modules",
                              os.path.basename(MODULE))
        shutil.copyfile(MODULE, module)
        self.port = free_port()
        values = {"SCENARIO": scenario, "LOCATION": location,
                  "MODULE": module, "PREFIX": self.prefix,
                  "PORT": str(self.port), "MOCK_PORT": str(self.mock_port),
                  "NOFILE": str(NOFILE), "CONNECTIONS": str(CONNECTIONS),
                  "DELAY_MS": str(ECHO_DELAY_MS)}
        text = PROVIDER_CONF
        for k, v in values.items():
            text = text.replace("@%s@" % k, v)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(text)
        try:
            self.master = start_nginx(self.prefix, self.conf, self.port)
        except Failure:
            self.close()
            raise


    def url(self, path):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def wait_connections(self, count, timeout):
        """Until the mock has a record of count connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len([n for n in os.listdir(self.state)
                    if n.endswith(".json")]) >= count:
                return True
            time.sleep(0.1)
        return False

    def wait_finished(self, timeout):
        """Until every connection the mock saw is over (the provider's
        side of the closing handshakes done), so that nginx is not asked
        to quit in the middle of them.  False if some never ended."""
        deadline = time.monotonic() + timeout
        while True:
            left = 0
            for name in os.listdir(self.state):
                if name.endswith(".json"):
                    try:
                        with open(os.path.join(self.state, name)) as f:
                            left += not json.load(f)["finished"]
                    except (OSError, ValueError):
                        left += 1
            if left == 0:
                return 0
            if time.monotonic() >= deadline:
                return left
            time.sleep(0.5)

    def close(self):
        """Stops nginx, then the mock (which finishes its records);
        returns the problems."""
        problems = []
        if self.master is not None:
            left = self.wait_finished(30)
            if left:
                print("  note: %d upstream connections still open 30 s "
                      "after the sessions ended" % left)
            try:
                stop_nginx(self.prefix, self.conf, self.master)
            except Failure as e:
                problems.append(str(e))
            self.master = None
            counts, bad = scan_log(self.prefix)
            if bad:
                problems.append("error log has %d [alert]-or-worse lines, "
                                "first: %s" % (len(bad), bad[0]))
            print("  error log: %s" % (", ".join(
                "%s %d" % (k, v) for k, v in sorted(counts.items()))
                or "no lines at notice or above"))
        if self.cpu is not None:
            self.cpu.close()
        if self.mock is not None and self.mock.poll() is None:
            self.mock.terminate()
            try:
                self.mock.wait(30)
            except subprocess.TimeoutExpired:
                self.mock.kill()
                self.mock.wait()
                problems.append("the mock did not exit on SIGTERM")
        self.mock_log.close()
        return problems


class SttSetup(ProviderSetup):
    """The Deepgram mock and nginx in build/bench/stt/<key>/."""

    def __init__(self, key, opts, sessions, seconds):
        super().__init__("stt", key, MOCK, "Deepgram", STT_KEY,
                         "deepgram.key", stt_scripts(sessions, seconds),
                         "speech-to-text (i)", STT_LOCATION)

    def records(self):
        """The mock's records by mock_id."""
        out = {}
        for name in os.listdir(self.state):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(self.state, name)) as f:
                rec = json.load(f)
            mid = rec["mock_params"].get("mock_id")
            out.setdefault(mid, []).append(rec)
        return out


def start_gen(setup, name, args, path):
    """A voice-bench run in the background; its report goes to a file."""
    argv = [GENERATOR] + args + ["--json", "--nginx-pid",
                                 str(setup.master), setup.url(path)]
    print("  $ " + " ".join(os.path.relpath(a, ROOT) if a == GENERATOR
                            else a for a in argv), flush=True)
    out = open(os.path.join(setup.prefix, name + ".out"), "w")
    proc = subprocess.Popen(argv, stdout=out)
    return proc, out, name


def finish_gen(setup, run, timeout):
    proc, out, name = run
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure("voice-bench (%s) did not finish in time" % name)
    finally:
        out.close()
    result = None
    with open(os.path.join(setup.prefix, name + ".out")) as f:
        for line in f:
            if line.startswith("{"):
                result = json.loads(line)
    if proc.returncode >= 2 or result is None:
        raise Failure("voice-bench (%s) exited with %d" % (
            name, proc.returncode))
    with open(os.path.join(setup.prefix, name + ".json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    return proc.returncode, result


def quantiles(values):
    values = sorted(values)
    if not values:
        return None

    def q(p):
        return values[min(len(values) - 1, int(p * len(values)))]

    return {"n": len(values), "p50": q(0.50), "p95": q(0.95),
            "p99": q(0.99), "max": values[-1]}


def q4(h):
    if h is None:
        return "n/a"
    return "%.2f / %.2f / %.2f / %.2f" % (h["p50"], h["p95"], h["p99"],
                                          h["max"])


def transcript_check(path, records, sessions):
    """Joins what the clients got (voice-bench --transcripts) with what the
    mock sent.  Returns the latencies (ms, at kernel arrival and at read)
    per kind, and the counts: unmatched and foreign transcripts are
    functional failures (cross-session bleed), finals the mock sent before
    CloseStream that never arrived too."""
    sent = {}
    owed_finals = {}
    partials_sent = 0
    for n in range(sessions):
        mid = "b%d" % n
        owed_finals[n] = set()
        for rec in records.get(mid, []):
            close_t = min([c["t"] for c in rec["control"]
                           if c["type"] == "CloseStream"] or [1e9])
            for m in rec["sent"]:
                if m.get("type") != "Results" or not m.get("transcript"):
                    continue
                kind = "final" if m["is_final"] else "partial"
                sent[(n, kind, m["transcript"])] = m["wall"]
                if m["t"] < close_t:
                    if kind == "final":
                        owed_finals[n].add(m["transcript"])
                    else:
                        partials_sent += 1
    lat = {"partial": [], "final": []}
    lat_read = {"partial": [], "final": []}
    foreign = []
    unmatched = []
    got_finals = {n: set() for n in range(sessions)}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 5)
            if len(parts) < 6:
                unmatched.append(line.strip())
                continue
            n, arrival, read, kind = (int(parts[0]), int(parts[1]),
                                      int(parts[2]), parts[3])
            text = parts[5]
            for word in text.split():
                m = WORD_RE.match(word.strip(".,!?").lower())
                if not m or int(m.group(1)) != n:
                    foreign.append("session %d got %r" % (n, text))
                    break
            wall = sent.get((n, kind, text))
            if wall is None:
                unmatched.append("session %d: %s %r" % (n, kind, text))
                continue
            lat[kind].append((arrival / 1e9 - wall) * 1000)
            lat_read[kind].append((read / 1e9 - wall) * 1000)
            if kind == "final" and n in got_finals:
                got_finals[n].add(text)
    missing = sum(len(owed_finals[n] - got_finals[n]) for n in owed_finals)
    return {"latency": {k: quantiles(v) for k, v in lat.items()},
            "latency_read": {k: quantiles(v) for k, v in lat_read.items()},
            "partials_sent": partials_sent,
            "partials_got": len(lat["partial"]),
            "finals_owed": sum(len(v) for v in owed_finals.values()),
            "finals_missing": missing,
            "foreign": foreign, "unmatched": unmatched}


def gen_problems(label, code, r):
    """Functional failures a generator reported."""
    if not code:
        return []
    return ["%s: voice-bench reported a functional failure (%d sessions "
            "failed, %d frames lost, %d protocol errors, %d STT errors)" % (
                label, r["sessions_failed"], r["frames_lost"],
                r["protocol_errors"], r.get("stt_errors", 0))]


def mock_cpu_row(label, mean, peak):
    if mean is None:
        return (label, "n/a", "-", None)
    return (label, "%.0f%% of a core, busiest second %.0f%%" % (mean, peak),
            "< %d%%" % SATURATED_PCT, peak < SATURATED_PCT)


def run_stt(letter, name, title, opts):
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    print("  nginx (1 worker), the Deepgram mock (Python, one thread) and "
          "the generators share this %d-core machine" % (
              os.cpu_count() or 0), flush=True)
    rows = []
    problems = []
    results = {}
    n = opts.stt_sessions
    seconds = opts.stt_seconds
    query = "mock_script=b{n}&mock_id=b{n}"

    def step(label, fn):
        print("\n  -- %s" % label, flush=True)
        try:
            fn()
        except Failure as e:
            problems.append("%s: %s" % (label, e))
            print("  FAILURE: %s" % e)

    # 1. the echo alone: the reference
    echo_args = ["-n", "100", "-d", "%g" % seconds, "-r", "200"]

    def echo_alone():
        setup = SttSetup("echo-alone", opts, 0, 0)
        try:
            code, r = finish_gen(setup, start_gen(
                setup, "echo", echo_args, "/voice"), seconds + 60)
            results["echo_alone"] = r
            problems.extend(gen_problems("echo alone", code, r))
        finally:
            problems.extend(setup.close())

    # 2. the same echo while agent sessions stream to the mock
    def echo_with_stt():
        setup = SttSetup("stt%d" % n, opts, n, seconds + 4 - STT_TAIL_S)
        try:
            transcripts = os.path.join(setup.prefix, "transcripts.txt")
            listen = start_gen(setup, "listen", [
                "--listen", "-n", "%d" % n, "-d", "%g" % (seconds + 4),
                "-r", "200", "--query", query, "--transcripts",
                transcripts, "--rss-every", "1"], "/dg")
            if not setup.wait_connections(n, 30):
                raise Failure("the mock did not see %d connections" % n)
            t0 = time.monotonic()
            echo = start_gen(setup, "echo", echo_args, "/voice")
            ecode, er = finish_gen(setup, echo, seconds + 60)
            t1 = time.monotonic()
            lcode, lr = finish_gen(setup, listen, seconds + 60)
            results["echo_with_stt"] = er
            results["listen"] = lr
            results["mock_cpu"] = setup.cpu.window(t0, t1)
            problems.extend(gen_problems("echo with STT", ecode, er))
            problems.extend(gen_problems("agent sessions", lcode, lr))
        finally:
            problems.extend(setup.close())
        check = transcript_check(transcripts, setup.records(), n)
        results["transcripts"] = check
        if check["foreign"]:
            problems.append("cross-session bleed: %d transcripts with "
                            "another session's words, first: %s" % (
                                len(check["foreign"]), check["foreign"][0]))
        if check["unmatched"]:
            problems.append("%d transcripts the mock never sent on that "
                            "session's stream, first: %s" % (
                                len(check["unmatched"]),
                                check["unmatched"][0]))
        if check["finals_missing"]:
            problems.append("%d of %d finals never reached the client" % (
                check["finals_missing"], check["finals_owed"]))

    # 4. memory per agent session, and over sessions opened and closed
    def memory(sessions, interval, ramp):
        def run():
            frame = int(32 * interval)       # pcm16k: 32 bytes a ms
            setup = SttSetup("mem%d" % sessions, opts, sessions,
                             opts.stt_mem_seconds - STT_TAIL_S)
            try:
                t0 = time.monotonic()
                code, r = finish_gen(setup, start_gen(
                    setup, "listen", [
                        "--listen", "-n", "%d" % sessions,
                        "-d", "%g" % opts.stt_mem_seconds, "-r", ramp,
                        "-i", "%g" % interval, "-s", "%d" % frame,
                        "--query", query, "--rss-every", "1"], "/dg"),
                    opts.stt_mem_seconds + 90)
                results["mem%d" % sessions] = r
                results["mem%d_mock_cpu" % sessions] = setup.cpu.window(
                    t0, time.monotonic())
                problems.extend(gen_problems("memory, %d sessions" %
                                             sessions, code, r))
            finally:
                problems.extend(setup.close())
        return run

    def churn():
        setup = SttSetup("churn", opts, 0, 0)
        try:
            t0 = time.monotonic()
            code, r = finish_gen(setup, start_gen(setup, "churn", [
                "--listen", "--churn", "%d" % opts.stt_churn, "-n", "50",
                "--churn-frames", "60", "--query", "mock_script=hello",
                "--rss-every", "5"], "/dg"), 120 + opts.stt_churn / 10.0)
            results["churn"] = r
            results["churn_mock_cpu"] = setup.cpu.window(t0,
                                                         time.monotonic())
            problems.extend(gen_problems("churn", code, r))
        finally:
            problems.extend(setup.close())

    step("echo alone: 100 sessions on /voice, 20 ms frames, %g s" % seconds,
         echo_alone)
    step("the same echo while %d agent sessions stream to the mock "
         "(/dg, 20 ms frames in real time)" % n, echo_with_stt)
    step("memory: 100 agent sessions, 20 ms frames", memory(100, 20, "200"))
    step("memory: 1,000 agent sessions, %g ms frames" % opts.stt_mem_interval,
         memory(1000, opts.stt_mem_interval, "500"))
    step("%d agent sessions opened and closed, 50 at a time, 1.2 s of "
         "audio each" % opts.stt_churn, churn)

    rows.extend(stt_rows(results, n, opts))
    print()
    print_rows(rows)
    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": results, "log": {}}


def stt_rows(res, n, opts):
    rows = []
    check = res.get("transcripts")
    if check:
        rows.append(("partial latency p50/p95/p99/max ms",
                     q4(check["latency"]["partial"]), "-", None))
        rows.append(("  at the generator's read", q4(
            check["latency_read"]["partial"]), "-", None))
        rows.append(("final latency p50/p95/p99/max ms",
                     q4(check["latency"]["final"]), "-", None))
        rows.append(("  transcripts: partials got / sent, finals",
                     "%d / %d, %d of %d" % (
                         check["partials_got"], check["partials_sent"],
                         check["finals_owed"] - check["finals_missing"],
                         check["finals_owed"]),
                     "all finals", check["finals_missing"] == 0))
        rows.append(("  cross-session bleed (n=%d)" % n,
                     "%d foreign, %d unmatched" % (
                         len(check["foreign"]), len(check["unmatched"])),
                     "0", not check["foreign"] and not check["unmatched"]))
    alone = res.get("echo_alone")
    loaded = res.get("echo_with_stt")
    for label, r in (("echo RTT alone p50/p95/p99/max", alone),
                     ("echo RTT with %d STT sessions" % n, loaded)):
        if r is None:
            continue
        rows.append((label, q4(r["rtt_arrival_ms"]), "-", None))
        rows.append(("  worker CPU, generator lag p99", "%.0f%%, %.2f ms" % (
            r.get("server_cpu_pct", 0), r["lag_ms"]["p99"]), "-", None))
    lr = res.get("listen")
    if lr:
        rows.append(("  agent generator lag p99 / max, CPU",
                     "%.2f / %.2f ms, %.0f%%" % (
                         lr["lag_ms"]["p99"], lr["lag_ms"]["max"],
                         lr["gen_cpu_pct"]), "-", None))
    if res.get("mock_cpu"):
        rows.append(mock_cpu_row("  Deepgram mock CPU (n=%d)" % n,
                                 *res["mock_cpu"]))
    for key, label in (("mem100", "n=100, 20 ms frames"),
                       ("mem1000", "n=1000, %g ms frames" %
                        opts.stt_mem_interval)):
        r = res.get(key)
        if r is None:
            continue
        per = r["rss_per_session_kib"]
        anon = r["rss_anon_per_session_kib"]
        rows.append(("RSS per agent session, %s" % label,
                     "%s KiB (anon %s)" % (
                         "%.1f" % per if per is not None else "n/a",
                         "%.1f" % anon if anon is not None else "n/a"),
                     "-", None))
        rows.append(("  worker CPU while all streamed",
                     "%.0f%% of a core" % r["server_cpu_streaming_pct"]
                     if r.get("server_cpu_streaming_pct") is not None
                     else "n/a", "-", None))
        if res.get(key + "_mock_cpu"):
            rows.append(mock_cpu_row("  Deepgram mock CPU",
                                     *res[key + "_mock_cpu"]))
    r = res.get("churn")
    if r:
        kib = r["rss_kib"]
        rows.append(("churn %d: RSS before / after 10%% / after" %
                     opts.stt_churn, "%s / %s / %s KiB" % (
                         kib["before"], kib["warm"], kib["after"]),
                     "-", None))
        if kib["warm"] is not None and kib["after"] is not None:
            growth = kib["after"] - kib["warm"]
            rows.append(("  RSS growth after warm-up", "%d KiB" % growth,
                         "<= %d KiB" % CHURN_FLAT_KIB,
                         growth <= CHURN_FLAT_KIB))
        rows.append(("  sessions ok / failed, transcripts", "%d / %d, %d "
                     "partial %d final" % (
                         r["sessions_ok"], r["sessions_failed"],
                         r["transcript_partials"], r["transcript_finals"]),
                     "0 failed", r["sessions_failed"] == 0))
    return rows


# ---- j: streamed language model replies against the LLM mock ------------

LLM_MOCK = os.path.join(ROOT, "t", "mock", "llm.py")
LLM_KEY = "bench-llm-key"
LLM_TEXT = "mock:bench s{n}t{t}"
TAG_RE = re.compile(r"s(\d+)t(\d+)")

# 40 tokens (the mock cuts at word starts), the session and turn three
# times: a reply that went to the wrong session says so.
LLM_SCRIPT = {
    "text": "Here is the answer for {user}, one word at a time so that "
            "every piece can be checked. The first half is done for "
            "{user}; the rest follows at the same pace, and all of it is "
            "for {user} alone.",
    "ttft": 0.05,
    "rate": 50,
}

LLM_LOCATION = """        location = /llm {
            voice;
            voice_pipeline agent;
            voice_stt off;
            voice_tts off;
            voice_llm openai;
            voice_llm_url http://127.0.0.1:@MOCK_PORT@/v1/chat/completions;
            voice_llm_model gpt-bench;
            voice_llm_key file:@PREFIX@/llm.key;
        }"""


class LlmSetup(ProviderSetup):
    """The LLM mock and nginx in build/bench/llm/<key>/."""

    def __init__(self, key, opts):
        super().__init__("llm", key, LLM_MOCK, "LLM", LLM_KEY, "llm.key",
                         {"scripts": {"bench": LLM_SCRIPT}},
                         "language model (j)", LLM_LOCATION)

    def records(self):
        """The mock's request records."""
        out = []
        for name in os.listdir(self.state):
            if name.startswith("request-") and name.endswith(".json"):
                with open(os.path.join(self.state, name)) as f:
                    out.append(json.load(f))
        return out


def turn_check(path, records):
    """Joins the replies the clients got (voice-bench --turns) with what
    the mock sent for each session's turn.  Returns the first-token
    latencies (ms, at kernel arrival and at read) and the problems: a
    reply naming another session or turn (foreign), or one that is not
    what the mock sent for that turn (unmatched)."""
    sent = {}
    gaps = []
    for rec in records:
        m = TAG_RE.search(rec.get("user_text") or "")
        texts = [e for e in rec["sent"] if e["kind"] == "text"]
        if not m or not texts:
            continue
        gaps.extend((b["wall"] - a["wall"]) * 1000
                    for a, b in zip(texts, texts[1:]))
        sent[(int(m.group(1)), int(m.group(2)))] = (
            texts[0]["wall"], "".join(e["text"] for e in texts))
    lat = []
    lat_read = []
    foreign = []
    unmatched = []
    replies = 0
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 6)
            if len(parts) < 7:
                unmatched.append(line.strip())
                continue
            replies += 1
            n, t = int(parts[0]), int(parts[1])
            first, first_read = int(parts[3]), int(parts[4])
            text = parts[6]
            tags = set((int(a), int(b)) for a, b in TAG_RE.findall(text))
            if tags != {(n, t)}:
                foreign.append("session %d turn %d got %r" % (n, t, text))
                continue
            mock = sent.get((n, t))
            if mock is None or mock[1] != text:
                unmatched.append("session %d turn %d: %r" % (n, t, text))
                continue
            lat.append((first / 1e9 - mock[0]) * 1000)
            lat_read.append((first_read / 1e9 - mock[0]) * 1000)
    return {"replies": replies, "latency": quantiles(lat),
            "mock_token_gap": quantiles(gaps),
            "latency_read": quantiles(lat_read), "foreign": foreign,
            "unmatched": unmatched}


def llm_problems(label, code, r):
    if not code:
        return []
    return ["%s: voice-bench reported a functional failure (%d sessions "
            "failed, %d protocol errors)" % (
                label, r["sessions_failed"], r["protocol_errors"])]


def run_llm(letter, name, title, opts):
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    print("  nginx (1 worker), the LLM mock (Python, one thread) and the "
          "generators share this %d-core machine" % (
              os.cpu_count() or 0), flush=True)
    rows = []
    problems = []
    results = {}
    n = opts.llm_sessions
    seconds = opts.llm_seconds

    def step(label, fn):
        print("\n  -- %s" % label, flush=True)
        try:
            fn()
        except Failure as e:
            problems.append("%s: %s" % (label, e))
            print("  FAILURE: %s" % e)

    echo_args = ["-n", "100", "-d", "%g" % seconds, "-r", "200"]

    def echo_alone():
        setup = LlmSetup("echo-alone", opts)
        try:
            code, r = finish_gen(setup, start_gen(
                setup, "echo", echo_args, "/voice"), seconds + 60)
            results["echo_alone"] = r
            problems.extend(llm_problems("echo alone", code, r))
        finally:
            problems.extend(setup.close())

    def echo_with_llm():
        setup = LlmSetup("llm%d" % n, opts)
        try:
            turns = os.path.join(setup.prefix, "turns.txt")
            # the replies run a little longer than the echo on each side
            talk = start_gen(setup, "turns", [
                "--text-turns", "0", "--text", LLM_TEXT,
                "-n", "%d" % n, "-d", "%g" % (seconds + 4), "-r", "200",
                "--turns", turns, "--rss-every", "1"], "/llm")
            if not setup.wait_connections(n, 30):
                raise Failure("the mock did not see %d requests" % n)
            t0 = time.monotonic()
            echo = start_gen(setup, "echo", echo_args, "/voice")
            ecode, er = finish_gen(setup, echo, seconds + 60)
            t1 = time.monotonic()
            tcode, tr = finish_gen(setup, talk, seconds + 90)
            results["echo_with_llm"] = er
            results["turns"] = tr
            results["mock_cpu"] = setup.cpu.window(t0, t1)
            problems.extend(llm_problems("echo with LLM", ecode, er))
            problems.extend(llm_problems("agent sessions", tcode, tr))
        finally:
            problems.extend(setup.close())
        check = turn_check(turns, setup.records())
        results["check"] = check
        if check["foreign"]:
            problems.append("cross-session bleed: %d replies naming another "
                            "session or turn, first: %s" % (
                                len(check["foreign"]), check["foreign"][0]))
        if check["unmatched"]:
            problems.append("%d replies that are not what the mock sent for "
                            "that turn, first: %s" % (
                                len(check["unmatched"]),
                                check["unmatched"][0]))
        if check["replies"] == 0:
            problems.append("no reply reached the clients")

    def memory(sessions, hold, ramp):
        def run():
            setup = LlmSetup("mem%d" % sessions, opts)
            try:
                t0 = time.monotonic()
                code, r = finish_gen(setup, start_gen(setup, "turns", [
                    "--text-turns", "1", "--text", LLM_TEXT,
                    "-n", "%d" % sessions, "-d", "%g" % hold, "-r", ramp,
                    "--rss-every", "1"], "/llm"), hold + 90)
                results["mem%d" % sessions] = r
                results["mem%d_mock_cpu" % sessions] = setup.cpu.window(
                    t0, time.monotonic())
                problems.extend(llm_problems("memory, %d sessions" %
                                             sessions, code, r))
            finally:
                problems.extend(setup.close())
        return run

    def churn():
        setup = LlmSetup("churn", opts)
        try:
            t0 = time.monotonic()
            code, r = finish_gen(setup, start_gen(setup, "churn", [
                "--text-turns", "1", "--text", LLM_TEXT, "-d", "0",
                "--churn", "%d" % opts.llm_churn, "-n", "50",
                "--rss-every", "5"], "/llm"), 120 + opts.llm_churn / 10.0)
            results["churn"] = r
            results["churn_mock_cpu"] = setup.cpu.window(t0,
                                                         time.monotonic())
            problems.extend(llm_problems("churn", code, r))
        finally:
            problems.extend(setup.close())

    step("echo alone: 100 sessions on /voice, 20 ms frames, %g s" % seconds,
         echo_alone)
    step("the same echo while %d agent sessions take text turns back to "
         "back (/llm, 40 tokens at 50/s each)" % n, echo_with_llm)
    step("memory: 100 agent sessions, one turn each, held 8 s",
         memory(100, 8, "200"))
    step("memory: 1,000 agent sessions, one turn each, held 10 s",
         memory(1000, 10, "500"))
    step("%d agent sessions opened, one turn each, and closed, 50 at a "
         "time" % opts.llm_churn, churn)

    rows.extend(llm_rows(results, n, opts))
    print()
    print_rows(rows)
    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": results, "log": {}}


def llm_rows(res, n, opts):
    rows = []
    check = res.get("check")
    tr = res.get("turns")
    if check:
        rows.append(("first token p50/p95/p99/max ms",
                     q4(check["latency"]), "-", None))
        rows.append(("  at the generator's read", q4(check["latency_read"]),
                     "-", None))
    if tr:
        rows.append(("  text.input -> first delta (ttft 50 ms)",
                     q4(tr["first_delta_ms"]) if tr["first_delta_ms"]["n"]
                     else "n/a", "-", None))
        rows.append(("  text.input -> text.done (40 tokens)",
                     q4(tr["reply_ms"]) if tr["reply_ms"]["n"] else "n/a",
                     "-", None))
    if check:
        # what the mock really kept to: a busy mock paces slower than 50/s
        rows.append(("  the mock's gap between tokens ms",
                     q4(check["mock_token_gap"]), "script 20", None))
    if check:
        rows.append(("  replies, deltas (n=%d)" % n, "%d, %d" % (
            check["replies"], tr["deltas"] if tr else 0), "-", None))
        rows.append(("  cross-session bleed", "%d foreign, %d unmatched" % (
            len(check["foreign"]), len(check["unmatched"])), "0",
            not check["foreign"] and not check["unmatched"]))
    alone = res.get("echo_alone")
    loaded = res.get("echo_with_llm")
    for label, r in (("echo RTT alone p50/p95/p99/max", alone),
                     ("echo RTT with %d LLM sessions" % n, loaded)):
        if r is None:
            continue
        rows.append((label, q4(r["rtt_arrival_ms"]), "-", None))
        rows.append(("  worker CPU, generator lag p99", "%.0f%%, %.2f ms" % (
            r.get("server_cpu_pct", 0), r["lag_ms"]["p99"]), "-", None))
    if res.get("mock_cpu"):
        rows.append(mock_cpu_row("  LLM mock CPU (n=%d)" % n,
                                 *res["mock_cpu"]))
    for key, label in (("mem100", "n=100"), ("mem1000", "n=1000")):
        r = res.get(key)
        if r is None:
            continue
        per = r["rss_per_session_kib"]
        anon = r["rss_anon_per_session_kib"]
        rows.append(("RSS per agent session, one turn, %s" % label,
                     "%s KiB (anon %s)" % (
                         "%.1f" % per if per is not None else "n/a",
                         "%.1f" % anon if anon is not None else "n/a"),
                     "-", None))
        kib = r["rss_kib"]
        rows.append(("  RSS before / peak / after KiB", "%s / %s / %s" % (
            kib["before"], kib["peak"], kib["after"]), "-", None))
        if res.get(key + "_mock_cpu"):
            rows.append(mock_cpu_row("  LLM mock CPU",
                                     *res[key + "_mock_cpu"]))
    r = res.get("churn")
    if r:
        kib = r["rss_kib"]
        rows.append(("churn %d: RSS before / after 10%% / after" %
                     opts.llm_churn, "%s / %s / %s KiB" % (
                         kib["before"], kib["warm"], kib["after"]),
                     "-", None))
        if kib["warm"] is not None and kib["after"] is not None:
            growth = kib["after"] - kib["warm"]
            rows.append(("  RSS growth after warm-up", "%d KiB" % growth,
                         "<= %d KiB" % CHURN_FLAT_KIB,
                         growth <= CHURN_FLAT_KIB))
        anon = r["rss_anon_kib"]
        if anon["warm"] is not None and anon["after"] is not None:
            rows.append(("  of it anonymous (heap) memory", "%d KiB" % (
                anon["after"] - anon["warm"]), "-", None))
        rows.append(("  sessions ok / failed, replies", "%d / %d, %d" % (
            r["sessions_ok"], r["sessions_failed"], r["turns_done"]),
            "0 failed", r["sessions_failed"] == 0))
    return rows


# ---- k: speech (TTS) ----------------------------------------------------

TTS_MOCK = os.path.join(ROOT, "t", "mock", "tts.py")
TTS_KEY = "bench-tts-key"
TTS_LOCATION = """        location = /tts {
            voice;
            voice_pipeline agent;
            voice_stt off;
            voice_vad_events on;
            voice_llm openai;
            voice_llm_url http://127.0.0.1:@LLM_PORT@/v1/chat/completions;
            voice_llm_model gpt-bench;
            voice_llm_key file:@PREFIX@/tts.key;
            voice_tts cartesia;
            voice_tts_url ws://127.0.0.1:@MOCK_PORT@/tts/websocket;
            voice_tts_key file:@PREFIX@/tts.key;
            voice_tts_voice bench-voice;
        }"""
# each reply says its session's tag, then sentences long enough to be
# interrupted; the TTS mock's default script is five times real time
TTS_SENTENCES = ("The first thing to know is where we start today. "
                 "After that we walk along the river to the old bridge. "
                 "The bridge was built a long time ago by the town. "
                 "On the far side there is a small market with fruit.")


class TtsSetup(ProviderSetup):
    """The TTS mock (Cartesia) and the LLM mock, and nginx, in
    build/bench/tts/<key>/."""

    def __init__(self, key, opts):
        self.llm_log = open(os.devnull, "wb")
        self.llm_state = os.path.join(PREFIX_ROOT, "tts", key + "-llm")
        shutil.rmtree(self.llm_state, ignore_errors=True)
        lib = os.path.join(PREFIX_ROOT, "tts", key + "-llm.json")
        os.makedirs(os.path.dirname(lib), exist_ok=True)
        with open(lib, "w") as f:
            json.dump({"scripts": {"say": {"text": "{user}.", "ttft": 0.01,
                                           "rate": 200}}}, f)
        self.llm = subprocess.Popen(
            [MOCK_PYTHON, LLM_MOCK, "--port", "0", "--state-dir",
             self.llm_state, "--key", TTS_KEY, "--script", lib],
            stdout=subprocess.PIPE, stderr=self.llm_log)
        ready, _, _ = select.select([self.llm.stdout], [], [], 60)
        line = self.llm.stdout.readline().split() if ready else []
        if len(line) != 2 or line[0] != b"READY":
            self.llm.kill()
            raise Failure("the LLM mock did not start")
        location = TTS_LOCATION.replace("@LLM_PORT@", line[1].decode())
        try:
            super().__init__("tts", key, TTS_MOCK, "TTS", TTS_KEY,
                             "tts.key", {"scripts": {}}, "speech (k)",
                             location)
        except Failure:
            self.llm.kill()
            raise

    def close(self):
        problems = super().close()
        self.llm.terminate()
        try:
            self.llm.wait(30)
        except subprocess.TimeoutExpired:
            self.llm.kill()
        self.llm_log.close()
        return problems

    def cancels(self):
        """{tag: cancel wall time} from the TTS mock's records."""
        out = {}
        for name in os.listdir(self.state):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(self.state, name)) as f:
                rec = json.load(f)
            ctx_tag = {}
            for p in rec.get("phrases", []):
                m = re.match(r"\s*(k\d+)\.", p["text"])
                if m:
                    ctx_tag[p["context"]] = m.group(1)
            for c in rec.get("cancels", []):
                if c["context"] in ctx_tag:
                    out[ctx_tag[c["context"]]] = c["wall"]
        return out


def _voiced_pcm(seconds, f0=130.0):
    """A buzz with a voice's harmonics, loudness wobbling at 4 Hz: what
    the module's detector takes for speech (16 kHz s16le)."""
    import math
    import struct
    out = []
    for i in range(int(16000 * seconds)):
        t = i / 16000.0
        env = 0.6 + 0.4 * math.sin(2 * math.pi * 4 * t)
        v = sum(math.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 12))
        out.append(int(3000 * env * v) + (i * 7919 % 61) - 30)
    return struct.pack("<%dh" % len(out), *out)


def _tone_of(frames):
    """The frequency of s16le audio by its rising zero crossings."""
    import array
    a = array.array("h")
    a.frombytes(b"".join(frames))
    c = [i for i in range(1, len(a)) if a[i - 1] < 0 <= a[i]]
    if len(c) < 3:
        return None
    return 16000.0 * (len(c) - 1) / (c[-1] - c[0])


async def _tts_session(url, n, voiced, quiet, out):
    """One client: streams 20 ms frames in real time (quiet, then the
    buzz once 1.5 s of the reply has arrived), says one turn, records
    what it got."""
    import asyncio
    import websockets
    rec = {"n": n, "frames": [], "events": [], "error": None}
    out.append(rec)
    tag = "k%d" % n
    try:
        ws = await websockets.connect(url, subprotocols=["voice.v1"],
                                      ping_interval=None, max_size=None,
                                      open_timeout=60)
    except Exception as e:
        rec["error"] = "connect: %s" % e
        return
    state = {"speak": False, "stop": False}

    async def mic():
        start = time.monotonic()
        i = v = 0
        while not state["stop"]:
            if state["speak"]:
                frame = voiced[v:v + 640]
                v = (v + 640) % len(voiced)
                if "voice_sent" not in rec:
                    rec["voice_sent"] = time.time()
            else:
                frame = quiet
            try:
                await ws.send(frame)
            except Exception:
                return
            i += 1
            await asyncio.sleep(max(0.0, start + i * 0.02
                                    - time.monotonic()))

    try:
        await ws.send(json.dumps({"type": "session.start"}))
        m = json.loads(await ws.recv())
        if m.get("type") != "session.started":
            rec["error"] = "no session.started: %r" % m
            return
        sender = asyncio.ensure_future(mic())
        rec["asked"] = time.time()
        await ws.send(json.dumps({
            "type": "text.input",
            "text": "mock:say %s. %s" % (tag, TTS_SENTENCES)}))
        audio = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(ws.recv(), 30)
            now = time.time()
            if isinstance(msg, bytes):
                rec["frames"].append((now, msg))
                audio += len(msg)
                if audio >= 48000 and not state["speak"]:
                    state["speak"] = True
                continue
            m = json.loads(msg)
            rec["events"].append((now, m))
            if m["type"] == "state" and m["state"] == "listening" \
                    and any(e["type"] == "response.interrupted"
                            or e["type"] == "response.audio.done"
                            for _, e in rec["events"]):
                break
        state["stop"] = True
        await sender
        await ws.close()
    except Exception as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
        try:
            await ws.close()
        except Exception:
            pass


def _tts_figures(out, cancels):
    first, stop, gaps, under, bleed, cancel_lag, bad = [], [], [], 0, [], [], []
    for r in out:
        if r["error"]:
            bad.append("session %d: %s" % (r["n"], r["error"]))
            continue
        ev = r["events"]
        frames = r["frames"]
        intr = [t for t, m in ev if m["type"] == "response.interrupted"]
        started = [t for t, m in ev if m["type"] == "speech.started"]
        if not frames:
            bad.append("session %d: no audio" % r["n"])
            continue
        first.append((frames[0][0] - r["asked"]) * 1000)
        if not intr:
            bad.append("session %d: not interrupted" % r["n"])
            continue
        before = [t for t, _ in frames if t <= intr[0]]
        after = [t for t, _ in frames if t > intr[0]]
        if after:
            bad.append("session %d: %d frames after response.interrupted"
                       % (r["n"], len(after)))
        if started and before:
            stop.append(max(0.0, (before[-1] - started[0]) * 1000))
        ts = [t for t, _ in frames if t <= intr[0]]
        for a, b in zip(ts, ts[1:]):
            gaps.append((b - a) * 1000)
            if b - a > 0.020 + 0.015:
                under += 1
        f = _tone_of([d for _, d in frames[:10]])
        # the first phrase is "kN." alone: its tone is the mock's phrase 0
        # or 1 of that session's connection, never checked across sessions
        # by frequency alone; bleed is audio after a foreign tag's end
        if f is None:
            bleed.append("session %d: no tone in its first audio" % r["n"])
        tag = "k%d" % r["n"]
        if tag in cancels:
            cancel_lag.append((cancels[tag] - intr[0]) * 1000)
    return {"first": quantiles(first), "stop": quantiles(stop),
            "stop_max": max(stop) if stop else None,
            "gaps": quantiles(gaps), "underruns": under, "bleed": bleed,
            "cancel_lag": quantiles(cancel_lag), "bad": bad,
            "cancels": len(cancel_lag)}


def run_tts(letter, name, title, opts):
    import asyncio
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    print("  client: Python asyncio inside bench.py (not voice-bench)",
          flush=True)
    rows = []
    problems = []
    n = opts.tts_sessions
    setup = TtsSetup("tts%d" % n, opts)
    out = []
    try:
        wpid = None
        with open("/proc/%d/task/%d/children" % (setup.master,
                                                 setup.master)) as f:
            kids = f.read().split()
        wpid = int(kids[0]) if kids else None
        wcpu = CpuSampler(wpid) if wpid else None

        def rss():
            try:
                with open("/proc/%d/status" % wpid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            return int(line.split()[1])
            except (OSError, TypeError):
                return None
        rss0 = rss()
        voiced = _voiced_pcm(2.0)
        quiet = bytes(640)
        url = setup.url("/tts")

        async def main():
            peak = [rss0 or 0]

            async def watch():
                while True:
                    peak[0] = max(peak[0], rss() or 0)
                    await asyncio.sleep(0.5)
            w = asyncio.ensure_future(watch())
            await asyncio.gather(*[_tts_session(url, i, voiced, quiet, out)
                                   for i in range(n)])
            w.cancel()
            return peak[0]
        t0 = time.monotonic()
        peak = asyncio.run(main())
        t1 = time.monotonic()
        wmean = wcpu.window(t0, t1) if wcpu else (None, None)
        if wcpu:
            wcpu.close()
        cancels = setup.cancels()
    finally:
        problems.extend(setup.close())
    fig = _tts_figures(out, cancels)
    rows.append(("first audio (text.input -> frame) p50/p95/p99 ms",
                 "%s/%s/%s" % tuple(_fmt(fig["first"], k)
                                    for k in (0.5, 0.95, 0.99)), "-", None))
    met = fig["stop_max"] is not None and fig["stop"] \
        and fig["stop"]["p99"] <= 20
    rows.append(("speech.started -> last frame p50/p99/max ms",
                 "%s/%s/%s" % (_fmt(fig["stop"], 0.5), _fmt(fig["stop"], 0.99),
                               "-" if fig["stop_max"] is None
                               else "%.1f" % fig["stop_max"]),
                 "<= 20", bool(met)))
    rows.append(("frame gap p50/p99 ms, underruns (> 35 ms)",
                 "%s/%s, %d" % (_fmt(fig["gaps"], 0.5), _fmt(fig["gaps"], 0.99),
                                fig["underruns"]), "20, 0",
                 fig["underruns"] == 0))
    rows.append(("cancel seen by the mock after interrupted p50/p99 ms",
                 "%s/%s (%d)" % (_fmt(fig["cancel_lag"], 0.5),
                                 _fmt(fig["cancel_lag"], 0.99),
                                 fig["cancels"]), "-", None))
    if rss0 and peak:
        rows.append(("worker RSS growth per session KiB",
                     "%.0f" % ((peak - rss0) / float(n)), "-", None))
    if wmean and wmean[0] is not None:
        rows.append(("worker CPU mean/peak % per session",
                     "%.3f/%.3f" % (wmean[0] / n, wmean[1] / n), "-", None))
    problems.extend(fig["bad"][:5])
    if len(fig["bad"]) > 5:
        problems.append("... %d more session problems" % (len(fig["bad"]) - 5))
    problems.extend(fig["bleed"][:3])
    print()
    print_rows(rows)
    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": fig, "log": {}}


def _fmt(q, p):
    return "-" if not q else "%.1f" % q["p%d" % round(p * 100)]


RUNNERS = {"codecs": run_codecs, "pacing": run_pacing, "costs": run_costs,
           "stt": run_stt, "llm": run_llm,
           "tts": run_tts}


def print_table(outcomes):
    print("\nsummary (goals are targets; only FAILURE lines fail the run)")
    print("%-11s %-44s %-36s %-14s %s" % ("scenario", "figure", "measured",
                                          "goal", ""))
    print("-" * 116)
    for o in outcomes:
        label = "%s %s" % (o["letter"], o["name"])
        for figure, measured, goal, met in o["rows"]:
            print("%-11s %-44s %-36s %-14s %s" % (
                label, figure, measured, goal,
                "" if met is None else ("met" if met else "MISSED")))
            label = ""
        for p in o["problems"]:
            print("%-11s FAILURE: %s" % (label, p))
            label = ""


# the options of the scenarios: name, type, default, what; each may also
# come from the environment as BENCH_<NAME>
OPTIONS = [
    ("seconds", float, 30, "duration of a and b"),
    ("soak-seconds", float, 600, "duration of c"),
    ("churn", int, 10000, "sessions of e"),
    ("workers", int, 1, "nginx worker_processes"),
    ("codec-seconds", float, 20, "streaming time of each run of f"),
    ("codec-sessions", int, 500, "sessions of each run of f"),
    ("codec-budget", float, 70,
     "percent of one core the sessions of a run of f may need; 0: no cap"),
    ("pacing-seconds", float, 20, "streaming time of each run of g"),
    ("stt-seconds", float, 20, "streaming time of the RTT runs of i"),
    ("stt-sessions", int, 100, "agent sessions beside the echo in i"),
    ("stt-mem-seconds", float, 10, "streaming time of the memory runs of i"),
    ("stt-mem-interval", float, 200,
     "ms of audio per frame of the 1,000-session memory run of i"),
    ("stt-churn", int, 1000, "agent sessions opened and closed in i"),
    ("llm-seconds", float, 20, "duration of the RTT runs of j"),
    ("llm-sessions", int, 100, "agent sessions beside the echo in j"),
    ("llm-churn", int, 1000, "agent sessions opened and closed in j"),
    ("tts-sessions", int, 100, "speaking sessions of k"),
]


def parse_options(argv):
    parser = argparse.ArgumentParser(
        description="the standard load scenarios (see the file's header)")
    parser.add_argument("scenarios", nargs="*",
                        help="letters or names: a b c d e f g h i j k, "
                             "rtt100 rtt1000 soak mem churn codecs pacing "
                             "costs stt llm tts "
                             "(default: all)")
    for name, kind, default, what in OPTIONS:
        env = "BENCH_" + name.upper().replace("-", "_")
        parser.add_argument("--" + name, type=kind,
                            default=kind(env_number(env, default)),
                            help="%s (%s, %s)" % (what, env, default))
    opts = parser.parse_args(argv)

    chosen = []
    for wanted in opts.scenarios or [s[0] for s in SCENARIOS]:
        for s in SCENARIOS:
            if wanted in (s[0], s[1]):
                if s not in chosen:
                    chosen.append(s)
                break
        else:
            parser.error("unknown scenario %r" % wanted)
    # always in the documented order
    opts.chosen = [s for s in SCENARIOS if s in chosen]
    return opts


def main(argv):
    opts = parse_options(argv)

    need = [GENERATOR]
    if any(s[1] != "costs" for s in opts.chosen):
        need.append(MODULE)
    if any(s[1] == "costs" for s in opts.chosen):
        need += [AUDIO_BENCH, VAD_BENCH]
    for path in need:
        if not os.path.exists(path):
            sys.exit("bench.py: %s is missing (make all)" % path)

    # Each session is a descriptor on both sides; children inherit this.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 1100:
        print("bench.py: warning: ulimit -n is %d; 1,000 sessions need "
              "more" % hard)

    print("nginx %s, %d worker%s, echo delay %d ms, generator on the same "
          "%d-core machine" % (NGINX, opts.workers,
                               "" if opts.workers == 1 else "s",
                               ECHO_DELAY_MS, os.cpu_count() or 0))

    outcomes = []
    for letter, name, title in opts.chosen:
        try:
            runner = RUNNERS.get(name)
            if runner:
                outcomes.append(runner(letter, name, title, opts))
            else:
                outcomes.append(run_scenario(letter, name, title, opts))
        except Failure as e:
            print("  FAILURE: %s" % e)
            outcomes.append({"letter": letter, "name": name, "rows": [],
                             "problems": [str(e)], "result": None,
                             "log": {}})

    print_table(outcomes)

    failed = [o["name"] for o in outcomes if o["problems"]]
    if failed:
        print("\nbench: functional failure in %s" % ", ".join(failed))
        return 1
    print("\nbench: no functional failure")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
