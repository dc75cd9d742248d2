#!/usr/bin/env bash
# Benchmarks (make bench): the gateway against direct confluent-kafka-go
# (librdkafka), produce and consume, side by side on the same real Kafka
# broker, and consume with dedupe on against the harness's Redis; writes
# BENCHMARKS.md. Installs and starts the services (Kafka, Redis) if needed
# and stops again only those it started. Extra arguments go to
# cmd/gatewaybench, e.g.
#   scripts/bench.sh --only direct-async,stream-100 --out ''
#   scripts/bench.sh --only direct-consume,gateway-consume-none --out ''
#   scripts/bench.sh --only direct-consume,gateway-consume-none,gateway-consume-none-dedupe --out ''
#   scripts/bench.sh --only direct-async,direct-gwlike,stream-1000 --profile-all --profile-dir .cache/prof --out ''
# The gateways it starts serve their CPU profiles (--metrics.pprof=true) on
# loopback; the report sums them up where a produce target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."

services=scripts/services.sh
"$services" install

# A service already running belongs to someone else (a developer's session,
# another script): use it, leave it running.
status=$("$services" status 2>/dev/null || true)
started=()
for s in kafka redis; do
  if ! grep -q "^$s: ready" <<<"$status"; then started+=("$s"); fi
done
stop_started() {
  local s
  for s in "${started[@]}"; do "$services" stop "$s" || true; done
}
if ((${#started[@]})); then
  trap stop_started EXIT
  "$services" start all
fi
eval "$("$services" env)"

# Broker version and pid, as the harness reports them:
#   kafka: ready   pid=123 addr=127.0.0.1:19092 version=4.3.1
kafka_line=$("$services" status 2>/dev/null | grep '^kafka:' || true)
kafka_version=$(sed -n 's/.*version=\([^ ]*\).*/\1/p' <<<"$kafka_line")
broker_pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$kafka_line")
# Redis's pid, for the CPU column of the dedupe scenario:
#   redis: ready   pid=456 addr=127.0.0.1:16379
redis_line=$("$services" status 2>/dev/null | grep '^redis:' || true)
redis_pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$redis_line")

go build -o bin/gateway ./cmd/gateway
go run ./cmd/gatewaybench \
  --bootstrap "$GATEWAY_TEST_KAFKA" \
  --redis "$GATEWAY_TEST_REDIS" \
  --redis-pid "${redis_pid:-0}" \
  --gateway-bin bin/gateway \
  --out BENCHMARKS.md \
  --kafka-version "${kafka_version:-unknown}" \
  --broker-pid "${broker_pid:-0}" \
  "$@"
