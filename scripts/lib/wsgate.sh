# Shared by the scripts that run the real `wsgate` binary (bench.sh, soak.sh,
# run-scenarios-against-binary.sh). Source it; it defines:
#
#   WSGATE_RATE_LIMITS_OFF       the environment (VAR=VALUE words) that switches every rate limit off
#   wsgate_start BIN LOG [VAR=VALUE…]
#                                starts BIN on 127.0.0.1 and a free port with the embedded store and
#                                only the given WSGATE_* environment (the caller's are dropped), its output in LOG, and returns once it
#                                answers /api/health with 200; sets WSGATE_PID and WSGATE_HOSTPORT.
#                                The address comes from the server (--addr-file), not from its log.
#                                WSGATE_LAUNCH (an array, e.g. (taskset -c 0)) prefixes the command.
#   wsgate_stop                  SIGTERM, then waits (10 s at most) and SIGKILLs what is left
#
# Only bash and coreutils are needed: the health check speaks HTTP over bash's /dev/tcp.

WSGATE_RATE_LIMITS_OFF=(
  WSGATE_RATE_REGISTER_PER_MIN=0 WSGATE_RATE_LOGIN_PER_MIN=0 WSGATE_RATE_REFRESH_PER_MIN=0
  WSGATE_RATE_TICKET_PER_MIN=0 WSGATE_RATE_UPGRADE_PER_MIN=0 WSGATE_RATE_MESSAGES_PER_SEC=0
)
WSGATE_PID=""
WSGATE_HOSTPORT=""
declare -p WSGATE_LAUNCH >/dev/null 2>&1 || WSGATE_LAUNCH=()

# The status code /api/health answers on HOST:PORT, or nothing.
wsgate_health() {
  local host=${1%:*} port=${1##*:} status=""
  exec 9<>"/dev/tcp/$host/$port" 2>/dev/null || return 0
  printf 'GET /api/health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" >&9
  IFS=' ' read -r -t 5 _ status _ <&9 || true
  exec 9<&- 9>&-
  echo "$status"
}

wsgate_start() {
  local bin=$1 log=$2
  shift 2
  local addr_file
  addr_file=$(mktemp -u "${TMPDIR:-/tmp}/wsgate-addr.XXXXXX")
  (
    # As many descriptors as this machine allows a process (the hard limit).
    ulimit -n "$(ulimit -Hn)"
    # Only the settings given here: a WSGATE_* variable of the caller's shell (a MongoDB URI, trusted
    # proxies…) must not change what runs.
    for var in $(compgen -e); do
      case "$var" in WSGATE_*) unset "$var" ;; esac
    done
    exec env NO_COLOR=1 WSGATE_ADDR=127.0.0.1:0 \
      WSGATE_ADDR_FILE="$addr_file" "$@" "${WSGATE_LAUNCH[@]}" "$bin"
  ) >"$log" 2>&1 </dev/null &
  WSGATE_PID=$!
  WSGATE_HOSTPORT=""
  local _
  for _ in $(seq 1 300); do
    if [ -z "$WSGATE_HOSTPORT" ] && [ -s "$addr_file" ]; then
      WSGATE_HOSTPORT=$(head -1 "$addr_file")
    fi
    if [ -n "$WSGATE_HOSTPORT" ] && [ "$(wsgate_health "$WSGATE_HOSTPORT")" = 200 ]; then
      rm -f "$addr_file"
      return 0
    fi
    kill -0 "$WSGATE_PID" 2>/dev/null || break
    sleep 0.05
  done
  rm -f "$addr_file"
  echo "wsgate did not start (no 200 from /api/health):" >&2
  cat "$log" >&2
  return 1
}

wsgate_stop() {
  [ -n "$WSGATE_PID" ] || return 0
  kill -TERM "$WSGATE_PID" 2>/dev/null || true
  local _
  for _ in $(seq 1 100); do kill -0 "$WSGATE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$WSGATE_PID" 2>/dev/null || true
  wait "$WSGATE_PID" 2>/dev/null || true
  WSGATE_PID=""
}
