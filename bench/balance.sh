#!/usr/bin/env bash
# Round-robin against least-connections in the router, with uneven requests: two web
# dynos of bench/http_ok.rs serving one request at a time, wrk opening a new connection per request (`Connection:
# close`, so every request is a balancing decision), one request in 10 a 20 ms `GET /slow`.
# Both strategies run in the same invocation, interleaved, each in a fresh hkrun.
#
# Usage: bench/balance.sh      (BENCH_ROUNDS=3, BENCH_DURATION=10s, BENCH_CONNECTIONS=8)
set -euo pipefail
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-8}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
(cd "$root" && cargo build --release --quiet --example bench_http && cargo build --release --quiet)
HKRUN=$root/target/release/hkrun
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One request at a time per dyno, as a single-threaded app server: a slow request holds
# its dyno, which is what balancing is for.
printf 'web: WEB_CONCURRENCY=1 exec %s\n' "$root/target/release/examples/bench_http" > "$work/Procfile"
cat > "$work/mix.lua" <<'LUA'
local n = 0
wrk.headers["Connection"] = "close"
request = function()
    n = n + 1
    if n % 10 == 0 then return wrk.format("GET", "/slow") end
    return wrk.format("GET", "/")
end
LUA

run() {
    local balance=$1 base
    base=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$HKRUN" start -f "$work/Procfile" -m web=2 -p "$base" --balance "$balance" > "$work/hk.log" 2>&1 &
    local hk=$!
    for _ in $(seq 100); do [ "$(grep -c 'State changed from starting to up' "$work/hk.log")" -ge 2 ] && break; sleep 0.1; done
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/mix.lua" "http://127.0.0.1:$base/" |
        python3 "$root/bench/wrk_summary.py" rps p50 p75 p90 p99 errors
    kill -TERM "$hk"; wait "$hk" 2>/dev/null || true
}

echo "balance: web=2, wrk -t2 -c$CONNECTIONS -d$DURATION, a new connection per request, 1 in 10 slow (20 ms); $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git -C "$root" rev-parse --short HEAD)"
for round in $(seq "$ROUNDS"); do
    echo "round $round: round-robin $(run round-robin) | least-connections $(run least-connections)   (req/s p50 p75 p90 p99 ms, errors)"
done
