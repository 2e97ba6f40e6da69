#!/usr/bin/env bash
# The HTTP router against the peers, side by side in one run: wrk through hkrun's router
# (`--router http`, its line per request logged as by default, and with `--router-log
# off`), haproxy (`mode http`, connections to the app reused) and nginx (`proxy_pass` to a
# keep-alive upstream), all in front of the same web dyno, and the dyno's own port for
# reference. For each app work per request (0, 50, 250 µs) and each kind of client:
# keep-alive (wrk's default) and a new connection per request (`Connection: close`).
# Requests/s and p99, each as a ratio to haproxy's.
#
# The app is bench/http_ok.rs (keep-alive, `200 ok` after WORK_US µs of CPU), run as web.1
# by hkrun. Each proxy runs one thread (hkrun's router is one thread; haproxy `nbthread
# 1`; nginx `worker_processes 1`), so the figures compare the proxies, not the cores they
# take. wrk, haproxy and nginx come from Debian's packages (`apt-get install -y wrk
# haproxy nginx`); a peer that is missing is left out.
#
# Usage: bench/router.sh
# Environment (all optional):
#   BENCH_WORK="0 50 250"  app work per request, in µs
#   BENCH_DURATION=5s      each wrk run
#   BENCH_ROUNDS=1         rounds of the whole matrix (medians reported)
#   BENCH_CONNECTIONS=32   wrk connections (-c); BENCH_THREADS=2 wrk threads (-t)
#   HKRUN=path             hkrun binary [default: `cargo build --release`]
set -euo pipefail

WORK_LEVELS=${BENCH_WORK:-0 50 250}
DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
(cd "$root" && cargo build --release --quiet --example bench_http)
if [ -z "${HKRUN:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    HKRUN=$root/target/release/hkrun
fi
app=$root/target/release/examples/bench_http
# A free port below the ephemeral range, with the next `${1:-1}` free too: wrk's clients of
# a new connection per request take ephemeral ports by the thousand.
free_port() {
    python3 - "${1:-1}" <<'PY'
import random, socket, sys
span = int(sys.argv[1])
while True:
    base = random.randrange(20000, 30000 - span)
    try:
        held = []
        for port in range(base, base + span):
            s = socket.socket(); s.bind(("127.0.0.1", port)); held.append(s)
        print(base); break
    except OSError:
        pass
PY
}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'cleanup; rm -rf "$work"' EXIT

# Starts hkrun in front of one web dyno on base port $1 with flags $2...; waits until up.
start_hkrun() {
    local base=$1; shift
    local dir=$work/hk$base
    mkdir -p "$dir"
    printf 'web: exec %s\n' "$app" > "$dir/Procfile"
    "$HKRUN" start -f "$dir/Procfile" -m web=1 -p "$base" --no-timestamp "$@" > "$dir/hkrun.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do grep -q "State changed from starting to up" "$dir/hkrun.log" && return; sleep 0.1; done
    echo "hkrun on $base did not come up:" >&2; cat "$dir/hkrun.log" >&2; exit 1
}

start_haproxy() {
    cat > "$work/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend public
    bind 127.0.0.1:$1
    default_backend dyno
backend dyno
    server web1 127.0.0.1:$2
CFG
    haproxy -f "$work/haproxy.cfg" -db > "$work/haproxy.log" 2>&1 &
    pids+=($!)
}

start_nginx() {
    mkdir -p "$work/nginx"
    cat > "$work/nginx.conf" <<CFG
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    upstream dyno { server 127.0.0.1:$2; keepalive 64; }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://dyno;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CFG
    nginx -c "$work/nginx.conf" > "$work/nginx/stdout.log" 2>&1 &
    pids+=($!)
}

# Prints "requests/s p99_ms errors" for one wrk run at port $1 ("close" as $2: a new
# connection per request).
run() {
    local header=()
    [ "${2:-}" = close ] && header=(-H "Connection: close")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${header[@]}" "http://127.0.0.1:$1/" |
        python3 "$root/bench/wrk_summary.py" rps p99 errors
}

echo "router: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS round(s), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo "hkrun: $HKRUN ($(git -C "$root" rev-parse --short HEAD)); haproxy: $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'); nginx: $(nginx -v 2>&1 | sed 's|.*/||')"
results=$work/results.txt
: > "$results"
for work_us in $WORK_LEVELS; do
    export WORK_US=$work_us
    # Two hkruns, ten ports apart (each takes its base and the next for web.1).
    logged=$(free_port 12)
    quiet=$((logged + 10))
    start_hkrun "$logged"
    start_hkrun "$quiet" --router-log off
    dyno=$((logged + 1))
    targets=("direct $dyno" "hkrun $logged" "hkrun-log-off $quiet")
    if command -v haproxy >/dev/null; then
        hp=$(free_port); start_haproxy "$hp" "$dyno"; targets+=("haproxy $hp")
    fi
    if command -v nginx >/dev/null; then
        ng=$(free_port); start_nginx "$ng" "$dyno"; targets+=("nginx $ng")
    fi
    sleep 0.5
    for round in $(seq "$ROUNDS"); do
        for client in keep-alive close; do
            for target in "${targets[@]}"; do
                set -- $target
                figures=$(run "$2" "$client")
                echo "$work_us $client $1 $figures" | tee -a "$results"
            done
        done
    done
    cleanup
done

python3 - "$results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    work, client, name, rps, p99, errors = line.split()
    rows[(int(work), client, name)].append((float(rps), float(p99), int(float(errors))))
med = lambda xs, i: statistics.median(x[i] for x in xs)
names = ["direct", "hkrun", "hkrun-log-off", "haproxy", "nginx"]
print()
print("| app work | client | " + " | ".join(f"{n} req/s (p99)" for n in names) + " | hkrun ÷ haproxy req/s | hkrun ÷ haproxy p99 | log off ÷ haproxy req/s | nginx ÷ haproxy req/s |")
print("|---" * (len(names) + 6) + "|")
for (work, client) in sorted({(w, c) for (w, c, _) in rows}, key=lambda k: (k[0], k[1] != "keep-alive")):
    cells, got = [], {}
    for n in names:
        xs = rows.get((work, client, n))
        if xs:
            got[n] = (med(xs, 0), med(xs, 1), sum(x[2] for x in xs))
            cells.append(f"{got[n][0]:,.0f} ({got[n][1]:.2f} ms{', ' + str(got[n][2]) + ' errors' if got[n][2] else ''})")
        else:
            cells.append("-")
    ratio = lambda a, i: f"{got[a][i] / got['haproxy'][i]:.2f}" if a in got and "haproxy" in got else "-"
    print(f"| {work} µs | {client} | " + " | ".join(cells) + f" | {ratio('hkrun', 0)} | {ratio('hkrun', 1)} | {ratio('hkrun-log-off', 0)} | {ratio('nginx', 0)} |")
PY
