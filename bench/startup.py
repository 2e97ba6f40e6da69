#!/usr/bin/env python3
"""Startup: how long until N dynos all run, for hkrun and the peers in the same run.

PEERS.md's method: N dynos (1, 10, 50), each writes its start time ($EPOCHREALTIME, a
bash builtin, so no extra fork) to a file; the figure is the time from spawning the
supervisor until the last of those marks. Tools are interleaved round by round so
machine noise falls on all of them; medians are printed.

Usage: bench/startup.py [HKRUN ...]
  HKRUN  hkrun binaries to compare (default: target/release/hkrun, built first). honcho
         and foreman are added when installed (`pip install honcho`, `apt-get install
         ruby-foreman`).
Environment: BENCH_ROUNDS (default 5), BENCH_SIZES (default "1 10 50").
"""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "1 10 50").split()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tools():
    found = []
    binaries = sys.argv[1:]
    if not binaries:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binaries = [os.path.join(ROOT, "target/release/hkrun")]
    for binary in binaries:
        name = "hkrun" if len(binaries) == 1 else f"hkrun ({binary})"
        found.append((name, lambda procfile, port, b=binary: [b, "start", "-f", procfile, "-p", str(port)]))
    if shutil.which("honcho"):
        found.append(("honcho", lambda procfile, port: ["honcho", "start", "-f", procfile, "-p", str(port)]))
    if shutil.which("foreman"):
        found.append(("foreman", lambda procfile, port: ["foreman", "start", "-f", procfile, "-p", str(port)]))
    return found


def one_run(command, n):
    """Seconds from spawning the supervisor until the last dyno's mark."""
    work = tempfile.mkdtemp(prefix="hkrun-startup-")
    marks = os.path.join(work, "marks")
    os.mkdir(marks)
    procfile = os.path.join(work, "Procfile")
    with open(procfile, "w") as f:
        for i in range(1, n + 1):
            f.write(f"w{i}: exec bash -c 'echo $EPOCHREALTIME > {marks}/w{i}; exec sleep 1000'\n")
    start = time.time()
    sup = subprocess.Popen(
        command(procfile, free_port()),
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            done = [m for m in os.listdir(marks) if os.path.getsize(os.path.join(marks, m)) > 0]
            if len(done) == n:
                break
            time.sleep(0.002)
        else:
            return None
        last = max(float(open(os.path.join(marks, m)).read()) for m in os.listdir(marks))
        return last - start
    finally:
        os.killpg(sup.pid, signal.SIGTERM)
        try:
            sup.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
        subprocess.run(["pkill", "-KILL", "-f", marks], check=False)
        shutil.rmtree(work, ignore_errors=True)


def main():
    found = tools()
    print(f"startup: {ROUNDS} rounds, sizes {SIZES}, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {os.cpu_count()} cores")
    results = {(name, n): [] for name, _ in found for n in SIZES}
    for _ in range(ROUNDS):
        for n in SIZES:
            for name, command in found:
                took = one_run(command, n)
                if took is not None:
                    results[(name, n)].append(took)
    print()
    print("| tool | " + " | ".join(f"{n} dynos" for n in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for name, _ in found:
        cells = []
        for n in SIZES:
            runs = results[(name, n)]
            cells.append(f"{statistics.median(runs) * 1000:.0f} ms" if runs else "failed")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
