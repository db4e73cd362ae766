#!/usr/bin/env bash
# Soak test (not part of CI): connection churn plus chat at a moderate rate against one release
# server, for a while, printing the server's RSS and open file descriptors every 30 s. Both must stay
# flat: a leak of sockets, tasks, limiter state or buffers shows as a line that keeps climbing.
#
#   scripts/soak.sh [--minutes N] [--churn-workers N] [--chat-sockets N] [--chat-rate R]
#
# Defaults: 10 minutes; 4 workers each cycling ticket → upgrade → auth → close without pause (each
# with its own user, so every cycle also broadcasts joined/left); 200 sockets chatting at 50 messages/s
# in total (10,000 deliveries/s). Only 127.0.0.1 is used, and every loop ends by itself.
# Output: the samples on stdout and in target/soak/samples.txt; each tool's report in target/soak/.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
churn_workers=4
chat_sockets=200
chat_rate=50
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift ;;
    --churn-workers) churn_workers=$2; shift ;;
    --chat-sockets) chat_sockets=$2; shift ;;
    --chat-rate) chat_rate=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
secs=$((minutes * 60))
out=target/soak
mkdir -p "$out"

cargo build --release --quiet --workspace --bins
server_bin=target/release/wsgate
bench_bin=target/release/wsgate-bench

source scripts/lib/wsgate.sh
log="$out/server.log"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wsgate_stop
  wait 2>/dev/null || true
}
trap cleanup EXIT

wsgate_start "$server_bin" "$log" RUST_LOG=warn \
  WSGATE_JWT_SECRET=wsgate-soak-secret-wsgate-soak-secret-0123 \
  WSGATE_JWT_TTL_SECS=3600 WSGATE_BCRYPT_COST=4 "${WSGATE_RATE_LIMITS_OFF[@]}"
server_pid=$WSGATE_PID
url="http://$WSGATE_HOSTPORT"

echo "soak: $minutes min against $url (pid $server_pid), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
echo "load: churn $churn_workers workers (ticket, upgrade, auth, close, no pause);" \
  "chat $chat_sockets sockets at $chat_rate messages/s"

"$bench_bin" --url "$url" --label soak-churn handshake --workers "$churn_workers" \
  --cycles 100000000 --max-secs "$secs" >"$out/churn.txt" 2>&1 &
pids+=($!)
"$bench_bin" --url "$url" --label soak-chat fanout --sockets "$chat_sockets" --senders 5 \
  --rate "$chat_rate" --duration "$secs" --warmup 0 >"$out/chat.txt" 2>&1 &
pids+=($!)

metric() { grep -m1 "^$1 " <<<"$2" | awk '{print $2}'; }
samples="$out/samples.txt"
printf '%8s %10s %6s %8s %8s %12s %12s\n' elapsed_s rss_kib fds pending authed upgrades frames \
  | tee "$samples"
started=$(date +%s)
while :; do
  elapsed=$(($(date +%s) - started))
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "soak.sh: wsgate exited during the soak; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
  fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  scrape=$(curl -s --max-time 5 "$url/metrics" || true)
  printf '%8s %10s %6s %8s %8s %12s %12s\n' "$elapsed" "$rss" "$fds" \
    "$(metric 'wsgate_sockets{state="pending"}' "$scrape")" \
    "$(metric 'wsgate_sockets{state="authenticated"}' "$scrape")" \
    "$(metric 'wsgate_upgrades_total{outcome="accepted"}' "$scrape")" \
    "$(metric wsgate_frames_delivered_total "$scrape")" | tee -a "$samples"
  [ "$elapsed" -ge "$secs" ] && break
  sleep 30
done

status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
pids=()
echo "churn: $(grep -m1 -i 'cycles/s\|handshakes/s' "$out/churn.txt" || tail -1 "$out/churn.txt")"
echo "chat: $(grep -m1 -i 'deliveries/s' "$out/chat.txt" || tail -1 "$out/chat.txt")"
# Flat means: after the first minute (allocator arenas and limiter maps warm up), RSS ends within
# 10 % (plus 2 MiB) of where it was, and descriptors within 10 % plus 20.
awk 'NR > 1 && $1 >= 60 && !first { first = 1; r0 = $2; f0 = $3 }
     NR > 1 { r = $2; f = $3; if ($2 > rmax) rmax = $2; if ($3 > fmax) fmax = $3 }
     END {
       printf "rss: %d KiB after 1 min, %d KiB at the end, %d KiB at most\n", r0, r, rmax
       printf "fds: %d after 1 min, %d at the end, %d at most\n", f0, f, fmax
       flat = (r <= r0 * 1.10 + 2048) && (f <= f0 * 1.10 + 20)
       print (flat ? "verdict: flat" : "verdict: GROWING")
       exit !flat
     }' "$samples" || status=1
exit "$status"
