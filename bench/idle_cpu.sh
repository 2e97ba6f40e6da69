#!/usr/bin/env bash
# Idle cost: a supervisor with N `sleep` dynos, doing nothing for SECONDS. hkrun samples
# every dyno's memory once a second and watches for crashes; this is what that costs.
#
# For each tool: start it with N dynos (`exec sleep 1000`), let it settle 2 s, then read
# the CPU time (utime + stime) of the supervisor's own processes — every process in its
# tree except the `sleep` dynos — at the start and end of the window, plus their RSS at
# the end. Wake-ups per second come from the supervisor's context switches.
#
# Usage: bench/idle_cpu.sh
# Environment (all optional):
#   BENCH_DYNOS=50        dynos
#   BENCH_SECONDS=60      length of the idle window
#   BENCH_TOOLS="hkrun honcho foreman"
#   HKRUN=path            hkrun binary [default: `cargo build --release`, then target/release/hkrun]
#   BENCH_HKRUN_FLAGS=""  more flags for `hkrun start` (`--dashboard`, `--metrics 9100`)
# Peers are used when installed (`pip install honcho`, `apt-get install -y ruby-foreman`).
set -euo pipefail

DYNOS=${BENCH_DYNOS:-50}
SECONDS_IDLE=${BENCH_SECONDS:-60}
TOOLS=${BENCH_TOOLS:-hkrun honcho foreman}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${HKRUN:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    HKRUN=$root/target/release/hkrun
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 's: exec sleep 1000\n' > "$work/Procfile"
ticks=$(getconf CLK_TCK)

# Prints "cpu_ticks rss_kb voluntary_switches" for the supervisor's tree minus the dynos.
measure() {
    python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
kids = {}
info = {}
for d in os.listdir('/proc'):
    if not d.isdigit():
        continue
    try:
        stat = open(f'/proc/{d}/stat').read()
        status = open(f'/proc/{d}/status').read()
    except OSError:
        continue
    comm = stat[stat.index('(') + 1:stat.rindex(')')]
    f = stat[stat.rindex(')') + 2:].split()
    ppid, utime, stime = int(f[1]), int(f[11]), int(f[12])
    rss = next((int(l.split()[1]) for l in status.splitlines() if l.startswith('VmRSS:')), 0)
    switches = sum(int(l.split()[1]) for l in status.splitlines() if l.endswith('ctxt_switches:') is False and 'ctxt_switches' in l)
    kids.setdefault(ppid, []).append(int(d))
    info[int(d)] = (comm, utime + stime, rss, switches)
todo, cpu, rss, sw = [root], 0, 0, 0
while todo:
    pid = todo.pop()
    if pid in info and info[pid][0] != 'sleep':
        cpu += info[pid][1]; rss += info[pid][2]; sw += info[pid][3]
    todo.extend(kids.get(pid, []))
print(cpu, rss, sw)
PY
}

run() {
    local tool=$1
    local cmd
    case $tool in
        # shellcheck disable=SC2206
        hkrun) cmd=("$HKRUN" start -f "$work/Procfile" -m "s=$DYNOS" -p 20000 ${BENCH_HKRUN_FLAGS:-}) ;;
        honcho) command -v honcho >/dev/null || { echo "| honcho | skipped (not installed) |"; return; }
                cmd=(honcho -f "$work/Procfile" start -c "s=$DYNOS" -p 20000) ;;
        foreman) command -v foreman >/dev/null || { echo "| foreman | skipped (not installed) |"; return; }
                 cmd=(foreman start -f "$work/Procfile" -m "s=$DYNOS" -p 20000) ;;
    esac
    BENCH_IDLE_TAG=$$ setsid "${cmd[@]}" > "$work/$tool.log" 2>&1 &
    local pid=$!
    sleep 2
    read -r cpu0 _ sw0 < <(measure "$pid")
    sleep "$SECONDS_IDLE"
    read -r cpu1 rss sw1 < <(measure "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    # Whatever a tool left behind carries the tag in its environment.
    python3 - "$$" <<'PY'
import os, signal, sys
tag = f"BENCH_IDLE_TAG={sys.argv[1]}".encode()
for d in filter(str.isdigit, os.listdir('/proc')):
    try:
        if tag in open(f'/proc/{d}/environ', 'rb').read().split(b'\0'):
            os.kill(int(d), signal.SIGKILL)
    except OSError:
        pass
PY
    local ms=$(( (cpu1 - cpu0) * 1000 / ticks ))
    python3 -c "print(f'| $tool | {$ms} ms | {$ms / ($SECONDS_IDLE * 10):.3f}% | {$rss / 1024:.1f} MB | {($sw1 - $sw0) / $SECONDS_IDLE:.1f} |')"
}

echo "idle: $DYNOS sleep dynos, ${SECONDS_IDLE} s window, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo
echo "| tool | CPU in the window | share of one core | RSS (supervisor's processes) | context switches/s |"
echo "|---|---|---|---|---|"
for tool in $TOOLS; do
    run "$tool"
done
