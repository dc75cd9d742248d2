#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, then unit, integration and
# end-to-end tests against a real Kafka broker and a real Redis server (the
# Go, Python and TypeScript example apps included, and the deploy/ manifests'
# validation). It installs and starts the services, and stops them again
# afterwards, even when a test fails; services that were already running are
# left running.
set -euo pipefail
cd "$(dirname "$0")/.."

services=scripts/services.sh
"$services" install
if ! "$services" status > /dev/null 2>&1; then
  trap '"$services" stop all' EXIT
  "$services" start all
fi
eval "$("$services" env)"
# The Python venv and node_modules of the client examples and code generators.
scripts/clients.sh install
eval "$(scripts/clients.sh env)"
# Integration tests fail instead of skipping when a service is missing.
export GATEWAY_TEST_REQUIRE_SERVICES=1

make --no-print-directory lint
go test -race -count=1 -timeout 20m ./...
