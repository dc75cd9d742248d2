#!/usr/bin/env bash
# The chaos harness (cmd/chaos) against real services: it builds the gateway
# and the harness, makes sure the services run, and runs one profile.
#
# Usage: scripts/chaos.sh [short|long|cluster|dlq|all] [chaos flags...]
#   short    every single fault once, single broker, dedupe on, a few poison
#            records (~5 min; part of `make test`)
#   long     every fault (compound ones too) six times, single broker, dedupe
#            on, 250 records/s until 500,000 are written (about 40 min);
#            then two runs with dedupe off: one without
#            the faults that may legitimately redeliver (gateway kills,
#            rebalances, broker faults), where duplicates must be 0 too, and
#            one with every fault, whose duplicates are reported
#   cluster  three brokers (replication 3, min.insync.replicas 2, acks=all),
#            partition leaders killed; dedupe on
#   dlq      many poison records, small and large (dead letters in full and
#            compact), under gateway, broker, Redis and app faults; dedupe on
#   all      long, then dlq, then cluster
#
# Services: scripts/services.sh (single broker and Redis) and
# scripts/cluster.sh (three brokers). Their environment variables choose
# ports and directories (KAFKA_PORT, KAFKA_CONTROLLER_PORT, REDIS_PORT,
# SERVICES_RUN_DIR, SERVICES_CACHE_DIR, CLUSTER_PORT_BASE): give other
# ports than a test run's, which this script would otherwise kill and
# restart. Services this script started are stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${1:-short}
[[ $# -gt 0 ]] && shift

go build -o bin/gateway ./cmd/gateway
go build -o bin/chaos ./cmd/chaos

services=scripts/services.sh
cleanup=()
on_exit() { local c; for c in "${cleanup[@]}"; do eval "$c" || true; done; }
trap on_exit EXIT

# The harness reserves a killed broker's ports until it is back: it must see
# the ports the services script uses.
export KAFKA_PORT=${KAFKA_PORT:-19092} KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093} REDIS_PORT=${REDIS_PORT:-16379}

"$services" install
if ! "$services" status >/dev/null 2>&1; then
  cleanup+=("$services stop all")
  "$services" start all
fi
eval "$("$services" env)"
# Dedupe's done markers must survive a Redis crash (the redis-kill fault):
# run Redis with an append-only file synced on every write. REDIS_PERSIST=0
# keeps an in-memory Redis, which loses them (see docs/reliability.md).
export REDIS_PERSIST=${REDIS_PERSIST:-1}
aof=$(redis-cli -h "${GATEWAY_TEST_REDIS%:*}" -p "${GATEWAY_TEST_REDIS##*:}" config get appendonly | tail -n 1)
if [[ "$REDIS_PERSIST" == 1 && "$aof" != yes ]] || [[ "$REDIS_PERSIST" != 1 && "$aof" == yes ]]; then
  "$services" restart redis
  # Leave Redis as it was found (an fsync on every write slows other tests).
  cleanup=("REDIS_PERSIST=$([[ $aof == yes ]] && echo 1 || echo 0) $services restart redis" "${cleanup[@]}")
fi

run_cluster() {
  if ! scripts/cluster.sh status >/dev/null 2>&1; then
    cleanup+=("scripts/cluster.sh stop all")
    scripts/cluster.sh start all
  fi
  eval "$(scripts/cluster.sh env)"
  bin/chaos --profile cluster "$@"
}

case "$profile" in
  short | dlq) bin/chaos --profile "$profile" "$@" ;;
  long)
    bin/chaos --profile long "$@"
    bin/chaos --profile long --dedupe=false --min-written 100000 --min-processed 99000 --min-poison 10 \
      --faults redis-kill,app-cancel,app-kill,app-crash-before-ack,slow-app,slow-app-lease --rounds 3 "$@"
    bin/chaos --profile long --dedupe=false --min-written 100000 --min-processed 99000 --min-poison 10 --rounds 1 "$@"
    ;;
  cluster) run_cluster "$@" ;;
  all)
    "$0" long "$@"
    "$0" dlq "$@"
    run_cluster "$@"
    ;;
  *) echo "unknown profile '$profile' (want short, long, cluster, dlq or all)" >&2; exit 2 ;;
esac
