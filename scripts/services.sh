#!/usr/bin/env bash
# Local test services: a real single-node Apache Kafka broker (KRaft, combined
# broker+controller) and a real Redis server, both bound to 127.0.0.1 only.
#
# Usage: scripts/services.sh COMMAND [ARGS]
#   install                      install redis-server (apt) and resolve the Kafka jars (Maven)
#   start   [kafka|redis|all]    start (no-op if running) and wait until ready
#   stop    [kafka|redis|all]    SIGTERM, then SIGKILL after a timeout
#   kill    [kafka|redis|all]    SIGKILL (fault injection); data dir is kept
#   restart [kafka|redis|all]    stop, start again on the same data dir, wait until ready
#   status                       show pid/readiness; exit 0 only if both are ready
#   env                          print export lines for the Go tests
#   clean                        stop everything and delete the run dir
#   topic-create NAME PARTITIONS create a topic (replication factor 1) if missing
#   topics                       list topics
#   kafka-run CLASS [ARGS...]    run a main class from the Kafka classpath
#                                (e.g. org.apache.kafka.tools.ProducerPerformance)
#   murmur2-vectors              print Kafka's murmur2 partitioner test vectors
#
# Environment (defaults in brackets):
#   KAFKA_VERSION [4.3.1]  KAFKA_PORT [19092]  KAFKA_CONTROLLER_PORT [19093]
#   REDIS_PORT [16379]  REDIS_PERSIST [0] (1: append-only file, fsync always)
#   SERVICES_CACHE_DIR [<repo>/.cache]
#   SERVICES_RUN_DIR [<cache>/run]  KAFKA_LIBS [<cache>/kafka/<version>/libs]
#   KAFKA_HEAP_OPTS [-Xms256m -Xmx768m]  KAFKA_EXTRA_PROPERTIES [] (key=value lines)
#   KAFKA_CDS [1] (0: no class-data-sharing archive)
#   SERVICES_READY_TIMEOUT [90]  SERVICES_STOP_TIMEOUT [30]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${REDIS_PORT:-16379}"
HOST=127.0.0.1

CACHE_DIR="${SERVICES_CACHE_DIR:-$REPO_ROOT/.cache}"
RUN_DIR="${SERVICES_RUN_DIR:-$CACHE_DIR/run}"
KAFKA_LIBS="${KAFKA_LIBS:-$CACHE_DIR/kafka/$KAFKA_VERSION/libs}"
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_LOG4J="$SCRIPT_DIR/kafka/log4j2.properties"
KAFKA_RUN="$RUN_DIR/kafka"
REDIS_RUN="$RUN_DIR/redis"

KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
READY_TIMEOUT="${SERVICES_READY_TIMEOUT:-90}"
STOP_TIMEOUT="${SERVICES_STOP_TIMEOUT:-30}"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi
# Short-lived JVMs (StorageTool, TopicCommand, ...): favour startup time.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/[.,]/}"; }             # microseconds
since() { local d=$(( $(now) - $1 )); printf '%d.%01ds' $((d / 1000000)) $((d % 1000000 / 100000)); }

# Serialize commands that change the services of this run dir (two `start`s
# at once, start vs stop, ...). Services of another run dir (on other ports)
# share the cache but are not held up by a slow start here.
lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/services.lock"
  flock 9
}

# Serialize changes to the cache, which several run dirs may share.
lock_cache() {
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/services.lock"
  flock 8
}

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=
apt_install() {
  if [[ -z "$APT_UPDATED" ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$@"
}

# ---------------------------------------------------------------- processes

# True if PID names a live (non-zombie) process.
pid_alive() {
  local pid=$1 state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Print the pid from PIDFILE if that process is alive and its command line
# contains MARKER (guards against pid reuse after a reboot or kill -9).
read_pid() {
  local pidfile=$1 marker=$2 pid
  [[ -s "$pidfile" ]] || return 1
  pid=$(<"$pidfile")
  pid_alive "$pid" || return 1
  grep -qaF -- "$marker" "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Wait up to SECONDS for PORT to stop accepting connections. A SIGKILLed JVM's
# main thread can already be a zombie while its other threads still hold the
# listening sockets, so "pid gone" alone is not enough before a restart.
wait_port_free() {
  local port=$1 deadline=$(( $(now) + $2 * 1000000 ))
  while port_open "$port"; do
    (( $(now) < deadline )) || return 1
    sleep 0.05
  done
}

# SIGTERM (or SIGKILL with force=1) and wait until the process is gone.
# Sets TERMINATE_FORCED=1 if a graceful stop had to be escalated to SIGKILL.
TERMINATE_FORCED=0
terminate() {
  local name=$1 pid=$2 force=${3:-0} start deadline
  TERMINATE_FORCED=0
  start=$(now)
  if [[ "$force" == 1 ]]; then
    kill -KILL "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(( $(now) + STOP_TIMEOUT * 1000000 ))
    while pid_alive "$pid" && (( $(now) < deadline )); do sleep 0.1; done
    if pid_alive "$pid"; then
      log "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      TERMINATE_FORCED=1
    fi
  fi
  while pid_alive "$pid"; do sleep 0.05; done
  log "$name stopped (pid $pid, $( [[ $force == 1 ]] && echo SIGKILL || echo SIGTERM ), $(since "$start"))"
}

# ---------------------------------------------------------------- install

java_major() {
  "$JAVA" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

install_redis() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then return; fi
  log "installing redis-server (apt)"
  apt_install redis-server
  # Debian's package may start its own instance on 6379; it is not ours, leave it.
}

install_java_maven() {
  if ! command -v "$JAVA" >/dev/null; then
    log "installing Java 17 (apt)"; apt_install openjdk-17-jdk-headless
  fi
  local major; major=$(java_major)
  [[ "${major:-0}" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, found: $("$JAVA" -version 2>&1 | head -1)"
  if ! command -v mvn >/dev/null; then
    log "installing maven (apt)"; apt_install maven
  fi
}

# Stamp = version + pom content, so editing the pom re-resolves the classpath.
kafka_libs_stamp() { printf '%s\n' "$KAFKA_VERSION"; sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

kafka_libs_ready() {
  [[ -f "$KAFKA_LIBS/.stamp" ]] && [[ "$(cat "$KAFKA_LIBS/.stamp")" == "$(kafka_libs_stamp)" ]]
}

install_kafka() {
  kafka_libs_ready && return
  lock_cache
  kafka_libs_ready && return
  install_java_maven
  local start tmp; start=$(now)
  log "resolving Kafka $KAFKA_VERSION classpath from Maven Central into $KAFKA_LIBS"
  tmp="$KAFKA_LIBS.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # Jars are cached in the local Maven repository (~/.m2); only the first run downloads.
  # Output goes to a log (Debian's mvn prints stray ANSI codes even with -q -B).
  if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$tmp.log" 2>&1 </dev/null; then
    cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"
    die "maven could not resolve the Kafka $KAFKA_VERSION classpath"
  fi
  rm -f "$tmp.log"
  ls "$tmp"/kafka_2.13-*.jar "$tmp"/kafka-tools-*.jar "$tmp"/log4j-core-*.jar >/dev/null \
    || die "resolved classpath is incomplete (see $tmp)"
  kafka_libs_stamp >"$tmp/.stamp"
  rm -rf "$KAFKA_LIBS"; mv "$tmp" "$KAFKA_LIBS"
  log "Kafka $KAFKA_VERSION: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars ($(since "$start"))"
}

cmd_install() {
  lock_cache
  install_redis
  install_kafka
}

# ---------------------------------------------------------------- kafka

# The archive is only valid for this exact JVM build and classpath.
kafka_cds_archive() {
  local jvm
  jvm=$("$JAVA" -Xshare:off -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.vm.version/ {print $2; exit}')
  printf '%s/kafka-%s.jsa' "$(dirname "$KAFKA_LIBS")" "${jvm//[^A-Za-z0-9._-]/_}"
}

kafka_pid() { read_pid "$KAFKA_RUN/kafka.pid" "$KAFKA_RUN/server.properties"; }

# Run a main class from the Kafka classpath in a short-lived JVM.
kafka_java() {
  mkdir -p "$KAFKA_RUN/logs"
  "$JAVA" "${TOOL_JVM_OPTS[@]}" \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -Dkafka.logs.dir="$KAFKA_RUN/logs" -Dkafka.log.file=tools.log \
    -cp "$KAFKA_LIBS/*" "$@"
}

write_kafka_config() {
  cat >"$KAFKA_RUN/server.properties" <<EOF
# Generated by scripts/services.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$KAFKA_RUN/data

# Single node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Few internal partitions: the first consumer group / transaction is much faster.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1

# After a kill -9 the controller keeps the dead broker's registration until its
# session expires (default 9 s) before the restarted broker may register again.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
# Small footprint for a test box.
log.cleaner.dedupe.buffer.size=16777216
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=2
EOF
  # Extra/overriding broker settings, one key=value per line (last one wins).
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    printf '\n# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$KAFKA_RUN/server.properties"
  fi
}

# Format the storage once; later starts (also after kill -9) reuse it.
format_kafka_storage() {
  [[ -f "$KAFKA_RUN/data/meta.properties" ]] && return
  local cid
  if [[ -s "$KAFKA_RUN/cluster.id" ]]; then
    cid=$(<"$KAFKA_RUN/cluster.id")
  else
    # Same format as `StorageTool random-uuid` (base64url of 16 random bytes,
    # no padding, not starting with '-'), without paying for a JVM.
    cid=-
    while [[ "$cid" == -* ]]; do
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    printf '%s\n' "$cid" >"$KAFKA_RUN/cluster.id"
  fi
  log "formatting Kafka storage (cluster id $cid)"
  kafka_java kafka.tools.StorageTool format --ignore-formatted \
    -t "$cid" -c "$KAFKA_RUN/server.properties" >"$KAFKA_RUN/logs/format.log" 2>&1 \
    || { cat "$KAFKA_RUN/logs/format.log" >&2; die "kafka storage format failed"; }
}

# Fast readiness probe: a real Metadata request (api key 3, v4, no topics)
# sent over /dev/tcp. Succeeds once the broker answers listing node 1 as a live
# broker, i.e. it has caught up with the controller and is unfenced.
kafka_metadata_ready() {
  local hex
  # shellcheck disable=SC2016  # $0/$1 expand in the inner shell
  hex=$(timeout 3 bash -c '
      exec 3<>"/dev/tcp/$0/$1" || exit 1
      # size=20 | api_key=3 api_version=4 correlation_id=42 client_id="probe" | topics=[] allow_auto_create=false
      printf "\x00\x00\x00\x14\x00\x03\x00\x04\x00\x00\x00\x2a\x00\x05probe\x00\x00\x00\x00\x00" >&3
      head -c 20 <&3 | od -An -v -tx1 | tr -d " \n"' "$HOST" "$KAFKA_PORT" 2>/dev/null) || return 1
  # response: size(4) correlation_id(4) throttle_ms(4) brokers.count(4) brokers[0].node_id(4)
  [[ ${#hex} -eq 40 && ${hex:8:8} == 0000002a && ${hex:24:8} != 00000000 && ${hex:32:8} == 00000001 ]]
}

kafka_log_tail() {
  local f
  for f in "$KAFKA_RUN/logs/server.log" "$KAFKA_RUN/logs/stdout.log"; do
    [[ -s "$f" ]] || continue
    printf -- '----- tail of %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

wait_kafka_ready() {
  local start=$1 pid=$2 deadline=$(( $1 + READY_TIMEOUT * 1000000 ))
  until port_open "$KAFKA_PORT" && kafka_metadata_ready; do
    if ! pid_alive "$pid"; then
      kafka_log_tail; die "kafka (pid $pid) exited before becoming ready"
    fi
    if (( $(now) > deadline )); then
      kafka_log_tail; die "kafka not ready on $HOST:$KAFKA_PORT after ${READY_TIMEOUT}s (pid $pid)"
    fi
    sleep 0.1
  done
  log "kafka ready on $HOST:$KAFKA_PORT (pid $pid, $(since "$start"))"
}

start_kafka() {
  install_kafka
  local start pid; start=$(now)
  if pid=$(kafka_pid); then
    wait_kafka_ready "$start" "$pid"; return
  fi
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    wait_port_free "$p" 5 || die "port $HOST:$p is already in use by another process"
  done
  mkdir -p "$KAFKA_RUN/data" "$KAFKA_RUN/logs"
  write_kafka_config
  format_kafka_storage
  rm -f "$KAFKA_RUN/kafka.pid"
  # Keep the previous run's logs one generation back, so a failure shows only this run.
  local f
  for f in server.log stdout.log; do
    [[ -f "$KAFKA_RUN/logs/$f" ]] && mv -f "$KAFKA_RUN/logs/$f" "$KAFKA_RUN/logs/$f.prev"
  done
  # Class-data sharing: the first broker records the classes it loaded into an
  # archive when it exits gracefully; later starts map it (JVM start ~3x faster).
  # KAFKA_CDS=0 turns this off (the recording run's stop takes ~2 s longer).
  local cds=() archive
  rm -f "$KAFKA_RUN/kafka.jsa.new"
  if [[ "${KAFKA_CDS:-1}" == 1 ]]; then
    archive=$(kafka_cds_archive)
    if [[ -s "$archive" ]]; then
      cds=(-XX:SharedArchiveFile="$archive")
    else
      cds=(-XX:ArchiveClassesAtExit="$KAFKA_RUN/kafka.jsa.new")
    fi
  fi
  # setsid: the broker outlives this shell and is not hit by the caller's ^C.
  # The wrapper records its own pid and execs java, so pid file == JVM pid.
  # 8>&- 9>&- : do not hand our lock fds to the long-lived broker.
  # shellcheck disable=SC2016,SC2086  # inner-shell $$; KAFKA_HEAP_OPTS is a word list
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_RUN/kafka.pid" \
    "$JAVA" $KAFKA_HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Xshare:auto "${cds[@]}" -Xlog:cds=off -Xlog:cds+dynamic=off \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_RUN/logs" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_RUN/server.properties" \
    </dev/null >>"$KAFKA_RUN/logs/stdout.log" 2>&1 8>&- 9>&- &
  local i
  for ((i = 0; i < 500; i++)); do [[ -s "$KAFKA_RUN/kafka.pid" ]] && break; sleep 0.01; done
  [[ -s "$KAFKA_RUN/kafka.pid" ]] || { kafka_log_tail; die "kafka launch failed"; }
  pid=$(<"$KAFKA_RUN/kafka.pid")
  log "kafka $KAFKA_VERSION starting (pid $pid, data $KAFKA_RUN/data)"
  wait_kafka_ready "$start" "$pid"
}

stop_kafka() {
  local pid force=${1:-0} graceful=0
  if pid=$(kafka_pid); then
    terminate kafka "$pid" "$force"
    [[ "$force" == 1 || "$TERMINATE_FORCED" == 1 ]] || graceful=1
    if ! { wait_port_free "$KAFKA_PORT" 10 && wait_port_free "$KAFKA_CONTROLLER_PORT" 10; }; then
      log "warning: kafka ports still open after stop"
    fi
  else
    log "kafka not running"
  fi
  rm -f "$KAFKA_RUN/kafka.pid"
  # Keep a class-data archive only if we just saw the JVM exit cleanly (it
  # writes the archive on exit); anything else may have left a partial file.
  if [[ -s "$KAFKA_RUN/kafka.jsa.new" && "$graceful" == 1 ]]; then
    mv -f "$KAFKA_RUN/kafka.jsa.new" "$(kafka_cds_archive)"
  else
    rm -f "$KAFKA_RUN/kafka.jsa.new"
  fi
}

status_kafka() {
  local pid
  if pid=$(kafka_pid); then
    if kafka_metadata_ready; then echo "kafka: ready   pid=$pid addr=$HOST:$KAFKA_PORT version=$KAFKA_VERSION"; return 0; fi
    echo "kafka: running pid=$pid addr=$HOST:$KAFKA_PORT (not ready)"; return 1
  fi
  echo "kafka: stopped"; return 1
}

# ---------------------------------------------------------------- redis

redis_pid() { read_pid "$REDIS_RUN/redis.pid" ":$REDIS_PORT"; }

redis_ready() { [[ "$(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

wait_redis_ready() {
  local start=$1 deadline=$(( $1 + READY_TIMEOUT * 1000000 ))
  until redis_ready; do
    if (( $(now) > deadline )); then
      tail -n 20 "$REDIS_RUN/redis.log" >&2 2>/dev/null || true
      die "redis not ready on $HOST:$REDIS_PORT after ${READY_TIMEOUT}s"
    fi
    sleep 0.05
  done
  log "redis ready on $HOST:$REDIS_PORT (pid $(redis_pid || echo '?'), $(since "$start"))"
}

start_redis() {
  install_redis
  local start; start=$(now)
  if ! redis_pid >/dev/null; then
    wait_port_free "$REDIS_PORT" 5 || die "port $HOST:$REDIS_PORT is already in use by another process"
    mkdir -p "$REDIS_RUN"
    rm -f "$REDIS_RUN/redis.pid"
    # In-memory only (no RDB/AOF) unless REDIS_PERSIST=1: then an append-only
    # file synced on every write, so a SIGKILL loses no acknowledged write.
    # Daemonizes and writes its own pid file.
    local aof=(--appendonly no)
    if [[ "${REDIS_PERSIST:-0}" == 1 ]]; then aof=(--appendonly yes --appendfsync always); fi
    redis-server --bind "$HOST" --port "$REDIS_PORT" --save "" "${aof[@]}" \
      --daemonize yes --pidfile "$REDIS_RUN/redis.pid" --dir "$REDIS_RUN" \
      --logfile "$REDIS_RUN/redis.log" 8>&- 9>&- \
      || die "redis-server failed to start (see $REDIS_RUN/redis.log)"
  fi
  wait_redis_ready "$start"
}

stop_redis() {
  local pid force=${1:-0}
  if pid=$(redis_pid); then
    terminate redis "$pid" "$force"
    wait_port_free "$REDIS_PORT" 10 || log "warning: redis port still open after stop"
  else
    log "redis not running"
  fi
  rm -f "$REDIS_RUN/redis.pid"
}

status_redis() {
  local pid
  if pid=$(redis_pid); then
    if redis_ready; then echo "redis: ready   pid=$pid addr=$HOST:$REDIS_PORT"; return 0; fi
    echo "redis: running pid=$pid addr=$HOST:$REDIS_PORT (not ready)"; return 1
  fi
  echo "redis: stopped"; return 1
}

# ---------------------------------------------------------------- commands

# Expand the optional service argument: kafka, redis or all (default).
services() {
  case "${1:-all}" in
    kafka) echo kafka ;;
    redis) echo redis ;;
    all) echo redis kafka ;;
    *) die "unknown service '$1' (want kafka, redis or all)" ;;
  esac
}

cmd_start()   { lock; local s; for s in $(services "${1:-}"); do "start_$s"; done; }
cmd_stop()    { lock; local s; for s in $(services "${1:-}"); do "stop_$s" 0; done; }
cmd_kill()    { lock; local s; for s in $(services "${1:-}"); do "stop_$s" 1; done; }
cmd_restart() { lock; local s; for s in $(services "${1:-}"); do "stop_$s" 0; "start_$s"; done; }

cmd_status() {
  local rc=0
  status_kafka || rc=1
  status_redis || rc=1
  return $rc
}

cmd_env() {
  echo "export GATEWAY_TEST_KAFKA=$HOST:$KAFKA_PORT"
  echo "export GATEWAY_TEST_REDIS=$HOST:$REDIS_PORT"
}

cmd_clean() {
  lock
  stop_kafka 0; stop_redis 0
  rm -rf "$RUN_DIR"
  log "removed $RUN_DIR"
}

cmd_topic_create() {
  [[ $# -eq 2 && "$2" =~ ^[0-9]+$ ]] || die "usage: $0 topic-create NAME PARTITIONS"
  install_kafka
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
    --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1
}

cmd_topics() {
  install_kafka
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list
}

cmd_kafka_run() {
  [[ $# -ge 1 ]] || die "usage: $0 kafka-run MAIN_CLASS [ARGS...]"
  install_kafka
  kafka_java "$@"
}

cmd_murmur2_vectors() {
  install_kafka
  "$JAVA" -cp "$KAFKA_LIBS/*" "$SCRIPT_DIR/kafka/Murmur2Vectors.java"
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    install)         cmd_install ;;
    start)           cmd_start "$@" ;;
    stop)            cmd_stop "$@" ;;
    kill)            cmd_kill "$@" ;;
    restart)         cmd_restart "$@" ;;
    status)          cmd_status ;;
    env)             cmd_env ;;
    clean)           cmd_clean ;;
    topic-create)    cmd_topic_create "$@" ;;
    topics)          cmd_topics ;;
    kafka-run)       cmd_kafka_run "$@" ;;
    murmur2-vectors) cmd_murmur2_vectors ;;
    -h|--help|help)  usage ;;
    *)               usage >&2; exit 2 ;;
  esac
}

main "$@"
