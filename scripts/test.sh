#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, then unit, integration and
# end-to-end tests against a real Kafka broker and a real Redis server (the
# Go, Python and TypeScript example apps included, and the deploy/ manifests'
# validation), the cgo binding under cgocheck2, a short fuzz run of every
# fuzz target, and the short chaos profile (faults against those same
# services). It installs and starts the
# services, and stops them again afterwards, even when a test fails; services
# that were already running are left running.
#
# FUZZ_TIME [15s] is the fuzzing time per target; CHAOS_PROFILE [short] the
# chaos profile (none skips it).
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
# The cgo code again with cgocheck2, which checks every pointer that crosses
# into C (no Go pointer kept by C): the binding itself, the producer that
# drives it, and the allocator's arena setting.
GOEXPERIMENT=cgocheck2 go test -count=1 -timeout 10m ./internal/rdkafka/ ./internal/produce/ ./internal/cmalloc/

# Fuzzing: one target per invocation (go test allows no more).
for target in \
  internal/consume:FuzzParseAckID \
  internal/consume:FuzzPartitionLogCommitRule \
  internal/consume:FuzzGapMetadata \
  internal/produce:FuzzValidate \
  internal/grpcapi:FuzzRequests \
  internal/grpcapi:FuzzCodec \
  internal/config:FuzzLoad; do
  go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "${FUZZ_TIME:-15s}" "./${target%%:*}"
done

# Last, because it kills and restarts the services.
if [[ "${CHAOS_PROFILE:-short}" != none ]]; then
  scripts/chaos.sh "${CHAOS_PROFILE:-short}"
fi
