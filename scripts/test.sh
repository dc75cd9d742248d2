#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, then unit, integration and
# end-to-end tests against a real Kafka broker and a real Redis server that
# this script installs, starts and always stops again.
set -euo pipefail
cd "$(dirname "$0")/.."

services=scripts/services.sh
"$services" install
trap '"$services" stop all' EXIT
"$services" start all
eval "$("$services" env)"
# Integration tests fail instead of skipping when a service is missing.
export GATEWAY_TEST_REQUIRE_SERVICES=1

make --no-print-directory lint
go test -race -count=1 -timeout 20m ./...
