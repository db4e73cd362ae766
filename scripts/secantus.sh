#!/usr/bin/env bash
# SecantusDB, a MongoDB-wire-protocol server (WiredTiger engine, from PyPI), for tests and local runs.
#
#   scripts/secantus.sh install          create target/secantus-venv with the pinned server (idempotent)
#   scripts/secantus.sh start PIDFILE    start one on a free port with in-memory storage; print its URI
#   scripts/secantus.sh stop PIDFILE     stop it (and wait until it has exited)
#   scripts/secantus.sh bin              print the path of secantusd-py (after install)
#
# No Docker engine runs here and Debian ships no mongod; production uses real MongoDB (docker-compose.yml).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="0.7.0b3"
VENV="target/secantus-venv"
BIN="$PWD/$VENV/bin/secantusd-py"

install() {
  if [ -x "$BIN" ] && "$VENV/bin/pip" show SecantusDB 2>/dev/null | grep -q "^Version: $VERSION$"; then
    return 0
  fi
  command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null; }
  python3 -m venv "$VENV" 2>/dev/null || {
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "SecantusDB==$VERSION"
}

start() {
  local pidfile=$1 log
  install
  log="${pidfile%.pid}.log"
  "$BIN" --host 127.0.0.1 --port 0 --storage-path :memory: >"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://') || true
    if [ -n "${port:-}" ]; then echo "mongodb://127.0.0.1:$port"; return 0; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.1
  done
  echo "secantusd did not start:" >&2; cat "$log" >&2; return 1
}

stop() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  # Gone before this returns, so that the next one (a benchmark's next run) does not share the
  # CPU with this one's shutdown: 5 s, then SIGKILL.
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?pidfile}" ;;
  stop) stop "${2:?pidfile}" ;;
  bin) install; echo "$BIN" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
