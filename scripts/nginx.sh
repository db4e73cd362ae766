#!/usr/bin/env bash
# nginx (Debian's nginx-light) for the cluster tests, which run it from deploy/nginx.conf.
#
#   scripts/nginx.sh install    apt-get install nginx-light when nginx is missing (idempotent)
#   scripts/nginx.sh bin        print the path of nginx (after install)
set -euo pipefail

install() {
  if command -v nginx >/dev/null; then
    return 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
}

case "${1:-}" in
  install) install ;;
  bin) install; command -v nginx ;;
  *) sed -n '2,5p' "$0"; exit 2 ;;
esac
