#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine: `docker compose config` when the Compose plugin
# is there, else Debian's docker-compose (installed on demand; it parses and validates offline).
set -euo pipefail
cd "$(dirname "$0")/.."
export WSGATE_JWT_SECRET=validate-only-validate-only-validate-only
if docker compose version >/dev/null 2>&1; then
  docker compose config --quiet
  docker compose --profile clustered config --quiet
  echo "docker compose config: valid (single node and the clustered profile)"
  exit 0
fi
if ! command -v docker-compose >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
docker-compose config --quiet
docker-compose --profile clustered config --quiet
echo "docker-compose config: valid, single node and the clustered profile ($(docker-compose version --short))"
