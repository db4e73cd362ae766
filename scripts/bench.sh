#!/usr/bin/env bash
# Load benchmarks of wsgate with wsgate-bench (docs/benchmarks.md).
#
#   scripts/bench.sh                 the standard set: release builds, server pinned to CPU 0 and the
#                                    tool to CPU 1, a fresh server per workload; prints the tables,
#                                    the JSON lines and a summary against the targets
#   scripts/bench.sh --only a,b      only the runs with these labels (see the list below)
#   scripts/bench.sh --repeat N      each run N times, a fresh server each time (default 3: the report
#                                    gives the median and the spread; --repeat 1 for a quick look)
#   scripts/bench.sh --smoke         every workload tiny, debug builds, no pinning, one server:
#                                    correctness only (never timed); exits non-zero on any failure
#
# Output goes to target/bench/ (or --out DIR): results.txt (everything the tool printed),
# results.jsonl (one JSON line per run), server-LABEL.log (each server's log), charts/*.svg (the
# cost curves, drawn by `wsgate-bench chart`). A full standard set (no --only) also writes the
# charts to docs/bench/, stamped with the machine and the commit.
# Environment: BENCH_CLOSE=reply|send (how the tool closes sockets, default reply: wait for the
# server's close frame as RFC 6455 clients do), BENCH_PIN=0 (no taskset), BENCH_RUST_LOG (server log
# filter, default info), BENCH_SERVER (the server binary to measure, default this tree's release
# build: for before/after comparisons), BENCH_FLOOR=1 (each CPU run of wsgate is followed by the same
# run against `wsgate-floor`, labelled floor-LABEL: the same exchanges with hyper and
# tokio-tungstenite alone and no application logic, the reference figures of this machine;
# docs/benchmarks.md), BENCH_MAX_NOISE (default 10: a run during which
# other processes used more than this % of a core is repeated, up to 3 attempts; SecantusDB, Redis
# and nginx are the workload's own helpers, whose CPU the tool reports apart and does not count),
# BENCH_MAX_STEAL (default 1: so is a run during which a CPU lost more than this % to steal).
#
# Cluster runs (cluster-*): three nodes pinned like the single server, one redis-server, SecantusDB
# and nginx (deploy/nginx.conf) on the tool's CPU; the tool drives the nodes directly (`--nodes`) or
# through nginx, and sums the nodes' CPU.
#
# Only 127.0.0.0/8 is used: the server listens on 127.0.0.1 (a free port) and the tool opens its
# sockets from 127.0.0.1..50. Every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
out=target/bench
only=""
repeat=3
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) mode=smoke ;;
    --out) out=$2; shift ;;
    --only) only=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --repeat takes a positive number, got $repeat" >&2; exit 2; }
mkdir -p "$out"
results="$out/results.txt"
: >"$results"

if [ "$mode" = smoke ]; then
  profile=debug
  cargo build --quiet --workspace --bins
else
  profile=release
  cargo build --release --quiet --workspace --bins
fi
# BENCH_SERVER: another server binary (a before/after comparison); the tool is always this tree's.
server_bin="${BENCH_SERVER:-target/$profile/wsgate}"
bench_bin="target/$profile/wsgate-bench"
floor_bin="target/$profile/wsgate-floor"

pin_server=()
pin_bench=()
if [ "$mode" = full ] && [ "${BENCH_PIN:-1}" != 0 ] && command -v taskset >/dev/null \
  && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0)
  pin_bench=(taskset -c 1)
fi

source scripts/lib/wsgate.sh
WSGATE_LAUNCH=("${pin_server[@]}")
server_pid=""
addr=""
# Extra settings of the servers started next (run_on_mongodb sets the store).
server_env=()
mongo_pid=""

stop_server() {
  wsgate_stop
  server_pid=""
}
trap 'stop_cluster; stop_server; stop_mongo' EXIT

# start_server BCRYPT_COST LOG_NAME: a fresh server with rate limits off, on a free loopback port.
start_server() {
  local cost=$1 log="$out/server-$2.log"
  wsgate_start "$server_bin" "$log" \
    RUST_LOG="${BENCH_RUST_LOG:-${RUST_LOG:-info}}" \
    WSGATE_JWT_SECRET=wsgate-bench-secret-wsgate-bench-secret-0123 \
    WSGATE_JWT_TTL_SECS=3600 WSGATE_BCRYPT_COST="$cost" WSGATE_MAX_CONNECTIONS=25000 \
    "${WSGATE_RATE_LIMITS_OFF[@]}" "${server_env[@]}" || exit 1
  server_pid=$WSGATE_PID
  addr=$WSGATE_HOSTPORT
}

# The tool's extra arguments for the current target (a cluster's other nodes).
target_args=()
cluster_pids=()
redis_pid=""
nginx_pid=""

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# SecantusDB (a Python server) answers a burst of 64 parallel socket opens in seconds, not
# milliseconds as MongoDB does: the runs on it give every store call 15 s, so that the setup's
# tickets do not fail on the emulator's speed (the figures are measured after it).
mongo_timeout_ms=15000

# SecantusDB for the runs that need MongoDB (on the tool's CPU): a fresh one per run, stopped with
# the run's servers. One kept for the whole set held every run's users, tickets and history in
# memory, and each run on it cost more of the tool's core than the one before: the 1,000 sockets
# of the fourth run took 48 s to open instead of 17 s, and the emulator's share of a cluster run's
# measured phase was 30 % of a core instead of 5 %.
stop_mongo() {
  [ -z "$mongo_pid" ] || scripts/secantus.sh stop "$mongo_pid"
  mongo_pid=""
}
ensure_mongo() {
  if [ -z "$mongo_pid" ]; then
    scripts/secantus.sh install >/dev/null
    mongo_pid="$out/bench-secantus.pid"
    mongo_uri=$("${pin_bench[@]}" scripts/secantus.sh start "$mongo_pid")
  fi
}

# How many nodes start_cluster starts (1 for the control run that has the cluster engine but no
# second node).
cluster_nodes=3

# start_cluster LABEL: redis-server, `cluster_nodes` nodes on it and on SecantusDB, nginx in front.
# Sets `addr` (the first node), `server_pid` (every node, comma-separated), `nodes_args` and `front`.
start_cluster() {
  local label=$1 redis_port front_port dir i redis_bin nginx_bin
  ensure_mongo
  # Installed (on a fresh machine) before anything starts: inside a background command, the
  # install would run against the readiness waits below.
  redis_bin=$(scripts/cluster-tools.sh bin redis-server)
  nginx_bin=$(scripts/cluster-tools.sh bin nginx)
  redis_port=$(free_port)
  "${pin_bench[@]}" "$redis_bin" --bind 127.0.0.1 \
    --port "$redis_port" --save '' --appendonly no >"$out/redis-$label.log" 2>&1 &
  redis_pid=$!
  for i in $(seq 1 101); do
    redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
    [ "$i" -lt 101 ] || { echo "redis-server did not start:" >&2; cat "$out/redis-$label.log" >&2; exit 1; }
    sleep 0.05
  done
  server_env=(WSGATE_MONGODB_URI="$mongo_uri" WSGATE_MONGODB_DB="bench_${label//-/_}"
    WSGATE_MONGODB_TIMEOUT_MS="$mongo_timeout_ms" WSGATE_REDIS_URL="redis://127.0.0.1:$redis_port" WSGATE_TRUSTED_PROXIES=127.0.0.1)
  cluster_pids=()
  local addrs=()
  for i in $(seq 1 "$cluster_nodes"); do
    start_server 4 "$label-node$i"
    cluster_pids+=("$server_pid")
    addrs+=("$addr")
    WSGATE_PID=""
  done
  server_env=()
  addr=${addrs[0]}
  server_pid=$(IFS=,; echo "${cluster_pids[*]}")
  nodes_args=()
  if [ "${#addrs[@]}" -gt 1 ]; then
    nodes_args=(--nodes "$(printf 'http://%s,' "${addrs[@]:1}" | sed 's/,$//')")
  fi
  # nginx resolves a relative -c against its -p: both absolute.
  mkdir -p "$out/nginx-$label"
  dir=$(cd "$out/nginx-$label" && pwd)
  cp deploy/nginx.conf "$dir/nginx.conf"
  front_port=$(free_port)
  echo "listen 127.0.0.1:$front_port;" >"$dir/wsgate-listen.conf"
  printf 'server %s;\n' "${addrs[@]}" >"$dir/wsgate-upstreams.conf"
  "${pin_bench[@]}" "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" \
    -g 'daemon off;' >"$out/nginx-$label.log" 2>&1 &
  nginx_pid=$!
  front=127.0.0.1:$front_port
  for i in $(seq 1 101); do
    [ "$(wsgate_health "$front")" = 200 ] && break
    [ "$i" -lt 101 ] || { echo "nginx did not come up:" >&2; cat "$out/nginx-$label.log" >&2; exit 1; }
    sleep 0.05
  done
}

stop_cluster() {
  [ -z "$nginx_pid" ] || { kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; }
  nginx_pid=""
  local pid
  for pid in "${cluster_pids[@]}"; do
    WSGATE_PID=$pid
    wsgate_stop
  done
  cluster_pids=()
  [ -z "$redis_pid" ] || { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; }
  redis_pid=""
  server_pid=""
  stop_mongo
}

failed=0
jsonl="$out/results.jsonl"
: >"$jsonl"
last_json=""
last_noise=""

# bench LABEL WORKLOAD ARGS…: runs the tool against the current server; its JSON line goes to
# $last_json, the largest "other CPU" share of its phases (CPU used by neither the server nor the
# tool: other processes on the machine) to $last_noise, and the largest steal of any CPU (time the
# hypervisor gave another guest) to $last_steal.
bench() {
  local label=$1
  shift
  local check=()
  [ "$mode" = smoke ] && check=(--check)
  local tmp="$out/.last-run.txt"
  echo "== $label: wsgate-bench $*" | tee -a "$results"
  # SecantusDB, Redis and nginx are part of the workload: their CPU is not "other" (noise).
  local helpers=() helper_args=()
  [ -z "$mongo_pid" ] || [ ! -s "$mongo_pid" ] || helpers+=("$(cat "$mongo_pid")")
  [ -z "$redis_pid" ] || helpers+=("$redis_pid")
  if [ -n "$nginx_pid" ]; then
    helpers+=("$nginx_pid")
    mapfile -t -O "${#helpers[@]}" helpers < <(pgrep -P "$nginx_pid" || true)
  fi
  [ "${#helpers[@]}" -eq 0 ] || helper_args=(--helper-pid "$(IFS=,; echo "${helpers[*]}")")
  local status=0
  "${pin_bench[@]}" "$bench_bin" --url "http://$addr" --server-pid "$server_pid" "${target_args[@]}" "${helper_args[@]}" \
    --label "$label" --close "${BENCH_CLOSE:-reply}" "${check[@]}" "$@" 2>&1 \
    | tee "$tmp" | tee -a "$results" || status=$?
  last_json=$(grep '^{' "$tmp" | tail -1 || true)
  last_noise=$(grep -o '"other_cpu_pct":-\?[0-9.]*' <<<"$last_json" | cut -d: -f2 | sort -g | tail -1 || true)
  last_steal=$(grep -o '"cpu_steal_pct":\[[^]]*\]' <<<"$last_json" | grep -o '[0-9.][0-9.]*' | sort -g | tail -1 || true)
  return "$status"
}

# True when the last run shared the machine with more than BENCH_MAX_NOISE % of a core (default
# 10), or a CPU lost more than BENCH_MAX_STEAL % of its time to steal (default 1: on the AMD host,
# 2.5-5 % of steal took the 20 msg/s p99 from 13.6 to 22.7-25.1 ms; docs/benchmarks.md).
noisy() {
  awk -v n="${last_noise:-0}" -v max="${BENCH_MAX_NOISE:-10}" \
    -v steal="${last_steal:-0}" -v max_steal="${BENCH_MAX_STEAL:-1}" \
    'BEGIN { exit !(n + 0 > max + 0 || steal + 0 > max_steal + 0) }'
}

selected() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

# measured LABEL START STOP CMD…: `--repeat` times START LABEL (words of a command), CMD, STOP. A
# run disturbed by other processes (see `noisy`) is repeated, up to 3 attempts; the last attempt's
# figures are kept.
measured() {
  local label=$1 start=$2 stop=$3
  shift 3
  selected "$label" || return 0
  local rep attempt ok
  for rep in $(seq 1 "$repeat"); do
    for attempt in 1 2 3; do
      ok=1
      $start "$label"
      "$@" || ok=0
      $stop
      if [ "$ok" = 1 ] && noisy && [ "$attempt" -lt 3 ]; then
        echo "-- $label: other processes used ${last_noise}% of a core, steal up to ${last_steal:-0}% of a CPU, during the run; again" \
          | tee -a "$results"
        continue
      fi
      break
    done
    if [ "$ok" != 1 ]; then
      echo "FAIL $label" | tee -a "$results"
      failed=1
    fi
    if [ -n "$last_json" ]; then echo "$last_json" >>"$jsonl"; fi
  done
}

# run LABEL BCRYPT_COST WORKLOAD ARGS…: a fresh server per run (`measured`).
run() {
  local label=$1 cost=$2
  shift 2
  measured "$label" "start_server $cost" stop_server bench "$label" "$@"
}

# run_with_floor LABEL BCRYPT_COST WORKLOAD ARGS…: `run`, then with BENCH_FLOOR=1 the same against
# wsgate-floor as floor-LABEL (selected with LABEL).
run_with_floor() {
  local label=$1
  run "$@"
  shift
  if [ "${BENCH_FLOOR:-0}" = 1 ] && selected "$label"; then
    local saved_bin=$server_bin saved_only=$only
    server_bin=$floor_bin
    only=""
    run "floor-$label" "$@"
    server_bin=$saved_bin
    only=$saved_only
  fi
}

# start_on_mongodb BCRYPT_COST LABEL: a fresh SecantusDB (the MongoDB wire protocol, on the other
# CPU than the server's) and a fresh server on it.
start_on_mongodb() {
  ensure_mongo
  server_env=(WSGATE_MONGODB_URI="$mongo_uri" WSGATE_MONGODB_DB="bench_${2//-/_}"
    WSGATE_MONGODB_TIMEOUT_MS="$mongo_timeout_ms")
  start_server "$1" "$2"
  server_env=()
}

stop_on_mongodb() {
  stop_server
  stop_mongo
}

# run_on_mongodb LABEL BCRYPT_COST WORKLOAD ARGS…: `run`, with the server on SecantusDB.
run_on_mongodb() {
  local label=$1 cost=$2
  shift 2
  measured "$label" "start_on_mongodb $cost" stop_on_mongodb bench "$label" "$@"
}

# run_cluster LABEL VIA WORKLOAD ARGS…: a fresh cluster per run (`measured`), driven through VIA
# (`direct`: the tool spreads its sockets over the three nodes; `nginx`: through the front).
run_cluster() {
  local label=$1 via=$2
  shift 2
  measured "$label" start_cluster stop_cluster cluster_bench "$label" "$via" "$@"
}

# cluster_bench LABEL VIA WORKLOAD ARGS…: `bench` against the current cluster.
cluster_bench() {
  local label=$1 via=$2 status=0
  shift 2
  local first=$addr
  if [ "$via" = nginx ]; then addr=$front; target_args=(); else target_args=("${nodes_args[@]}"); fi
  bench "$label" "$@" || status=$?
  addr=$first
  target_args=()
  return "$status"
}

# smoke LABEL WORKLOAD ARGS…: one tiny run against the shared smoke server.
smoke() {
  if ! bench "$@"; then
    echo "FAIL $1" | tee -a "$results"
    failed=1
  fi
  if [ -n "$last_json" ]; then echo "$last_json" >>"$jsonl"; fi
}

if [ "$mode" = smoke ]; then
  start_server 4 smoke
  smoke smoke-handshake handshake --workers 2 --cycles 3 --warmup 1 --max-secs 30
  smoke smoke-fanout fanout --sockets 20 --senders 2 --max-messages 20 --duration 5 --warmup 0
  smoke smoke-fanout-rate fanout --sockets 20 --senders 2 --rate 20 --duration 1 --warmup 0 \
    --login-storm 2
  smoke smoke-fanout-rooms fanout --sockets 20 --rooms 10 --rate 20 --duration 1 --warmup 0
  smoke smoke-fanout-room fanout --sockets 10 --rooms 1 --senders 2 --rate 10 --duration 1 \
    --warmup 0 --idle-sockets 10
  smoke smoke-idle idle --sockets 20 --hold 1 --settle 0.2
  smoke smoke-idle-rooms idle --sockets 20 --hold 1 --settle 0.2 --rooms-per-socket 3
  smoke smoke-idle-pending idle --sockets 20 --hold 1 --settle 0.2 --pending
  smoke smoke-login login --workers 1 --logins 5 --max-secs 30
  stop_server
  # The floor server (BENCH_FLOOR) answers the same workloads.
  saved_bin=$server_bin
  server_bin=$floor_bin
  start_server 4 smoke-floor
  smoke smoke-floor-handshake handshake --workers 2 --cycles 3 --warmup 1 --max-secs 30
  smoke smoke-floor-fanout-room fanout --sockets 10 --rooms 1 --senders 2 --rate 10 --duration 1 \
    --warmup 0 --idle-sockets 10
  stop_server
  server_bin=$saved_bin
  start_cluster smoke-cluster
  for via in direct nginx; do
    if ! cluster_bench "smoke-cluster-$via" "$via" fanout --sockets 30 --senders 3 --rate 20 \
      --duration 1 --warmup 0; then
      echo "FAIL smoke-cluster-$via" | tee -a "$results"
      failed=1
    fi
    if [ -n "$last_json" ]; then echo "$last_json" >>"$jsonl"; fi
  done
  if ! cluster_bench smoke-cluster-handshake nginx handshake --workers 2 --cycles 3 --warmup 1 \
    --max-secs 30; then
    echo "FAIL smoke-cluster-handshake" | tee -a "$results"
    failed=1
  fi
  if [ -n "$last_json" ]; then echo "$last_json" >>"$jsonl"; fi
  stop_cluster
else
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)," \
    "open files $(ulimit -Hn)" | tee -a "$results"
  echo "pinning: server ${pin_server[*]:-none}, tool ${pin_bench[*]:-none}" | tee -a "$results"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), repeat $repeat" | tee -a "$results"
  # Handshakes: 50 workers, ~10 s. `reply` closes as browsers do; `send` does not wait for the
  # server's close frame, so it shows handshake capacity even when close replies are slow.
  run_with_floor handshake 4 handshake --workers 50 --cycles 700 --max-secs 15
  run handshake-send 4 handshake --workers 50 --cycles 700 --max-secs 15 --close send
  # Chart: handshake latency against concurrency (50 workers is `handshake`).
  for workers in 10 25 100; do
    run "handshake-workers-$workers" 4 handshake --workers "$workers" --cycles $((35000 / workers)) --max-secs 15
  done
  # Fan-out: 1,000 sockets, full rate (window-bound), then 20 messages/s in total (20,000 deliveries/s).
  run_with_floor fanout-full 4 fanout --sockets 1000 --senders 10 --window 4 --duration 10
  run_with_floor fanout-20 4 fanout --sockets 1000 --senders 10 --rate 20 --duration 10
  # Chart: CPU per delivery against rate (20 msg/s is `fanout-20`).
  for rate in 5 10 40 80; do
    run "fanout-rate-$rate" 4 fanout --sockets 1000 --senders 10 --rate "$rate" --duration 10
  done
  # The same with the history written to MongoDB (SecantusDB) instead of the embedded store.
  run_on_mongodb fanout-20-mongodb 4 fanout --sockets 1000 --senders 10 --rate 20 --duration 10
  # The same at bcrypt cost 12: a quiet phase, then one with 8 login loops.
  run fanout-storm 12 fanout --sockets 1000 --senders 10 --rate 20 --duration 10 --login-storm 8
  # Rooms: 10,000 sockets either way, 10,000 deliveries/s either way: 1,000 rooms of 10 (one
  # sender per room, 1 msg/s each), or one room of 1,000 (10 senders, 10 msg/s in all) beside
  # 9,000 sockets in no room. The CPU per delivery should not depend on how many sockets the node
  # holds, only on the room's. (The pair also differs in frames per socket: 1/s in rooms of 10,
  # 10/s in the room of 1,000. `rooms-size-1000` below has rooms-small's 1/s; the report shows
  # that pair too. docs/benchmarks.md, "The rooms ratio".)
  run_with_floor rooms-small 4 fanout --sockets 10000 --rooms 1000 --rate 1000 --duration 10
  run_with_floor rooms-big 4 fanout --sockets 1000 --rooms 1 --senders 10 --rate 10 --duration 10 \
    --idle-sockets 9000
  # Chart: CPU per delivery against room size, 10,000 sockets and 10,000 deliveries/s throughout
  # (rooms of 10 are `rooms-small`).
  run rooms-size-100 4 fanout --sockets 10000 --rooms 100 --rate 100 --duration 10
  run_with_floor rooms-size-1000 4 fanout --sockets 10000 --rooms 10 --rate 10 --duration 10
  # Idle memory: a fresh server per size (the chart of RSS against sockets).
  run idle-1k 4 idle --sockets 1000 --hold 10
  run idle-5k 4 idle --sockets 5000 --hold 10
  run idle-10k 4 idle --sockets 10000 --hold 10
  run idle-19k 4 idle --sockets 19000 --hold 10
  # A PENDING socket (upgraded, never authenticated): the auth timeout outlasts the run.
  server_env=(WSGATE_AUTH_TIMEOUT_MS=300000)
  run idle-pending-10k 4 idle --sockets 10000 --hold 10 --pending
  server_env=()
  # The memory of a room subscription: 10,000 sockets in lobby and 10 rooms each.
  run idle-rooms 4 idle --sockets 10000 --hold 10 --rooms-per-socket 10
  # A cluster: three nodes (pinned to the server's CPU, their CPU summed), Redis, SecantusDB and
  # nginx on the tool's CPU. The single-node load of fanout-20 spread over the nodes (1,000
  # sockets, 20 msg/s from 10 senders, every node holding a third of each room): most deliveries
  # cross nodes. Compare with fanout-20-mongodb (the same store).
  run_cluster cluster-fanout-20 direct fanout --sockets 1000 --senders 10 --rate 20 --duration 10
  # The control for it: the same load and the same cluster engine (Redis, SecantusDB) on ONE node.
  # What cluster-fanout-20 adds over this run is the second and third process on the server's CPU;
  # what this run adds over fanout-20-mongodb is the Redis hop. Not in the standard set.
  if [ -n "$only" ]; then
    cluster_nodes=1
    run_cluster cluster1-fanout-20 direct fanout --sockets 1000 --senders 10 --rate 20 --duration 10
    cluster_nodes=3
  fi
  # Chart: cross-node latency against load (20 msg/s is `cluster-fanout-20`).
  for rate in 5 10 40; do
    run_cluster "cluster-fanout-rate-$rate" direct fanout --sockets 1000 --senders 10 --rate "$rate" --duration 10
  done
  run_cluster cluster-fanout-20-nginx nginx fanout --sockets 1000 --senders 10 --rate 20 --duration 10
  run_cluster cluster-handshake-nginx nginx handshake --workers 50 --cycles 300 --max-secs 15
  # Logins at the production cost.
  run login 12 login --workers 8 --logins 6 --max-secs 60
fi

echo
"$bench_bin" report "$jsonl" | tee -a "$results"
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, $(uname -r)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
"$bench_bin" chart "$jsonl" --out "$out/charts" \
  --footnote "scripts/bench.sh, $mode, repeat $repeat: $machine; commit $commit; $(date -u +%F)" | tee -a "$results"
if [ "$mode" = full ] && [ -z "$only" ] && [ "$failed" = 0 ]; then
  mkdir -p docs/bench
  cp "$out"/charts/*.svg docs/bench/
  echo "charts copied to docs/bench/" | tee -a "$results"
fi
echo
echo "results: $results, $jsonl"
if [ "$failed" != 0 ]; then
  # What the servers said went wrong, so that a failure on a CI machine explains itself.
  for log in "$out"/server-*.log "$out"/redis-*.log "$out"/nginx-*.log; do
    [ -s "$log" ] || continue
    lines=$(grep -E ' (WARN|ERROR) |# WARNING|\[(warn|error|crit|alert|emerg)\]' "$log" | tail -n 40 || true)
    [ -z "$lines" ] || printf '\nwarnings and errors in %s (the last 40):\n%s\n' "$log" "$lines" >&2
  done
  echo "bench.sh: some runs failed (see FAIL lines above)" >&2
  exit 1
fi
