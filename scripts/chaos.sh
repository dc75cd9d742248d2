#!/usr/bin/env bash
# The chaos harness (cmd/chaos) against real services: it builds the gateway
# and the harness, makes sure the services run, and runs one profile.
#
# Usage: scripts/chaos.sh [short|long|cluster|all] [chaos flags...]
#   short    every fault once, single broker, dedupe on (~3 min; part of `make test`)
#   long     every fault four times, single broker, dedupe on; then two runs
#            with dedupe off: one without the faults that may legitimately
#            redeliver (gateway kills, rebalances, broker faults), where
#            duplicates must be 0 too, and one with every fault, whose
#            duplicates are reported
#   cluster  three brokers (replication 3, min.insync.replicas 2, acks=all),
#            partition leaders killed; dedupe on
#   all      long, then cluster
#
# Services: scripts/services.sh (single broker and Redis; its environment
# variables choose ports) and scripts/cluster.sh (three brokers). Services
# this script started are stopped again at the end.
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
  short) bin/chaos --profile short "$@" ;;
  long)
    bin/chaos --profile long "$@"
    bin/chaos --profile long --dedupe=false \
      --faults redis-kill,app-cancel,app-kill,app-crash-before-ack,slow-app --rounds 3 "$@"
    bin/chaos --profile long --dedupe=false --rounds 1 "$@"
    ;;
  cluster) run_cluster "$@" ;;
  all)
    "$0" long "$@"
    run_cluster "$@"
    ;;
  *) echo "unknown profile '$profile' (want short, long, cluster or all)" >&2; exit 2 ;;
esac
