#!/usr/bin/env python3
"""Helper for bench/log_throughput.sh: waits for a supervisor's output file to fill,
reads CPU time from /proc, verifies every payload line, finds tagged processes, and
prints the result table. Standard library only.

Payload lines (written by the dynos, 80 bytes with the newline):
    T<id, 2 digits>:<seq, 8 digits>:<66 x>

Subcommands:
  wait FILE PID T0 EXPECTED TIMEOUT STALL DONE_DIR DYNOS
      Polls FILE's size every 5 ms (BENCH_POLL seconds); once DYNOS marker files are
      in DONE_DIR (each dyno writes one when it has printed all its lines) it also
      counts the lines that end in a payload's tail, until EXPECTED are there ("ok"), the file has not grown for STALL s ("stalled"),
      TIMEOUT s have passed since T0 ("timeout") or PID has exited ("exited").
      Prints: STATUS T_LAST CPU_SECONDS COUNT   (T_LAST: epoch seconds of the last growth;
      CPU: user+sys of PID and of its descendants that are not dyno commands).
  verify FILE DYNOS LINES
      Prints: intact=.. lost=.. corrupt=.. dup=.. misordered=.. other=..
  tagged PREFIX
      Prints the pids of live processes whose environment has BENCH_TAG=PREFIX...
  report RESULTS.tsv
      Prints the Markdown table (medians over runs) from the rows the script wrote.
"""

import os
import re
import statistics
import sys
import time

TAIL = b"x" * 10 + b"\n"
XS = b"x" * 66
PAYLOAD_LEN = 79
ANSI = re.compile(rb"\x1b\[[0-9;]*m")
FRAGMENT = re.compile(rb"[T0-9:x]+")
PIECE = re.compile(rb"T\d\d:\d|xxxx")
# Commands the dynos run: their CPU is not the supervisor's.
DYNO_COMMS = {"sh", "dash", "bash", "mawk", "sleep"}
CHUNK = 4 << 20
POLL = float(os.environ.get("BENCH_POLL", "0.005"))


def proc_stat(pid):
    """(comm, state, ppid, utime+stime ticks) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    comm = data[data.index("(") + 1 : data.rindex(")")]
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return comm, fields[0], int(fields[1]), int(fields[11]) + int(fields[12])


def supervisor_cpu(root):
    """CPU seconds of root and of its descendants that are not dyno commands."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                stats[int(name)] = st
    family = {root}
    changed = True
    while changed:
        changed = False
        for pid, (_, _, ppid, _) in stats.items():
            if ppid in family and pid not in family:
                family.add(pid)
                changed = True
    ticks = sum(
        stats[pid][3]
        for pid in family
        if pid in stats and (pid == root or stats[pid][0] not in DYNO_COMMS)
    )
    return ticks / os.sysconf("SC_CLK_TCK")


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def cmd_wait(path, pid, t0, expected, timeout, stall, done_dir, dynos):
    pid, t0, expected, dynos = int(pid), float(t0), int(expected), int(dynos)
    timeout, stall = float(timeout), float(stall)
    offset = 0
    count = 0
    size = 0
    t_last = t0
    status = None
    all_done = False
    with open(path, "rb") as f:
        while status is None:
            now = time.time()
            gone = not alive(pid)
            new_size = os.fstat(f.fileno()).st_size
            if new_size > size:
                size = new_size
                t_last = now
            # Reading the file costs CPU that the supervisor may need: count lines only
            # once every dyno has written all of its own (or the supervisor is gone).
            if not all_done:
                all_done = len(os.listdir(done_dir)) >= dynos
            # A few MB at a time, so the size is still sampled every few ms.
            behind = (all_done or gone) and size - offset > CHUNK
            if (all_done or gone) and size > offset:
                f.seek(offset)
                chunk = f.read(min(size - offset, CHUNK))
                end = chunk.rfind(b"\n") + 1
                if end == 0 and len(chunk) == CHUNK:
                    end = CHUNK  # a line longer than CHUNK: none of ours
                count += chunk.count(TAIL, 0, end)
                offset += end
            if count >= expected:
                status = "ok"
            elif behind:
                continue
            elif gone:
                status = "exited"
            elif now - t_last > stall:
                status = "stalled"
            elif now - t0 > timeout:
                status = "timeout"
            else:
                time.sleep(POLL)
    cpu = f"{supervisor_cpu(pid):.2f}" if alive(pid) else "-"
    print(status, f"{t_last:.3f}", cpu, count)


def cmd_verify(path, dynos, lines):
    dynos, lines = int(dynos), int(lines)
    seen = [bytearray(lines + 1) for _ in range(dynos + 1)]
    last = [0] * (dynos + 1)
    intact = corrupt = dup = misordered = other = 0
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            if b"\x1b" in line:
                line = ANSI.sub(b"", line)
            cut = line.find(b" | ")
            rest = line if cut < 0 else line[cut + 3 :]
            if (
                len(rest) == PAYLOAD_LEN
                and rest[0:1] == b"T"
                and rest[3:4] == b":"
                and rest[12:13] == b":"
                and rest[13:] == XS
                and rest[1:3].isdigit()
                and rest[4:12].isdigit()
            ):
                dyno, seq = int(rest[1:3]), int(rest[4:12])
                if not (1 <= dyno <= dynos and 1 <= seq <= lines):
                    corrupt += 1
                    continue
                if seen[dyno][seq]:
                    dup += 1
                    continue
                seen[dyno][seq] = 1
                intact += 1
                if seq < last[dyno]:
                    misordered += 1
                last[dyno] = max(last[dyno], seq)
            elif PIECE.search(rest) or FRAGMENT.fullmatch(rest):
                corrupt += 1
                if corrupt <= 3:
                    print("corrupt line:", raw[:200], file=sys.stderr)
            else:
                other += 1
    lost = dynos * lines - intact
    print(
        f"intact={intact} lost={lost} corrupt={corrupt} dup={dup} "
        f"misordered={misordered} other={other}"
    )


def cmd_tagged(prefix):
    want = b"BENCH_TAG=" + prefix.encode()
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(want) for v in env) and alive(int(name)):
            print(name)


def fmt_rate(x):
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.0f}k"


def cmd_report(path):
    rows = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    tools = []
    counts = []
    for r in rows:
        if r["tool"] not in tools:
            tools.append(r["tool"])
        if int(r["dynos"]) not in counts:
            counts.append(int(r["dynos"]))
    medians = {}
    for n in counts:
        for tool in tools:
            runs = [r for r in rows if r["tool"] == tool and int(r["dynos"]) == n]
            ok = [float(r["lines_per_s"]) for r in runs if r["status"] == "ok"]
            medians[tool, n] = statistics.median(ok) if ok else None

    print(
        "| dynos | tool | lines/s (median) | each run | lost | corrupt "
        "| supervisor CPU s (median) | notes | hkrun ÷ tool |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        for tool in tools:
            runs = [r for r in rows if r["tool"] == tool and int(r["dynos"]) == n]
            if not runs:
                continue
            if runs[0]["status"] == "skipped":
                print(f"| {n} | {tool} | skipped: {runs[0]['note']} | | | | | | |")
                continue
            each = " / ".join(
                fmt_rate(float(r["lines_per_s"])) + ("" if r["status"] == "ok" else "*")
                for r in runs
            )
            lost = " / ".join(r["lost"] for r in runs)
            corrupt = " / ".join(r["corrupt"] for r in runs)
            cpus = [
                float(r["cpu"])
                for r in runs
                if r["status"] == "ok" and r["cpu"] not in ("-", "")
            ]
            cpu = f"{statistics.median(cpus):.2f}" if cpus else "—"
            notes = []
            bad = [r["status"] for r in runs if r["status"] != "ok"]
            if bad:
                notes.append(
                    f"{len(bad)} of {len(runs)} runs did not finish ("
                    + ", ".join(sorted(set(bad)))
                    + ")"
                )
            for key, word in (("dup", "duplicated"), ("misordered", "out of order")):
                total = sum(int(r[key]) for r in runs)
                if total:
                    notes.append(f"{total} {word}")
            left = sum(int(r["left"]) for r in runs if r["left"].isdigit())
            if left:
                notes.append(f"{left} processes left after exit")
            forced = sum(1 for r in runs if r["killed"] == "yes")
            if forced:
                notes.append(f"needed SIGKILL in {forced} runs")
            ratio = "—"
            mine, theirs = medians.get(("hkrun", n)), medians[tool, n]
            if tool != "hkrun" and mine and theirs:
                ratio = f"{mine / theirs:.1f}×"
            print(
                f"| {n} | {tool} | {fmt_rate(medians[tool, n])} | {each} | {lost} "
                f"| {corrupt} | {cpu} | {'; '.join(notes)} | {ratio} |"
            )
    print()
    print(
        "`*` = run did not finish (stalled/timeout/exited); its rate counts only the "
        "lines that arrived and it is left out of the median."
    )


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "wait": cmd_wait,
        "verify": cmd_verify,
        "tagged": cmd_tagged,
        "report": cmd_report,
    }[cmd](*args)


if __name__ == "__main__":
    main()
