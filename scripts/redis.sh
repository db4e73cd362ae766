#!/usr/bin/env bash
# Redis (Debian's redis-server) for the cluster tests and local runs.
#
#   scripts/redis.sh install          apt-get install redis-server when it is missing (idempotent)
#   scripts/redis.sh start PIDFILE    start one on a free loopback port, no persistence; print its URL
#   scripts/redis.sh stop PIDFILE     stop it
#   scripts/redis.sh bin              print the path of redis-server (after install)
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local pidfile=$1 log port
  install
  log="${pidfile%.pid}.log"
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --daemonize no >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        echo "redis://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || break
      sleep 0.05
    done
    kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  echo "redis-server did not start:" >&2; cat "$log" >&2; return 1
}

stop() {
  local pidfile=$1
  [ -f "$pidfile" ] || return 0
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?pidfile}" ;;
  stop) stop "${2:?pidfile}" ;;
  bin) install; command -v redis-server ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
