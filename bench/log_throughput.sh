#!/usr/bin/env bash
# Log throughput: hkrun against honcho and foreman (and the no-supervisor floor).
#
# N dynos (1, 4, 16) each print LINES lines of 80 bytes as fast as they can
# (mawk: `T<id>:<seq, 8 digits>:xxxx…`), then `exec sleep 1000` so that no dyno exits
# and no supervisor stops early (foreman's exit-on-first-exit). The supervisor's stdout
# goes to a file, polled every 5 ms; once it holds every payload line (or stalls, or
# times out) the time of its last growth is taken, the supervisor's CPU time is read
# from /proc, and it gets SIGTERM (SIGKILL to it and its group after 10 s). Every
# payload line is then checked: each dyno's seq 1..LINES once each, in order.
#   lines/s = intact payload lines / (last growth of the file - spawn of the supervisor)
#   lost    = payloads not found intact on a line of their own
#   corrupt = lines holding a broken payload or more than one (splices)
# Tools run interleaved (for each dyno count, for each run: every tool), and the table
# shows the median of the runs that finished.
#
# Usage: bench/log_throughput.sh
# Environment (all optional):
#   BENCH_LINES=200000      lines per dyno
#   BENCH_RUNS=3            runs per tool and dyno count
#   BENCH_DYNOS="1 4 16"    dyno counts
#   BENCH_TOOLS="hkrun honcho foreman direct"   (direct: the dynos writing straight
#                           into the file with no supervisor, the unframed floor)
#   BENCH_TIMEOUT=300       seconds a run may take in all
#   BENCH_POLL=0.005        seconds between polls of the file
#   BENCH_STALL=15          seconds without output before a run counts as stalled
#                           (foreman may deadlock at start-up with 16 busy dynos)
#   HKRUN=path              hkrun binary [default: `cargo build --release`, then
#                           target/release/hkrun]
#   BENCH_HKRUN_FLAGS="--no-timestamp --color never"   flags after `hkrun start -f
#                           Procfile -m all=1` (drop --no-timestamp to print the
#                           clock like foreman and honcho do)
#   BENCH_RESULTS=path      also keep the per-run rows (TSV) there
#   BENCH_WHILE="command"   run beside each hkrun run, from its start until it is
#                           measured, in a group of its own that is then killed: a
#                           browser on `--dashboard`'s page, say (bench/dashboard.sh)
# Quick run: BENCH_LINES=20000 BENCH_RUNS=1 bench/log_throughput.sh
#
# Peers are used when installed, and reported as skipped otherwise. This script installs
# nothing; to compare against them: `pip install honcho` and
# `apt-get install -y ruby-foreman` (binary `foreman`). Needs mawk and python3.
set -euo pipefail

LINES=${BENCH_LINES:-200000}
RUNS=${BENCH_RUNS:-3}
DYNOS=${BENCH_DYNOS:-1 4 16}
TOOLS=${BENCH_TOOLS:-hkrun honcho foreman direct}
TIMEOUT=${BENCH_TIMEOUT:-300}
STALL=${BENCH_STALL:-15}
HKRUN_FLAGS=${BENCH_HKRUN_FLAGS:---no-timestamp --color never}
started=$(date -u)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
helper=$here/count_lines.py

for need in mawk python3 setsid; do
    command -v "$need" >/dev/null || { echo "error: $need is needed" >&2; exit 2; }
done

built=
if [[ -z ${HKRUN:-} ]]; then
    (cd "$root" && cargo build --release --quiet)
    HKRUN=$root/target/release/hkrun
    built=", built from $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
    [[ -n $(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] &&
        built+=" with uncommitted changes"
fi
HKRUN=$(realpath "$HKRUN")
[[ -x $HKRUN ]] || { echo "error: no hkrun binary at $HKRUN" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/hkrun-bench.XXXXXX")
tag_prefix="hkrun-bench-$$"
current_pid=
while_pid=

cleanup() {
    local pids
    [[ -n $while_pid ]] && kill -KILL -- "-$while_pid" 2>/dev/null || true
    if [[ -n $current_pid ]]; then
        kill -KILL -- "-$current_pid" "$current_pid" 2>/dev/null || true
        wait "$current_pid" 2>/dev/null || true
    fi
    pids=$(python3 "$helper" tagged "$tag_prefix" 2>/dev/null || true)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One dyno: $1 = id, $2 = lines. 13 + 66 characters and a newline: 80 bytes a line.
# When done it leaves a marker in $BENCH_DONE (so the poller need not read the file
# while the dynos write), then sleeps: it must not exit.
cat >"$work/dyno.sh" <<'EOF'
mawk -v id="$1" -v n="$2" 'BEGIN {
    x = sprintf("%66s", ""); gsub(/ /, "x", x)
    for (i = 1; i <= n; i++) printf "T%02d:%08d:%s\n", id, i, x
}'
: >"$BENCH_DONE/$1"
exec sleep 1000
EOF
# The floor: $1 dynos writing straight into stdout, no supervisor.
cat >"$work/direct.sh" <<EOF
i=1
while [ \$i -le \$1 ]; do sh "$work/dyno.sh" \$i \$2 & i=\$((i + 1)); done
wait
EOF
for n in $DYNOS; do
    mkdir -p "$work/app$n"
    for ((i = 1; i <= n; i++)); do
        echo "d$i: sh $work/dyno.sh $i $LINES"
    done >"$work/app$n/Procfile"
done

# Which tools are there.
declare -A skip=()
for tool in $TOOLS; do
    case $tool in
        hkrun | direct) ;;
        honcho) honcho --version >/dev/null 2>&1 || skip[$tool]="not installed (pip install honcho)" ;;
        foreman) foreman version >/dev/null 2>&1 || skip[$tool]="not installed (apt-get install -y ruby-foreman)" ;;
        *) echo "error: unknown tool $tool" >&2; exit 2 ;;
    esac
done

results=$work/results.tsv
printf 'tool\tdynos\trun\tstatus\tlines_per_s\telapsed\tarrived\tintact\tlost\tcorrupt\tdup\tmisordered\tother\tcpu\tleft\tkilled\texit\tnote\n' >"$results"

state_of() { # the state letter of a process, empty when gone
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    echo "${stat%% *}"
}

run_one() { # tool dynos run
    local tool=$1 n=$2 run=$3
    local app=$work/app$n out=$work/out.log tag="$tag_prefix-$tool-$n-$run"
    local done_dir=$work/done-$tool-$n-$run
    local t0 pid status t_last cpu arrived killed=no code=0 left=0 pids verdict
    : >"$out"
    mkdir "$done_dir"
    export BENCH_DONE=$done_dir
    cd "$app"
    t0=$EPOCHREALTIME
    case $tool in
        hkrun) BENCH_TAG=$tag setsid "$HKRUN" start -f "$app/Procfile" -m all=1 \
            $HKRUN_FLAGS >"$out" 2>"$work/err.log" </dev/null & ;;
        honcho) BENCH_TAG=$tag setsid honcho -f "$app/Procfile" -d "$app" start \
            >"$out" 2>"$work/err.log" </dev/null & ;;
        foreman) BENCH_TAG=$tag setsid foreman start -f "$app/Procfile" -d "$app" \
            >"$out" 2>"$work/err.log" </dev/null & ;;
        direct) BENCH_TAG=$tag setsid sh "$work/direct.sh" "$n" "$LINES" \
            >"$out" 2>"$work/err.log" </dev/null & ;;
    esac
    pid=$!
    current_pid=$pid
    if [[ $tool == hkrun && -n ${BENCH_WHILE:-} ]]; then
        setsid bash -c "$BENCH_WHILE" >"$work/while.log" 2>&1 </dev/null &
        while_pid=$!
    fi
    cd "$work"
    read -r status t_last cpu arrived < <(python3 "$helper" wait "$out" "$pid" "$t0" \
        $((n * LINES)) "$TIMEOUT" "$STALL" "$done_dir" "$n")
    if [[ -n $while_pid ]]; then
        kill -KILL -- "-$while_pid" 2>/dev/null || true
        wait "$while_pid" 2>/dev/null || true
        while_pid=
    fi

    # Stop it: SIGTERM (to the group for the floor, which has no supervisor), then
    # SIGKILL to it and its group after 10 s.
    if [[ $tool == direct ]]; then
        kill -TERM -- "-$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < 1000; i++)); do
        case $(state_of "$pid") in "" | Z) break ;; esac
        sleep 0.01
    done
    case $(state_of "$pid") in
        "" | Z) ;;
        *) killed=yes; kill -KILL -- "-$pid" "$pid" 2>/dev/null || true ;;
    esac
    wait "$pid" 2>/dev/null || code=$?
    current_pid=
    # Whatever it started must be gone within 2 s of its exit.
    for ((i = 0; i < 20; i++)); do
        pids=$(python3 "$helper" tagged "$tag")
        [[ -z $pids ]] && break
        sleep 0.1
    done
    if [[ -n $pids ]]; then
        left=$(wc -w <<<"$pids")
        kill -KILL $pids 2>/dev/null || true
    fi

    # (A few corrupt lines are shown on stderr; the floor has thousands: not those.)
    if [[ $tool == direct ]]; then
        verdict=$(python3 "$helper" verify "$out" "$n" "$LINES" 2>/dev/null)
    else
        verdict=$(python3 "$helper" verify "$out" "$n" "$LINES")
    fi
    local intact lost corrupt dup misordered other
    eval "$verdict" # intact=.. lost=.. corrupt=.. dup=.. misordered=.. other=..
    local elapsed rate
    elapsed=$(awk -v a="$t_last" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
    rate=$(awk -v l="$intact" -v e="$elapsed" 'BEGIN { printf "%.0f", (e > 0 ? l / e : 0) }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' \
        "$tool" "$n" "$run" "$status" "$rate" "$elapsed" "$arrived" "$intact" "$lost" "$corrupt" \
        "$dup" "$misordered" "$other" "$cpu" "$left" "$killed" "$code" >>"$results"
    printf '%-8s %2s dynos run %s: %-7s %9s lines/s in %7ss  lost %s corrupt %s cpu %ss left %s exit %s%s%s\n' \
        "$tool" "$n" "$run" "$status" "$rate" "$elapsed" "$lost" "$corrupt" "$cpu" \
        "$left" "$code" "$([[ $killed == yes ]] && echo ' (SIGKILLed)')" \
        "$([[ $status != ok ]] && echo " ($arrived of $((n * LINES)) payload lines in the file before SIGTERM)")" >&2
    rm -rf "$out" "$done_dir"
}

for n in $DYNOS; do
    for ((run = 1; run <= RUNS; run++)); do
        for tool in $TOOLS; do
            [[ -n ${skip[$tool]:-} ]] && continue
            run_one "$tool" "$n" "$run"
        done
    done
    for tool in $TOOLS; do
        [[ -n ${skip[$tool]:-} ]] &&
            printf '%s\t%s\t-\tskipped\t0\t0\t0\t0\t0\t0\t0\t0\t0\t-\t0\tno\t-\t%s\n' \
                "$tool" "$n" "${skip[$tool]}" >>"$results"
    done
done

[[ -n ${BENCH_RESULTS:-} ]] && cp "$results" "$BENCH_RESULTS"

echo "Log throughput: $DYNOS dynos × $LINES lines of 80 bytes, median of $RUNS runs"
echo "date: $started (start), $(date -u) (end)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "hkrun: $HKRUN ($("$HKRUN" --version 2>/dev/null || echo '?')$built), flags: $HKRUN_FLAGS"
for tool in honcho foreman; do
    case " $TOOLS " in *" $tool "*) ;; *) continue ;; esac
    [[ -n ${skip[$tool]:-} ]] && continue
    case $tool in
        honcho) echo "honcho: $(honcho --version 2>&1)" ;;
        foreman) echo "foreman: $(foreman version 2>&1)" ;;
    esac
done
echo
python3 "$helper" report "$results"
