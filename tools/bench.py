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

usage: bench.py [--seconds S] [--soak-seconds S] [--churn N] [--workers N]
                [scenario ...]

Scenarios are named by letter or name (default: all, in order).  The same
settings can come from the environment: BENCH_SECONDS (a and b, default
30), BENCH_SOAK_SECONDS (c, default 600), BENCH_CHURN (e, default 10000),
BENCH_WORKERS (default 1).

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
TEMPLATE = os.path.join(ROOT, "conf", "bench.conf")
PREFIX_ROOT = os.path.join(BUILD, "bench")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")

ECHO_DELAY_MS = 500
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


# ---- scenarios ----------------------------------------------------------

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
    # a sample: [seconds, VmRSS KiB, sessions streaming, anonymous KiB]
    values = [sample[1] for sample in samples
              if sample[0] >= after_s and sample[2] > 0]
    if len(values) < 2:
        return None
    return max(values) - min(values)


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

def run_generator(name, opts, port, master):
    args = [GENERATOR] + scenario_args(name, opts) + [
        "--json", "--nginx-pid", str(master),
        "ws://127.0.0.1:%d/voice" % port]
    print("  $ " + " ".join(os.path.relpath(a, ROOT) if a == GENERATOR
                            else a for a in args), flush=True)
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, text=True,
                              timeout=scenario_timeout(name, opts))
    except subprocess.TimeoutExpired:
        raise Failure("voice-bench did not finish in time")
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if proc.returncode >= 2 or result is None:
        raise Failure("voice-bench exited with %d" % proc.returncode)
    # every figure, for whoever wants more than the table
    with open(os.path.join(PREFIX_ROOT, name, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    return proc.returncode, result


def run_scenario(letter, name, title, opts):
    print("\n(%s) %s: %s" % (letter, name, title), flush=True)
    prefix = os.path.join(PREFIX_ROOT, name)
    shutil.rmtree(prefix, ignore_errors=True)
    port = free_port()
    conf = write_conf(prefix, port, opts.workers)
    problems = []
    result = None

    master = start_nginx(prefix, conf, port)
    try:
        code, result = run_generator(name, opts, port, master)
        if code != 0:
            problems.append("voice-bench reported a functional failure")
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

    rows = figures(name, result) if result else []
    for figure, measured, goal, met in rows:
        print("  %-42s %-28s goal %-12s %s" % (
            figure, measured, goal,
            "" if met is None else ("met" if met else "MISSED")))
    if result and result["lag_ms"]["p99"] > 1.0:
        print("  note: the generator itself ran late (lag p99 %.2f ms); "
              "latency figures include that" % result["lag_ms"]["p99"])
    for p in problems:
        print("  FAILURE: " + p)
    return {"letter": letter, "name": name, "rows": rows,
            "problems": problems, "result": result, "log": counts}


def print_table(outcomes):
    print("\nsummary (goals are targets; only FAILURE lines fail the run)")
    print("%-11s %-42s %-28s %-14s %s" % ("scenario", "figure", "measured",
                                          "goal", ""))
    print("-" * 104)
    for o in outcomes:
        label = "%s %s" % (o["letter"], o["name"])
        for figure, measured, goal, met in o["rows"]:
            print("%-11s %-42s %-28s %-14s %s" % (
                label, figure, measured, goal,
                "" if met is None else ("met" if met else "MISSED")))
            label = ""
        for p in o["problems"]:
            print("%-11s FAILURE: %s" % (label, p))
            label = ""


def parse_options(argv):
    parser = argparse.ArgumentParser(
        description="the standard load scenarios (see the file's header)")
    parser.add_argument("scenarios", nargs="*",
                        help="letters or names: a b c d e, rtt100 rtt1000 "
                             "soak mem churn (default: all)")
    parser.add_argument("--seconds", type=float,
                        default=env_number("BENCH_SECONDS", 30),
                        help="duration of a and b (BENCH_SECONDS, 30)")
    parser.add_argument("--soak-seconds", type=float,
                        default=env_number("BENCH_SOAK_SECONDS", 600),
                        help="duration of c (BENCH_SOAK_SECONDS, 600)")
    parser.add_argument("--churn", type=int,
                        default=int(env_number("BENCH_CHURN", 10000)),
                        help="sessions of e (BENCH_CHURN, 10000)")
    parser.add_argument("--workers", type=int,
                        default=int(env_number("BENCH_WORKERS", 1)),
                        help="nginx worker_processes (BENCH_WORKERS, 1)")
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

    for path in (MODULE, GENERATOR):
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
