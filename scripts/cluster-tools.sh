#!/usr/bin/env bash
# Debian's redis-server and nginx for the cluster tests (each test starts its own from the binary:
# pub/sub is global to one Redis, and nginx runs deploy/nginx.conf as it is).
#
#   scripts/cluster-tools.sh bin redis-server   install redis-server when missing; print its path
#   scripts/cluster-tools.sh bin nginx          install nginx-light when missing; print its path
set -euo pipefail

bin() {
  local tool=$1 package
  case "$tool" in
    redis-server) package=redis-server ;;
    nginx) package=nginx-light ;;
    *) echo "unknown tool: $tool" >&2; exit 2 ;;
  esac
  if ! command -v "$tool" >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  fi
  command -v "$tool"
}

case "${1:-}" in
  bin) bin "${2:?tool}" ;;
  *) sed -n '2,6p' "$0"; exit 2 ;;
esac
