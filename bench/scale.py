#!/usr/bin/env python3
"""Scale: 100, 300 and 1,000 sleeping dynos (10 process types) started, listed and stopped.

For each size and each hkrun binary given, in turn within each round:
- start: from spawning `hkrun start` until `hkrun ps --json` shows every dyno up;
- ps: the median time of five `hkrun ps --json` calls once they are all up;
- stop: from SIGTERM to hkrun's exit (every dyno is `exec sleep`, so each dies at SIGTERM);
- left: processes carrying the run's tag 1 s after hkrun exited (must be 0).
Medians over the rounds are printed as a Markdown table.

Usage: bench/scale.py [HKRUN ...]   (default: target/release/hkrun, built first)
Environment: BENCH_ROUNDS (default 3), BENCH_SIZES (default "100 300 1000").
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "100 300 1000").split()]
TYPES = 10


def free_base_port():
    # 10 types, each a block of 100 ports from the base: find a base whose first port is
    # free, away from the ephemeral range.
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = 10000 + (port % 40) * 1000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base))
                return base
            except OSError:
                continue


def tagged(tag):
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"HKRUN_BENCH_TAG={tag}".encode() in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def ps(binary, work):
    out = subprocess.run([binary, "ps", "--json"], cwd=work, capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def one_run(binary, n, round_no):
    work = tempfile.mkdtemp(prefix="hkrun-scale-")
    with open(os.path.join(work, "Procfile"), "w") as f:
        for t in range(TYPES):
            f.write(f"t{t}: exec sleep 1000\n")
    formation = ",".join(f"t{t}={n // TYPES}" for t in range(TYPES))
    tag = f"{os.getpid()}-{n}-{round_no}-{time.monotonic_ns()}"
    env = dict(os.environ, HKRUN_BENCH_TAG=tag, NO_COLOR="1")
    out = open(os.path.join(work, "out.log"), "wb")
    started = time.monotonic()
    hk = subprocess.Popen(
        [binary, "start", "-m", formation, "-p", str(free_base_port()), "--no-timestamp"],
        cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        while True:
            if time.monotonic() - started > 120:
                raise RuntimeError(f"{n} dynos not up in 120 s")
            view = ps(binary, work)
            if view and sum(1 for d in view["dynos"] if d["state"] == "up") == n:
                break
            time.sleep(0.02)
        start = time.monotonic() - started
        times = []
        for _ in range(5):
            t = time.monotonic()
            assert ps(binary, work) is not None
            times.append(time.monotonic() - t)
        asked = time.monotonic()
        hk.send_signal(signal.SIGTERM)
        hk.wait(timeout=60)
        stop = time.monotonic() - asked
        time.sleep(1)
        left = tagged(tag)
        return start, statistics.median(times), stop, len(left)
    finally:
        if hk.poll() is None:
            hk.kill()
            hk.wait()
        for pid in tagged(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        out.close()


def main():
    binaries = sys.argv[1:]
    if not binaries:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binaries = [os.path.join(ROOT, "target/release/hkrun")]
    binaries = [os.path.abspath(b) for b in binaries]
    results = {}
    for round_no in range(ROUNDS):
        for n in SIZES:
            for binary in binaries:
                r = one_run(binary, n, round_no)
                results.setdefault((binary, n), []).append(r)
                print(f"round {round_no + 1} {binary} {n}: start {r[0]:.3f} s, ps {r[1] * 1000:.0f} ms, "
                      f"stop {r[2]:.3f} s, left {r[3]}", file=sys.stderr)
    print("| hkrun | dynos | start (s) | ps (ms) | stop (s) | left |")
    print("|---|---|---|---|---|---|")
    for binary in binaries:
        for n in SIZES:
            rs = results[(binary, n)]
            med = [statistics.median(r[i] for r in rs) for i in range(3)]
            print(f"| {binary} | {n} | {med[0]:.3f} | {med[1] * 1000:.0f} | {med[2]:.3f} | {max(r[3] for r in rs)} |")


if __name__ == "__main__":
    main()
