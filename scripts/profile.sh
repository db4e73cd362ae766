#!/usr/bin/env bash
# Where the server's CPU goes in a workload: the release server pinned to CPU 0, `perf record` (the
# cpu-clock software event: this KVM guest has no hardware counters) on it while `wsgate-bench`
# runs the workload on CPU 1, then the samples grouped by what they are (kernel TCP, HTTP parsing,
# JWT and MACs, JSON, the store, the hub, the allocator, logging, the runtime), each group also in
# µs of the workload's unit (a handshake, a delivered frame). The profiles in docs/benchmarks.md
# come from here. Not part of CI. The samples include the workload's untimed setup (its users'
# logins: bcrypt), which is shown as its own group.
#
#   scripts/profile.sh                                   a handshake profile (50 workers)
#   scripts/profile.sh fanout --sockets 1000 --senders 10 --window 4 --duration 10
#
# PROFILE_DELAY_MS: start sampling that late (skip a long setup, e.g. 3000 for 1,000 sockets).
# Output: target/profile/ (perf.data, the flat report, the grouped table, the bench run).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h|--help) sed -n '2,14p' "$0"; exit 0 ;; esac
workload=("$@")
[ ${#workload[@]} -gt 0 ] || workload=(handshake --workers 50 --cycles 400 --max-secs 30)

if ! command -v perf >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
cargo build --release --quiet --workspace --bins

out=target/profile
rm -rf "$out"
mkdir -p "$out"
source scripts/lib/wsgate.sh
WSGATE_LAUNCH=(taskset -c 0)
wsgate_start target/release/wsgate "$out/server.log" \
  WSGATE_JWT_SECRET=wsgate-prof-secret-wsgate-prof-secret-0123 WSGATE_JWT_TTL_SECS=3600 \
  WSGATE_BCRYPT_COST=4 WSGATE_MAX_CONNECTIONS=25000 "${WSGATE_RATE_LIMITS_OFF[@]}"
trap 'wsgate_stop' EXIT
taskset -c 1 target/release/wsgate-bench --url "http://$WSGATE_HOSTPORT" --server-pid "$WSGATE_PID" \
  --label profile "${workload[@]}" >"$out/bench.txt" &
bench_pid=$!
sleep "$(awk -v ms="${PROFILE_DELAY_MS:-0}" 'BEGIN { print ms / 1000 }')"
perf record -q -e cpu-clock -F 4000 -p "$WSGATE_PID" -o "$out/perf.data" 2>"$out/perf.log" &
perf_pid=$!
wait "$bench_pid"
kill -INT "$perf_pid"
wait "$perf_pid" || true
wsgate_stop
trap - EXIT

perf report -i "$out/perf.data" --stdio --no-children --sort sym --percent-limit 0 2>/dev/null \
  | grep -E '^ +[0-9.]+%' >"$out/flat.txt"
# The workload's unit: a handshake, or a delivered frame (the first phase).
cpu=$(grep -o '"server_cpu_us_per_\(handshake\|delivery\)":[0-9.]*' "$out/bench.txt" | head -1)
unit=${cpu#*per_}; unit=${unit%%\"*}
cpu=${cpu##*:}
echo "${workload[*]}: server CPU per $unit: $cpu µs (wsgate-bench, measured phase)"
# Groups, first match wins; each share of the samples is also given in µs of one handshake.
awk -v cpu="$cpu" -v unit="$unit" '
  function group(sym) {
    if (sym ~ /\[k\]/) {
      if (sym ~ /tcp|inet|ip_|sk_|sock|skb|__dev|net_|nf_|neigh|loopback|napi|__netif|dst_|raw_|fib|rt_/) return "kernel: TCP/IP and sockets"
      if (sym ~ /epoll|ep_|poll/) return "kernel: epoll"
      if (sym ~ /sched|switch|futex|wake|idle|tick|hrtimer|clock|update_|enqueue|dequeue|pick_/) return "kernel: scheduler, futex, timers"
      if (sym ~ /alloc|free|page|slab|kmem|memcg|mmap|munmap|zap|fault|cache/) return "kernel: memory"
      return "kernel: syscalls and other"
    }
    if (sym ~ /blowfish|bcrypt/) return "bcrypt (the setup logins, before the timed phase)"
    if (sym ~ /malloc|free|realloc|calloc|_int_|tcache|arena|unlink_chunk|__rdl_|__rust_alloc|__rust_dealloc|memcpy|memmove|memset|__memc|__mem/) return "allocator and memcpy (libc)"
    if (sym ~ /clock_gettime|Instant>::now|SystemTime/) return "clocks"
    if (sym ~ /prometheus/) return "metrics"
    if (sym ~ /sha2|hmac|Sha256|compress256|digest|jsonwebtoken|base64|subtle|block_buffer/) return "JWT, ticket MAC, base64"
    if (sym ~ /httparse|hyper|http::|warp|headers|mime|percent_encoding|form_urlencoded/) return "HTTP: parsing, routing, responses"
    if (sym ~ /serde|json/) return "JSON"
    if (sym ~ /tungstenite/) return "WebSocket framing (tungstenite)"
    if (sym ~ /tracing|fmt::|core::fmt|Formatter|write_str|Display|flt2dec|Stdout|libc_write/) return "logging and formatting"
    if (sym ~ /store|ticket|sessions|auth::/) return "store, tickets, sessions"
    if (sym ~ /realtime|hub|inbox|presence/) return "hub and presence"
    if (sym ~ /tokio|mio|parking|futures|scheduler|Waker|waker|Future>::poll|poll_fn|FnOnce/) return "async runtime and futures"
    if (sym ~ /bytes::|from_utf8|hash|hashbrown/) return "bytes, UTF-8, hashing"
    if (sym ~ /wsgate/) return "wsgate, other"
    return "other user space"
  }
  {
    pct = $1; sub(/%/, "", pct)
    sym = $0; sub(/^ +[0-9.]+% +/, "", sym)
    g = group(sym); share[g] += pct; total += pct
  }
  END {
    printf "%-50s %7s %9s\n", "where", "share", "µs/" unit
    n = 0
    for (g in share) order[++n] = g
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (share[order[j]] > share[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
    for (i = 1; i <= n; i++) printf "%-50s %6.1f%% %9.2f\n", order[i], share[order[i]], share[order[i]] * cpu / total
  }' "$out/flat.txt" | tee "$out/groups.txt"
echo
echo "top symbols ($out/flat.txt):"
head -25 "$out/flat.txt"
