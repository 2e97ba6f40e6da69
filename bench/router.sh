#!/usr/bin/env bash
# Router overhead: wrk against a small HTTP app directly (the dyno's own port) and through
# hkrun's router (the public port), interleaved in the same run; then requests failed
# while `hkrun restart web` (preboot) runs 10 times under load.
#
# The app is bench/http_ok.rs (keep-alive, `200 ok`), run as one web dyno by hkrun. Each
# round runs wrk on the dyno's port, then on the router's port; the figures are medians
# over the rounds. wrk comes from Debian's packages (`apt-get install -y wrk`).
#
# Usage: bench/router.sh
# Environment (all optional):
#   BENCH_ROUNDS=3        rounds (direct, then routed)
#   BENCH_DURATION=10s    each wrk run
#   BENCH_CONNECTIONS=32  wrk connections (-c); BENCH_THREADS=2 wrk threads (-t)
#   BENCH_WORK_US=0       CPU the app spends on each request, in µs (0: none, the
#                         worst case for the router; a lean app endpoint takes 250 µs or more)
#   HKRUN=path            hkrun binary [default: `cargo build --release`, then target/release/hkrun]
set -euo pipefail

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
export WORK_US=${BENCH_WORK_US:-0}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
(cd "$root" && cargo build --release --quiet --example bench_http)
if [ -z "${HKRUN:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    HKRUN=$root/target/release/hkrun
fi
app=$root/target/release/examples/bench_http
work=$(mktemp -d)
printf 'web: exec %s\n' "$app" > "$work/Procfile"
base=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$HKRUN" start -f "$work/Procfile" -m web=1 -p "$base" --no-timestamp > "$work/hkrun.log" 2>&1 &
hk=$!
trap 'kill -TERM $hk 2>/dev/null; wait $hk 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "State changed from starting to up" "$work/hkrun.log" && break; sleep 0.1; done

# A peer in the same run, when installed (`apt-get install -y haproxy`): haproxy as a TCP
# proxy with one thread, like hkrun's router, in front of the same dyno.
hp=""
if command -v haproxy >/dev/null; then
    hp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$work/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend public
    bind 127.0.0.1:$hp_port
    default_backend dyno
backend dyno
    server web1 127.0.0.1:$((base + 1))
CFG
    haproxy -f "$work/haproxy.cfg" -db > "$work/haproxy.log" 2>&1 &
    hp=$!
    trap 'kill -TERM $hk $hp 2>/dev/null; wait $hk 2>/dev/null; rm -rf "$work"' EXIT
    sleep 0.5
fi

# Prints "requests/s p50_ms p99_ms errors" for one wrk run.
run() { run_for "$DURATION" "$1"; }
run_for() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" --latency "http://127.0.0.1:$2/" |
        python3 "$root/bench/wrk_summary.py" rps p50 p99 errors
}

echo "router: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, app work ${WORK_US} µs/request, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo "hkrun: $HKRUN ($(git -C "$root" rev-parse --short HEAD)), router on $base, web.1 on $((base + 1))"
direct=(); routed=(); peer=()
for round in $(seq "$ROUNDS"); do
    d=$(run $((base + 1))); r=$(run "$base")
    p=""; [ -n "$hp" ] && p=$(run "$hp_port") && peer+=("$p")
    echo "round $round: direct $d | routed $r | haproxy ${p:--}   (req/s p50_ms p99_ms errors)"
    direct+=("$d"); routed+=("$r")
done
# Preboot under load: wrk through the router while `hkrun restart web` runs 10 times.
restarts=$work/restarts.log
(
    sleep 2
    for i in $(seq 10); do
        if "$HKRUN" restart web -d "$work" >> "$restarts" 2>&1; then echo "restart $i ok" >> "$restarts"; else echo "restart $i FAILED" >> "$restarts"; fi
        sleep 1
    done
) &
restarter=$!
preboot=$(run_for 25s "$base")
wait $restarter
echo "preboot: 10 restarts under wrk -c$CONNECTIONS for 25s: $(grep -c ' ok$' "$restarts") succeeded; wrk: $preboot (req/s p50_ms p99_ms errors)"

python3 - "${direct[@]}" -- "${routed[@]}" -- "${peer[@]}" <<'PY'
import statistics, sys
args = sys.argv[1:]
cut = args.index("--")
cut2 = args.index("--", cut + 1)
def parse(rows):
    return [tuple(map(float, r.split())) for r in rows]
d, r, p = parse(args[:cut]), parse(args[cut + 1:cut2]), parse(args[cut2 + 1:])
med = lambda rows, i: statistics.median(row[i] for row in rows)
print()
print("| path | requests/s (median) | p50 | p99 | errors |")
print("|---|---|---|---|---|")
for name, rows in (("direct to web.1", d), ("through the router", r), ("through haproxy (tcp, 1 thread)", p)):
    if not rows:
        continue
    print(f"| {name} | {med(rows, 0):,.0f} | {med(rows, 1):.3f} ms | {med(rows, 2):.3f} ms | {sum(x[3] for x in rows):.0f} |")
print()
print(f"router ÷ direct throughput: {med(r, 0) / med(d, 0):.2f}; added p50 {med(r, 1) - med(d, 1):+.3f} ms, added p99 {med(r, 2) - med(d, 2):+.3f} ms")
if p:
    print(f"haproxy ÷ direct throughput: {med(p, 0) / med(d, 0):.2f}; added p50 {med(p, 1) - med(d, 1):+.3f} ms, added p99 {med(p, 2) - med(d, 2):+.3f} ms")
    print(f"router ÷ haproxy throughput: {med(r, 0) / med(p, 0):.2f}")
PY
