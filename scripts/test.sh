#!/usr/bin/env bash
# Installs what the tests need, then runs them. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# The developer-phone test drives a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install it (sudo apt-get install chromium) for the browser test" >&2
  fi
fi

# The /v2 test drives the official twilio npm package (tests/node, pinned by its lockfile)
# under the machine's Node.js; where node and npm exist a failed install fails the run.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi

# The tests need a real Redis: REDIS_URL, or one on 127.0.0.1:6379 (started here if absent).
if [ -z "${REDIS_URL:-}" ] && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  else
    echo "no Redis: set REDIS_URL or install redis-server" >&2
    exit 1
  fi
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

exec python3 -m pytest -q "$@"
