#!/usr/bin/python3
"""End-to-end tests of voice-client against the agent of conf/nginx.conf.

nginx runs from a temporary prefix under build/cli on a free port; speech
is generated with espeak-ng, the voice the embedded recognizer knows best.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
CLIENT = os.path.join(BUILD, "voice-client")
MODULE = os.path.join(BUILD, "ngx_http_voice_module.so")
NGINX = "/usr/sbin/nginx"

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print("ok   %s" % name)
    else:
        results["failed"] += 1
        print("FAIL %s %s" % (name, detail))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nginx(prefix, port):
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    with open(os.path.join(ROOT, "conf", "nginx.conf")) as f:
        conf = f.read()
    conf = (conf.replace("@MODULE@", MODULE).replace("@ROOT@", ROOT)
            .replace("127.0.0.1:8080", "127.0.0.1:%d" % port))
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    subprocess.run([NGINX, "-p", prefix + "/", "-c", path], check=True)
    # nginx daemonizes once it listens; connect to confirm it answers
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.close()
    return path


def stop_nginx(prefix, path):
    subprocess.run([NGINX, "-p", prefix + "/", "-c", path, "-s", "quit"])
    pidfile = os.path.join(prefix, "logs", "nginx.pid")
    deadline = time.monotonic() + 10
    while os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)


def speak(text, path):
    subprocess.run(["espeak-ng", "-v", "en-us+klatt", "-s", "175",
                    "-w", path, text], check=True)


def client(url, *args, timeout=120):
    p = subprocess.run([CLIENT] + list(args) + [url], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def words(s):
    return re.findall(r"[a-z']+", s.lower())


def wer(ref, hyp):
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1,
                      prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / max(1, len(r))


def turns(out):
    """The summary's per-turn lines as dicts."""
    res = []
    for m in re.finditer(r"^turn (\d+): (.*)$", out, re.M):
        t = {}
        for k, v in re.findall(r"(\w+)=(\S+)", m.group(2)):
            t[k] = v
        res.append(t)
    return res


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[i]


def wav_stats(path):
    import wave
    import array
    with wave.open(path) as w:
        n = w.getnframes()
        rate = w.getframerate()
        a = array.array("h", w.readframes(n))
    peak = max((abs(x) for x in a), default=0)
    return n / rate, peak


def main():
    os.makedirs(os.path.join(BUILD, "cli"), exist_ok=True)
    prefix = tempfile.mkdtemp(prefix="run.", dir=os.path.join(BUILD, "cli"))
    port = free_port()
    conf = start_nginx(prefix, port)
    url = "ws://127.0.0.1:%d/voice" % port

    try:
        run_tests(prefix, url)
    finally:
        stop_nginx(prefix, conf)

    with open(os.path.join(prefix, "logs", "error.log")) as f:
        log = f.read()
    check("no [alert] in the error log", "[alert]" not in log,
          "\n".join(l for l in log.splitlines() if "[alert]" in l))

    print("cli: %d passed, %d failed"
          % (results["passed"], results["failed"]))
    if results["failed"] == 0:
        shutil.rmtree(prefix, ignore_errors=True)
    return 1 if results["failed"] else 0


def run_tests(prefix, url):
    said1 = "What is the weather like in Paris today"
    said2 = "Stop please tell me a joke instead"
    w1 = os.path.join(prefix, "said1.wav")
    w2 = os.path.join(prefix, "said2.wav")
    out = os.path.join(prefix, "out.wav")
    speak(said1, w1)
    speak(said2, w2)

    # (a) one spoken turn
    rc, so, se = client(url, "-i", w1, "-o", out)
    check("spoken turn: exit 0", rc == 0, se)
    m = re.search(r"transcript\.final: (.*)$", so, re.M)
    heard = m.group(1) if m else ""
    e = wer(said1, heard)
    print("     said:  %s\n     heard: %s\n     word error rate: %.0f%%"
          % (said1, heard, e * 100))
    check("spoken turn: word error rate < 60%", m is not None and e < 0.6)
    check("spoken turn: the reply was heard",
          "response.audio.done" in so)
    try:
        dur, peak = wav_stats(out)
    except Exception as ex:
        dur, peak = 0, 0
        print("     %s: %s" % (out, ex))
    print("     reply audio: %.2f s, peak %d" % (dur, peak))
    check("spoken turn: -o WAV longer than 1 s and not silent",
          dur > 1.0 and peak > 1000)

    # (b) two text turns, both spoken
    rc, so, se = client(url, "-t", "hello there", "-t", "tell me a story")
    check("text turns: exit 0", rc == 0, se)
    ts = turns(so)
    check("text turns: two replies, each with audio",
          len(ts) == 2 and all(t.get("client_first_audio_ms", "-") != "-"
                               for t in ts)
          and so.count("response.audio.done") == 2, so[-2000:])

    # (c) barge-in
    rc, so, se = client(url, "-i", w1, "--interrupt", "1.0", "-I", w2)
    check("barge-in: exit 0", rc == 0, se)
    check("barge-in: response.interrupted with reason barge_in",
          "response.interrupted reason=barge_in" in so, so[-2000:])
    ts = turns(so)
    check("barge-in: the second utterance got a reply",
          len(ts) == 2 and ts[1].get("client_first_audio_ms", "-") != "-")

    # (d) 20 spoken turns: 10 sessions of 2 turns
    v2v, stage = [], {k: [] for k in ("stt_final_ms", "llm_first_token_ms",
                                      "tts_first_audio_ms",
                                      "voice_to_voice_ms")}
    bad = 0
    for i in range(10):
        # the second turn is spoken once the first reply was heard
        rc, so, se = client(url, "-i", w1, "-i", w2, timeout=120)
        ts = turns(so)
        if rc != 0 or len(ts) != 2:
            bad += 1
            print("     session %d: rc=%d %s" % (i + 1, rc, se.strip()))
        for t in ts:
            if t.get("client_first_audio_ms", "-") != "-":
                v2v.append(float(t["client_first_audio_ms"]))
            for k in stage:
                if t.get(k, "-") != "-":
                    stage[k].append(float(t[k]))
    check("20 spoken turns: all sessions ended well", bad == 0)
    check("20 spoken turns: 20 replies measured", len(v2v) == 20,
          "got %d" % len(v2v))
    print("figures: voice-to-voice (client, end of sent speech -> first "
          "audio) p50 %.0f ms, p95 %.0f ms over %d turns"
          % (pct(v2v, 0.5), pct(v2v, 0.95), len(v2v)))
    print("figures: server stages p50/p95 ms: " + ", ".join(
        "%s %.0f/%.0f" % (k, pct(v, 0.5), pct(v, 0.95))
        for k, v in stage.items()))
    print("figures: (stt_final_ms includes the 700 ms of silence the "
          "detector waits, voice_vad_silence; the client's figure counts "
          "from the end of the WAV, whose trailing silence is part of it)")


if __name__ == "__main__":
    sys.exit(main())
