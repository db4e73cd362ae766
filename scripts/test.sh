#!/usr/bin/env bash
# The one command that runs every check: formatting, lints, all tests, and the scenario suite against
# the real binary (whose log is then checked for leaked secrets). Works on a fresh machine with only
# the Rust toolchain: whatever else a stage needs, its own script installs.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*"; }

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

stage "cargo test (unit, store suite, in-process scenarios, server qualities)"
cargo test --workspace

stage "scenario suite against the real binary (scripts/scenarios.sh)"
scripts/run-scenarios-against-binary.sh
