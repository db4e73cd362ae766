#!/usr/bin/env bash
# The one command that runs every check: formatting, lints, all tests on both stores (embedded and
# MongoDB wire protocol via SecantusDB), the scenario suite against the real binary (whose log is then
# checked for leaked secrets), the web client in headless Chromium, a smoke run of every load-tool
# workload, and the compose file. Works on a fresh machine with only the Rust
# toolchain: whatever else a stage needs, its own script installs.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*"; }

# A CI build is built once: incremental caches would only double the target (they were 2 GB of 6).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Disk space is printed first so a run that runs out of it says so at the top.
df -h . | tail -n 1 | awk '{print "disk: " $4 " free of " $2}'

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

stage "SecantusDB (MongoDB wire protocol) for the MongoDB backend tests"
mkdir -p target
scripts/secantus.sh install
mongo_pid=target/test-secantus.pid
trap 'scripts/secantus.sh stop "$mongo_pid"' EXIT
WSGATE_TEST_MONGODB_URI=$(scripts/secantus.sh start "$mongo_pid")
WSGATE_TEST_SECANTUSD=$(scripts/secantus.sh bin)
export WSGATE_TEST_MONGODB_URI WSGATE_TEST_SECANTUSD
# A missing database is a failure here, never a silent skip.
export WSGATE_REQUIRE_MONGO=1
echo "test MongoDB: $WSGATE_TEST_MONGODB_URI"

stage "Redis and nginx (Debian's) for the cluster tests"
# Each cluster test starts its own redis-server (pub/sub is global to a Redis) and nginx.
WSGATE_TEST_REDIS_SERVER=$(scripts/cluster-tools.sh bin redis-server)
WSGATE_TEST_NGINX=$(scripts/cluster-tools.sh bin nginx)
export WSGATE_TEST_REDIS_SERVER WSGATE_TEST_NGINX
export WSGATE_REQUIRE_REDIS=1
"$WSGATE_TEST_REDIS_SERVER" --version
"$WSGATE_TEST_NGINX" -v

stage "cargo test (unit, store suite x2, scenarios x3 engines, cluster of nodes, server qualities, MongoDB outage)"
cargo test --workspace 2>&1 | tee target/test-cargo.log

stage "scenario suite against the real binary (scripts/scenarios.sh)"
scripts/run-scenarios-against-binary.sh 2>&1 | tee target/test-scenarios.log

stage "web client in headless Chromium (scripts/browser-tests.sh)"
scripts/browser-tests.sh 2>&1 | tee target/test-browser.log

stage "load tool smoke: every workload tiny, correctness only (scripts/bench.sh --smoke)"
scripts/bench.sh --smoke

stage "docker-compose.yml"
scripts/validate-compose.sh

# One closing line for the whole run (every stage above stops the script on a failure).
cargo_passed=$(grep -o 'test result: ok\. [0-9]* passed' target/test-cargo.log | grep -o '[0-9]* passed' | awk '{s+=$1} END {print s+0}')
scenario_passed=$(grep -c '^PASS ' target/test-scenarios.log || true)
browser_passed=$(grep -o '^ℹ pass [0-9]*' target/test-browser.log | awk '{print $3+0}')
echo
echo "cargo tests ${cargo_passed}, scenario and log checks against the binary ${scenario_passed}, browser tests ${browser_passed:-0}"
echo "$((cargo_passed + scenario_passed + ${browser_passed:-0})) passed, 0 failed"
