#!/usr/bin/env bash
# The web client's end-to-end tests: client/ in Debian's headless Chromium, driven by playwright-core
# under node's test runner (client-tests/), against the real wsgate binary, plus unit tests of
# client/wsgate.js. Runs on a fresh Debian machine as root with only the Rust toolchain and Node/npm:
# installs Chromium from Debian if it is missing (never a browser download of a test tool's own),
# installs the pinned npm packages (playwright-core; React and esbuild for the React page, which
# react.test.js builds into target/browser/react-app/ before serving it), builds the binary.
# Idempotent; prints only the test report unless a step fails. Screenshots, the server logs and the
# built React page land in target/browser/. cluster.test.js runs three nodes on its own redis-server
# behind nginx (deploy/nginx.conf).
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Runs a setup step silently; on failure shows what it printed and stops.
quietly() {
  if ! "$@" >"$log" 2>&1; then
    echo "browser-tests: '$*' failed:" >&2
    cat "$log" >&2
    exit 1
  fi
}

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "browser-tests: /usr/bin/chromium is missing; install it with: apt-get install -y chromium" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  quietly apt-get update
  quietly apt-get install -y chromium
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  quietly apt-get update
  quietly apt-get install -y nodejs npm
fi

# Exactly the locked versions; --prefer-offline reuses npm's cache when it already holds them.
quietly npm ci --prefix client-tests --prefer-offline --no-audit --no-fund
# The debug binary, as scripts/run-scenarios-against-binary.sh builds it: one build serves both.
quietly cargo build --quiet --workspace --bins

# A MongoDB-wire-protocol server, so that accounts survive the restart test (see chat.test.js).
quietly scripts/secantus.sh install
mongo_pid=target/browser-secantus.pid
mkdir -p target
WSGATE_BROWSER_MONGODB_URI=$(scripts/secantus.sh start "$mongo_pid")
export WSGATE_BROWSER_MONGODB_URI
trap 'scripts/secantus.sh stop "$mongo_pid"; rm -f "$log"' EXIT

# The cluster test's Redis and nginx (it runs its own of each).
WSGATE_TEST_REDIS_SERVER=$(scripts/cluster-tools.sh bin redis-server)
WSGATE_TEST_NGINX=$(scripts/cluster-tools.sh bin nginx)
export WSGATE_TEST_REDIS_SERVER WSGATE_TEST_NGINX

export WSGATE_BIN="$PWD/target/debug/wsgate"
node --test --test-reporter=spec --test-concurrency=1 --test-timeout=120000 \
  client-tests/tests/wsgate-module.test.js client-tests/tests/chat.test.js client-tests/tests/refresh.test.js \
  client-tests/tests/rooms.test.js client-tests/tests/react.test.js client-tests/tests/cluster.test.js
