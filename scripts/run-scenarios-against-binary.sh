#!/usr/bin/env bash
# Starts the real `wsgate` binary (embedded store, short TTLs so no scenario is skipped), runs
# scripts/scenarios.sh against it, stops it with SIGTERM, and checks its log: it must contain no
# query string, no JWT, no ticket and no API key, even at debug level.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every binary in one build with one feature set: per-binary builds resolved features differently and
# rebuilt tokio and everything above it once per set.
cargo build --quiet --workspace --bins
source scripts/lib/wsgate.sh
log=$(mktemp)
trap 'wsgate_stop; rm -f "$log"' EXIT
# The server API key of this run (a fresh one each time); the scenarios read it from the environment.
WSGATE_SCENARIO_API_KEY="scenario-api-key-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export WSGATE_SCENARIO_API_KEY

wsgate_start ./target/debug/wsgate "$log" \
  RUST_LOG=debug \
  WSGATE_JWT_SECRET=scenario-secret-scenario-secret-0123456789 \
  WSGATE_BCRYPT_COST=4 \
  WSGATE_JWT_TTL_SECS=8 WSGATE_JWT_LEEWAY_SECS=0 WSGATE_TOKEN_EXPIRING_SECS=4 \
  WSGATE_TICKET_TTL_SECS=2 WSGATE_AUTH_TIMEOUT_MS=1000 \
  WSGATE_RATE_REGISTER_PER_MIN=1000 WSGATE_RATE_LOGIN_PER_MIN=1000 \
  WSGATE_RATE_TICKET_PER_MIN=1000 WSGATE_RATE_REFRESH_PER_MIN=1000 WSGATE_RATE_UPGRADE_PER_MIN=1000 \
  WSGATE_API_KEY="$WSGATE_SCENARIO_API_KEY" WSGATE_RECOVERY_MESSAGES=20 WSGATE_MAX_ROOMS_PER_SOCKET=8
pid=$WSGATE_PID
addr=$WSGATE_HOSTPORT

status=0
scripts/scenarios.sh --url "http://$addr" --auth-timeout-ms 1000 --jwt-leeway-secs 0 --max-wait-secs 30 \
  --recovery-messages 20 --max-rooms 8 || status=$?

if ! kill -TERM "$pid" 2>/dev/null; then
  echo "FAIL wsgate exited during the run; its log:"
  cat "$log"
  status=1
fi
for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then echo "FAIL wsgate still running 8 s after SIGTERM"; status=1; fi

leaks=$(grep -nE 'ticket=|eyJ[A-Za-z0-9_-]{10,}|[A-Za-z0-9_-]{76}' "$log" || true)
if grep -qF "$WSGATE_SCENARIO_API_KEY" "$log"; then
  leaks="$leaks
$(grep -nF "$WSGATE_SCENARIO_API_KEY" "$log" | head -3)"
fi
if [ -n "$leaks" ]; then
  echo "FAIL log_hygiene: the server log contains a query string, JWT or ticket:"
  echo "$leaks" | head -5
  status=1
else
  echo "PASS log_hygiene ($(wc -l <"$log") log lines at debug level, no query string, JWT or ticket)"
fi
exit "$status"
