#!/usr/bin/env bash
# HTTP read path vs Redis GET (issue 5).
#
#   bash bench/http_vs_redis.sh
#
# Builds `wxtoken` and `wechat-sim` in release, starts a private redis-server
# (free port, no persistence), wechat-sim and two `wxtoken serve` replicas of
# one fleet, all on 127.0.0.1, waits for /readyz and a first token on each,
# then for each concurrency C runs, one right after the other in the same run:
#
#   redis-benchmark -p PORT -t get -c C -n N --csv
#       GET of a key holding as many bytes as the HTTP response body
#   wrk -t2 -c C -d DURATION --latency -H 'Authorization: Bearer …' …/v1/apps/shop/access_token
#       against replica "default": the runtime as shipped (one worker per core)
#   wrk -t1 -c C -d DURATION --latency … against replica "one"
#       (TOKIO_WORKER_THREADS=1): thread for thread what redis-benchmark (one
#       thread) and redis-server (one thread) are
#
# and prints a table (req/s, p50, p99, ratio HTTP / Redis of the same round).
# N is calibrated so that redis-benchmark runs about as long as wrk. The
# replica not under load is idle. Every process the script starts is stopped
# on exit (trap), by pid.
#
# Everything shares the machine's cores; nothing is pinned. On 2 cores the
# "default" setup runs 4 busy threads (2 wrk + 2 workers) where Redis runs 2;
# its tail latency is mostly time a runnable worker waits for a core (see
# BENCHMARKS.md, `perf sched latency`).
#
# Environment (all optional):
#   CONCURRENCY="16 64"  connection counts to run
#   DURATION=15          seconds per wrk run (and target length of redis-benchmark)
#   ROUNDS=1             repeat the whole sequence this many times
#   SETUPS="default one" which wxtoken setups to load (see above)
#   SKIP_BUILD=1         use the existing target/release binaries
#   KEEP_TMP=1           keep the temp dir (configs, logs) for inspection
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CONCURRENCY=${CONCURRENCY:-"16 64"}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-1}
SETUPS=${SETUPS:-"default one"}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

for tool in redis-server redis-cli redis-benchmark wrk curl ss cargo; do
    command -v "$tool" >/dev/null || {
        echo "http_vs_redis: $tool not found (apt-get install -y redis-server wrk curl iproute2)" >&2
        exit 1
    }
done

TMP=$(mktemp -d /tmp/wxbench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # wxtoken exits within 5 s of SIGTERM; do not wait longer than that.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n ${KEEP_TMP:-} ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port no socket uses, below the kernel's ephemeral range (so no
# outgoing connection takes it before the caller binds it).
read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range
((EPHEMERAL_LOW > 11000)) || EPHEMERAL_LOW=61000
free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
        if [[ -z $(ss -Htan "sport = :$p") ]]; then
            echo "$p"
            return
        fi
    done
}

# wait_for SECS CMD…: runs CMD until it succeeds, for at most SECS seconds.
wait_for() {
    local secs=$1
    shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "http_vs_redis: timed out waiting for: $*" >&2
            return 1
        fi
        sleep 0.1
    done
}

if [[ -z ${SKIP_BUILD:-} ]]; then
    echo "== building (release)" >&2
    cargo build --release -p wxtoken-coordinator --bin wxtoken >&2
    cargo build --release -p wechat-sim >&2
fi
WXTOKEN=$TARGET_DIR/release/wxtoken
SIM=$TARGET_DIR/release/wechat-sim
for bin in "$WXTOKEN" "$SIM"; do
    [[ -x $bin ]] || {
        echo "http_vs_redis: $bin missing (build it, or unset SKIP_BUILD)" >&2
        exit 1
    }
done

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$TMP" --logfile "$TMP/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for 10 redis-cli -p "$REDIS_PORT" ping
# The port must be ours, not another process's that took it first.
if [[ $(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }') != "$REDIS_PID" ]]; then
    echo "http_vs_redis: port $REDIS_PORT answers, but not with our redis-server" >&2
    exit 1
fi

SIM_PORT=$(free_port)
APPID=wx0000000000000001
SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
API_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
RUST_LOG=warn "$SIM" --listen "127.0.0.1:$SIM_PORT" --app "$APPID:$SECRET" \
    --token-ttl 7200s >"$TMP/sim.log" 2>&1 &
PIDS+=($!)

# replica NAME PORT [VAR=VALUE…]: writes its config and starts it.
replica() {
    local name=$1 port=$2
    shift 2
    cat >"$TMP/$name.toml" <<TOML
[redis]
url = "redis://127.0.0.1:$REDIS_PORT/0"
key_prefix = "wxbench"

[http]
listen = "127.0.0.1:$port"
api_keys = { env = "WXBENCH_API_KEY" }

[upstream]
base_url = "http://127.0.0.1:$SIM_PORT"

[[apps]]
id = "shop"
appid = "$APPID"
secret = { env = "WXBENCH_SHOP_SECRET" }
TOML
    # The default log level (info): the per-request debug line is filtered
    # out, as in production.
    env "$@" WXBENCH_API_KEY="$API_KEY" WXBENCH_SHOP_SECRET="$SECRET" \
        "$WXTOKEN" serve --config "$TMP/$name.toml" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
}
PORT_DEFAULT=$(free_port)
replica default "$PORT_DEFAULT"
PORT_ONE=$(free_port)
replica one "$PORT_ONE" TOKIO_WORKER_THREADS=1

url() { echo "http://127.0.0.1:$1/v1/apps/shop/access_token"; }
for name in default one; do
    [[ $name == default ]] && port=$PORT_DEFAULT || port=$PORT_ONE
    if ! wait_for 30 curl -fsS "http://127.0.0.1:$port/readyz" ||
        ! wait_for 30 curl -fsS -H "Authorization: Bearer $API_KEY" "$(url "$port")"; then
        echo "http_vs_redis: replica $name not ready; its log (and the simulator's):" >&2
        tail -n 20 "$TMP/$name.log" "$TMP/sim.log" >&2
        exit 1
    fi
done
BODY_LEN=$(curl -fsS -H "Authorization: Bearer $API_KEY" "$(url "$PORT_DEFAULT")" | wc -c)

# The key redis-benchmark's GET reads, holding as many bytes as the HTTP body.
redis-cli -p "$REDIS_PORT" set 'key:__rand_int__' "$(head -c "$BODY_LEN" /dev/zero | tr '\0' x)" >/dev/null

# Converts wrk's latency ("123.45us", "1.23ms", "1.02s") to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000
        else if (v ~ /ms$/) n = n
        else if (v ~ /m$/) n *= 60000
        else if (v ~ /s$/) n *= 1000
        printf "%.3f", n
    }'
}

# Calibrates N so that redis-benchmark runs about DURATION seconds (and warms up).
calib=$(timeout 60 redis-benchmark -p "$REDIS_PORT" -t get -c 16 -n 200000 --csv | tail -1 | cut -d, -f2 | tr -d '"')
REDIS_N=$(awk -v r="$calib" -v d="$DURATION" 'BEGIN { printf "%d", r * d }')
# Warm the HTTP side up too (connections, allocator, caches).
for port in "$PORT_DEFAULT" "$PORT_ONE"; do
    timeout 30 wrk -t 2 -c 16 -d 2s -H "Authorization: Bearer $API_KEY" "$(url "$port")" >/dev/null
done

echo "== $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== redis $(redis-server --version | awk '{print $3}' | cut -d= -f2), $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}'), body $BODY_LEN bytes, redis N=$REDIS_N, wrk -d${DURATION}s" >&2

# http_run SETUP C: one wrk run against that setup's replica; prints "rps p50 p99".
http_run() {
    local setup=$1 c=$2 port threads out
    case $setup in
        default) port=$PORT_DEFAULT threads=2 ;;
        one) port=$PORT_ONE threads=1 ;;
        *)
            echo "http_vs_redis: unknown setup $setup" >&2
            exit 2
            ;;
    esac
    echo "== round $round, C=$c: wrk -t$threads -c $c -d ${DURATION}s --latency -H 'Authorization: Bearer ***' $(url "$port")  [$setup]" >&2
    out=$(timeout $((DURATION + 30)) wrk -t "$threads" -c "$c" -d "${DURATION}s" --latency \
        -H "Authorization: Bearer $API_KEY" "$(url "$port")")
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "http_vs_redis: wrk saw errors:" >&2
        grep -E 'Non-2xx|Socket errors' <<<"$out" >&2
        exit 1
    fi
    echo "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")" \
        "$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")" \
        "$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
}

ROWS=()
for round in $(seq "$ROUNDS"); do
    for c in $CONCURRENCY; do
        echo "== round $round, C=$c: redis-benchmark -t get -c $c -n $REDIS_N" >&2
        line=$(timeout $((DURATION * 4 + 30)) redis-benchmark -p "$REDIS_PORT" -t get -c "$c" -n "$REDIS_N" --csv | tail -1)
        IFS=, read -r _ r_rps _ _ r_p50 _ r_p99 _ <<<"$(tr -d '"' <<<"$line")"
        for setup in $SETUPS; do
            res=$(http_run "$setup" "$c")
            read -r h_rps h_p50 h_p99 <<<"$res"
            ratio=$(awk -v h="$h_rps" -v r="$r_rps" 'BEGIN { printf "%.2f", h / r }')
            ROWS+=("$c|$r_rps|$r_p50|$r_p99|$setup|$h_rps|$h_p50|$h_p99|$ratio")
        done
    done
done

for name in default one; do
    if grep -qiE 'panicked|ERROR' "$TMP/$name.log"; then
        echo "http_vs_redis: wxtoken ($name) logged errors:" >&2
        grep -iE 'panicked|ERROR' "$TMP/$name.log" | head >&2
    fi
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo
echo "| C | redis GET req/s | redis p50 / p99 (ms) | wxtoken setup | wxtoken HTTP req/s | HTTP p50 / p99 (ms) | HTTP / Redis |"
echo "|---|---|---|---|---|---|---|"
for row in "${ROWS[@]}"; do
    IFS='|' read -r c r_rps r_p50 r_p99 setup h_rps h_p50 h_p99 ratio <<<"$row"
    case $setup in
        default) setup="default runtime ($(nproc) workers), wrk -t2" ;;
        one) setup="1 worker, wrk -t1" ;;
    esac
    printf "| %s | %.0f | %s / %s | %s | %.0f | %s / %s | %s |\n" \
        "$c" "$r_rps" "$r_p50" "$r_p99" "$setup" "$h_rps" "$h_p50" "$h_p99" "$ratio"
done
