#!/usr/bin/env bash
# Where an idle socket's bytes go: the release server under heaptrack (Debian's), N sockets opened
# and held by `wsgate-bench idle` (authenticated in lobby, or `--pending`), then the server stopped
# and heaptrack's peak consumption printed per allocation site, divided by N. The figures of the
# memory breakdown in docs/benchmarks.md come from here. Not part of CI (heaptrack slows the
# server several times; the bytes it counts do not depend on speed).
#
#   scripts/heap-profile.sh [--pending] [--sockets N] [--rooms-per-socket K]
#
# Output: target/heap/ (heaptrack's file, the printed report, the bench run, the server log).
set -euo pipefail
cd "$(dirname "$0")/.."

sockets=10000
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pending) extra+=(--pending) ;;
    --sockets) sockets=$2; shift ;;
    --rooms-per-socket) extra+=(--rooms-per-socket "$2"); shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "heap-profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v heaptrack >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq heaptrack >/dev/null
fi
cargo build --release --quiet --workspace --bins

out=target/heap
rm -rf "$out"
mkdir -p "$out"
source scripts/lib/wsgate.sh
# heaptrack starts the server (WSGATE_LAUNCH); wsgate_start waits for its health answer.
WSGATE_LAUNCH=(heaptrack -o "$(pwd)/$out/wsgate")
wsgate_start target/release/wsgate "$out/server.log" \
  WSGATE_JWT_SECRET=wsgate-heap-secret-wsgate-heap-secret-0123 WSGATE_JWT_TTL_SECS=3600 \
  WSGATE_BCRYPT_COST=4 WSGATE_MAX_CONNECTIONS=25000 WSGATE_AUTH_TIMEOUT_MS=600000 \
  "${WSGATE_RATE_LIMITS_OFF[@]}"
trap 'wsgate_stop' EXIT
# The server is heaptrack's child: it gets the SIGTERM (a graceful stop), heaptrack then writes.
server=$(pgrep -P "$WSGATE_PID" -x wsgate || pgrep -n -x wsgate)
target/release/wsgate-bench --url "http://$WSGATE_HOSTPORT" --server-pid "$server" --label heap \
  idle --sockets "$sockets" --hold 2 --settle 1 "${extra[@]}" | tee "$out/bench.txt"
kill -TERM "$server"
for _ in $(seq 1 300); do kill -0 "$WSGATE_PID" 2>/dev/null || break; sleep 0.1; done
wsgate_stop
trap - EXIT
file=$(ls "$out"/wsgate*.zst "$out"/wsgate*.gz 2>/dev/null | head -1)
heaptrack_print --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
  --peak-limit 40 "$file" >"$out/report.txt"
echo
echo "peak heap consumption by site, per socket ($sockets sockets; report: $out/report.txt):"
awk -v n="$sockets" '
  /^[0-9.]+[KMG]?B? peak memory consumed over/ || /peak memory consumed over/ { print; next }
  /^PEAK MEMORY CONSUMERS/ { on = 1; next }
  on && /^[0-9.]+[KMGB]+ peak memory consumed/ {
    v = $1; m = 1
    if (v ~ /K/) m = 1000; else if (v ~ /M/) m = 1000000; else if (v ~ /G/) m = 1000000000
    gsub(/[KMGB]/, "", v)
    printf "%8.0f B/socket  ", v * m / n
    getline; print $0
  }' "$out/report.txt" | head -40
grep -E "^peak heap memory consumption|^total memory leaked|^calls to allocation" "$out/report.txt" || true
