#!/usr/bin/env bash
# The cost of watching: 20 dynos flooding their logs (bench/log_throughput.sh), with
# nothing else, with the dashboard open in headless Chromium, and with one drain to a
# local rsyslogd. Run back to back with the same binary; compare stdout's lines/s and
# hkrun's CPU in the three tables.
#
# Usage: bench/dashboard.sh
# Environment (all optional): BENCH_LINES (200000), BENCH_RUNS (3), BENCH_DYNOS (20),
#   HKRUN (default: `cargo build --release`), CHROMIUM (/usr/bin/chromium).
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

echo "== no dashboard, no drain"
BENCH_HKRUN_FLAGS="$plain" "$here/log_throughput.sh"

if [[ -x $chromium ]]; then
    port=$(free_port)
    echo "== the dashboard open in headless Chromium (127.0.0.1:$port)"
    # The page loads once hkrun listens; it then follows the log and a tick a second
    # until the run is measured.
    BENCH_WHILE="sleep 0.3; exec $chromium --headless=new --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --user-data-dir=$work/profile http://127.0.0.1:$port/" \
        BENCH_HKRUN_FLAGS="$plain --dashboard 127.0.0.1:$port" "$here/log_throughput.sh"
else
    echo "== skipped the dashboard: no $chromium (apt-get install chromium)"
fi

if command -v rsyslogd >/dev/null; then
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
else
    echo "== skipped the drain: no rsyslogd (apt-get install rsyslog)"
fi
echo "date: $(date -u)"
