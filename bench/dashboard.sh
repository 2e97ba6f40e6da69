#!/usr/bin/env bash
# The cost of watching: 20 dynos flooding their logs (bench/log_throughput.sh), with
# nothing else (none), with the dashboard open in headless Chromium (browser), with the
# dashboard's stream read by a plain client that counts what it gets (reader: hkrun's
# own cost, without a browser's CPU beside it), and with one drain to a local rsyslogd
# (drain). Run back to back with the same binary; compare stdout's lines/s and hkrun's
# CPU in the tables.
#
# Usage: bench/dashboard.sh
# Environment (all optional): BENCH_PARTS ("none browser reader drain"), BENCH_LINES
#   (200000), BENCH_RUNS (3), BENCH_DYNOS (20), HKRUN (default: `cargo build
#   --release`), CHROMIUM (/usr/bin/chromium).
# Needs chromium (Debian's package) for the dashboard's part, rsyslogd for the drain's;
# a part whose program is missing is skipped, saying so. Installs nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
export BENCH_DYNOS=${BENCH_DYNOS:-20} BENCH_TOOLS=hkrun
if [[ -z ${HKRUN:-} ]]; then
    (cd "$root" && cargo build --release --quiet)
    export HKRUN=$root/target/release/hkrun
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
work=$(mktemp -d "${TMPDIR:-/tmp}/hkrun-dash.XXXXXX")
rsyslog_pid=
cleanup() {
    [[ -n $rsyslog_pid ]] && kill "$rsyslog_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
plain="--no-timestamp --color never"
parts=" ${BENCH_PARTS:-none browser reader drain} "

if [[ $parts == *" none "* ]]; then
    echo "== no dashboard, no drain"
    BENCH_HKRUN_FLAGS="$plain" "$here/log_throughput.sh"
fi

if [[ $parts == *" reader "* ]]; then
    port=$(free_port)
    echo "== the dashboard's stream read by a plain client (127.0.0.1:$port)"
    # Counts the log lines, skipped lines and ticks it got into $work/read.PID (one
    # file per run: the reader is killed once the run is measured).
    cat >"$work/reader.py" <<'EOF'
import json, os, sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2] + "." + str(os.getpid())
while True:
    try:
        stream = urllib.request.urlopen(url, timeout=60)
        break
    except OSError:
        time.sleep(0.05)
counts = {"lines": 0, "skipped": 0, "ticks": 0}
event = None
for raw in stream:
    line = raw.decode()
    if line.startswith("event: "):
        event = line[7:].strip()
    elif line.startswith("data: "):
        data = json.loads(line[6:])
        if event == "log":
            counts["lines"] += len(data)
        elif event == "skipped":
            counts["skipped"] += data["lines"]
        elif event == "tick":
            counts["ticks"] += 1
        with open(out, "w") as f:
            f.write(json.dumps(counts))
EOF
    BENCH_WHILE="exec python3 $work/reader.py http://127.0.0.1:$port/events $work/read" \
        BENCH_HKRUN_FLAGS="$plain --dashboard 127.0.0.1:$port" "$here/log_throughput.sh"
    for f in "$work"/read.*; do
        [[ -e $f ]] && echo "the reader got: $(cat "$f")"
    done
fi

if [[ $parts == *" browser "* && -x $chromium ]]; then
    port=$(free_port)
    echo "== the dashboard open in headless Chromium (127.0.0.1:$port)"
    # The page loads once hkrun listens; it then follows the log and a tick a second
    # until the run is measured.
    BENCH_WHILE="sleep 0.3; exec $chromium --headless=new --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --user-data-dir=$work/profile http://127.0.0.1:$port/" \
        BENCH_HKRUN_FLAGS="$plain --dashboard 127.0.0.1:$port" "$here/log_throughput.sh"
elif [[ $parts == *" browser "* ]]; then
    echo "== skipped the dashboard: no $chromium (apt-get install chromium)"
fi

if [[ $parts == *" drain "* ]] && command -v rsyslogd >/dev/null; then
    port=$(free_port)
    mkdir -p "$work/rsyslog"
    cat >"$work/rsyslog/rs.conf" <<EOF
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="$port")
template(name="line" type="string" string="%procid% %msg%\n")
action(type="omfile" file="$work/rsyslog/received.log" template="line")
EOF
    rsyslogd -n -f "$work/rsyslog/rs.conf" -i "$work/rsyslog/pid" &
    rsyslog_pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
        sleep 0.05
    done
    echo "== one drain: syslog+tcp://127.0.0.1:$port (rsyslogd)"
    BENCH_HKRUN_FLAGS="$plain --drain syslog+tcp://127.0.0.1:$port" "$here/log_throughput.sh"
    echo "the drain received $(wc -l <"$work/rsyslog/received.log") lines in all"
elif [[ $parts == *" drain "* ]]; then
    echo "== skipped the drain: no rsyslogd (apt-get install rsyslog)"
fi
echo "date: $(date -u)"
