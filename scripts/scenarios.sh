#!/usr/bin/env bash
# Runs the scenario suite against a running wsgate: one PASS/FAIL/SKIP line per scenario, non-zero exit
# on any failure.
#
#   scripts/scenarios.sh --url http://127.0.0.1:8080 [--auth-timeout-ms MS] [--jwt-leeway-secs S]
#                        [--max-wait-secs S] [--recovery-messages N] [--max-rooms N]
#                        [--only NAME,NAME] [--list]
#
# --recovery-messages and --max-rooms tell the suite the server's WSGATE_RECOVERY_MESSAGES and
# WSGATE_MAX_ROOMS_PER_SOCKET. The server API scenario runs when WSGATE_SCENARIO_API_KEY holds the
# server's WSGATE_API_KEY, and is skipped otherwise.
#
# Scenarios that must wait for a TTL longer than --max-wait-secs (default 40) are skipped and say which
# setting to lower. The server's message rate limit must be on (flood_rate_limited expects a 4429).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --workspace --bins
exec ./target/debug/wsgate-scenarios "$@"
