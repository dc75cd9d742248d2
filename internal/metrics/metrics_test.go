package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

func TestResultNamesEachErrorKind(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("x: %w", produce.ErrQueueFull), "queue_full"},
		{fmt.Errorf("%w: %w", produce.ErrQueueFull, context.DeadlineExceeded), "queue_full"},
		{produce.ErrClosed, "shutdown"},
		{fmt.Errorf("%w: purged", kafkaclient.ErrShutdown), "shutdown"},
		{fmt.Errorf("%w: timed out", kafkaclient.ErrUnavailable), "unavailable"},
		{kafkaclient.ErrUnknownTopic, "unknown_topic"},
		{kafkaclient.ErrRejected, "rejected"},
		{kafkaclient.ErrNotAuthorized, "not_authorized"},
		{context.Canceled, "canceled"},
		{errors.New("something else"), "other"},
	}
	for _, tc := range cases {
		if got := Result(tc.err); got != tc.want {
			t.Errorf("Result(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestProducerCountsEachBatchByResult(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	p := NewProducer(r, func() int { return 7 })
	obs := p.Topic("orders")
	obs.BatchDone([]produce.Result{{}, {}, {Err: fmt.Errorf("%w: x", kafkaclient.ErrUnavailable)}}, 20*time.Millisecond)
	obs.BatchDone([]produce.Result{{}}, 10*time.Millisecond)
	checks := map[string]float64{
		"ok":          testutil.ToFloat64(p.records.WithLabelValues("orders", "ok")),
		"unavailable": testutil.ToFloat64(p.records.WithLabelValues("orders", "unavailable")),
	}
	if checks["ok"] != 3 || checks["unavailable"] != 1 {
		t.Errorf("records by result = %v, want ok 3, unavailable 1", checks)
	}
	if n := testutil.CollectAndCount(p.latency); n != 1 {
		t.Errorf("%d latency series, want 1", n)
	}
	want := "# HELP gateway_producer_queue_records Records and requests librdkafka holds: waiting to be sent, in flight to the broker, or with a delivery report not yet handled.\n# TYPE gateway_producer_queue_records gauge\ngateway_producer_queue_records 7\n"
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want), "gateway_producer_queue_records"); err != nil {
		t.Error(err)
	}
}

// statsDoc is a librdkafka consumer statistics document, cut down to the
// fields the gateway reads plus a few it must ignore.
const consumerStats = `{
  "name": "kafka-gateway#consumer-3", "type": "consumer", "ts": 1, "time": 2,
  "brokers": {
    "k1:9092/1": {"name": "k1:9092/1", "nodeid": 1, "nodename": "k1:9092", "source": "learned", "state": "UP",
      "txerrs": 2, "rxerrs": 1, "req_timeouts": 3, "disconnects": 4, "rtt": {"p50": 1500, "p99": 20000, "cnt": 9}},
    "k2:9092/2": {"name": "k2:9092/2", "nodeid": 2, "nodename": "k2:9092", "source": "learned", "state": "TRY_CONNECT",
      "txerrs": 0, "rxerrs": 0, "req_timeouts": 0, "disconnects": 1, "rtt": {"p50": 0, "p99": 0, "cnt": 0}},
    "GroupCoordinator": {"name": "GroupCoordinator", "nodeid": -1, "source": "logical", "state": "UP", "rtt": {"cnt": 1}}
  },
  "topics": {
    "orders": {"topic": "orders", "partitions": {
      "0": {"partition": 0, "fetch_state": "active", "consumer_lag": 42},
      "1": {"partition": 1, "fetch_state": "none", "consumer_lag": 5},
      "2": {"partition": 2, "fetch_state": "active", "consumer_lag": -1},
      "-1": {"partition": -1, "fetch_state": "none", "consumer_lag": -1}
    }}
  },
  "cgrp": {"state": "up", "join_state": "steady", "assignment_size": 2}
}`

func TestKafkaStatsExportBrokerHealthAndLagUntilTheClientGoes(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	k := RegisterKafkaStats(r, time.Second)
	now := time.Unix(1_000, 0)
	k.now = func() time.Time { return now }
	k.Consumer("billing", consumerStats)
	k.Producer(`{"type": "producer", "brokers": {}}`)
	k.Consumer("broken", `{"brokers": `) // a bad document is skipped

	want := `
# HELP gateway_consumer_lag_records Records between the group's committed offset and the partition's end (librdkafka consumer_lag), for partitions assigned to this gateway.
# TYPE gateway_consumer_lag_records gauge
gateway_consumer_lag_records{group="billing",partition="0",topic="orders"} 42
# HELP gateway_kafka_broker_up 1 while the client's connection to the broker is up (librdkafka state UP), else 0.
# TYPE gateway_kafka_broker_up gauge
gateway_kafka_broker_up{broker="k1:9092/1",client="consumer",group="billing"} 1
gateway_kafka_broker_up{broker="k2:9092/2",client="consumer",group="billing"} 0
# HELP gateway_kafka_broker_rtt_seconds Request round-trip time to the broker over the last statistics interval, at the quantile.
# TYPE gateway_kafka_broker_rtt_seconds gauge
gateway_kafka_broker_rtt_seconds{broker="k1:9092/1",client="consumer",group="billing",quantile="0.5"} 0.0015
gateway_kafka_broker_rtt_seconds{broker="k1:9092/1",client="consumer",group="billing",quantile="0.99"} 0.02
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want),
		"gateway_consumer_lag_records", "gateway_kafka_broker_up", "gateway_kafka_broker_rtt_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(k, "gateway_kafka_broker_errors_total"); n != 8 {
		t.Errorf("%d broker error series, want 8 (4 kinds × 2 brokers)", n)
	}

	// Three intervals without a document: the clients are gone.
	now = now.Add(4 * time.Second)
	if n := testutil.CollectAndCount(k); n != 0 {
		t.Errorf("%d series after the clients went quiet, want 0", n)
	}
}

func TestConsumerMetricsComeFromTheGroupsAtScrapeTime(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	var groups []consume.GroupStats
	RegisterConsumer(r, func() []consume.GroupStats { return groups })
	if n, err := testutil.GatherAndCount(r.Gatherer(), "gateway_consumer_acks_total"); err != nil || n != 0 {
		t.Fatalf("series before any group = %d, %v; want 0", n, err)
	}
	groups = []consume.GroupStats{{
		Group:         "billing",
		Stats:         consume.Stats{Acked: 5, DeadLettered: 1, Duplicates: 2},
		Running:       true,
		InFlight:      3,
		OldestUnacked: 1500 * time.Millisecond,
	}}
	want := `
# HELP gateway_consumer_acks_total Ack IDs named by successful Ack calls.
# TYPE gateway_consumer_acks_total counter
gateway_consumer_acks_total{group="billing"} 5
# HELP gateway_consumer_dead_lettered_total Records written to a dead-letter topic.
# TYPE gateway_consumer_dead_lettered_total counter
gateway_consumer_dead_lettered_total{group="billing"} 1
# HELP gateway_dedupe_duplicates_dropped_total Records dropped without delivery because their message ID was already processed by the group.
# TYPE gateway_dedupe_duplicates_dropped_total counter
gateway_dedupe_duplicates_dropped_total{group="billing"} 2
# HELP gateway_consumer_in_flight_records Records delivered (or being claimed for delivery) and not yet settled.
# TYPE gateway_consumer_in_flight_records gauge
gateway_consumer_in_flight_records{group="billing"} 3
# HELP gateway_consumer_oldest_unacked_age_seconds Age, since it was fetched, of the group's oldest record not yet done: the record holding a commit point back. 0 when none is pending.
# TYPE gateway_consumer_oldest_unacked_age_seconds gauge
gateway_consumer_oldest_unacked_age_seconds{group="billing"} 1.5
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want),
		"gateway_consumer_acks_total", "gateway_consumer_dead_lettered_total", "gateway_dedupe_duplicates_dropped_total",
		"gateway_consumer_in_flight_records", "gateway_consumer_oldest_unacked_age_seconds"); err != nil {
		t.Error(err)
	}
}

func TestLimitMetricsReadTheLimiterAtScrapeTime(t *testing.T) {
	t.Parallel()
	var none *Limits // metrics off: every call is a no-op
	none.SetSource(nil, nil)
	none.ObserveWait("x", time.Second)
	none.Forget("x")

	r := NewRegistry()
	l := RegisterLimits(r)
	if n, err := testutil.GatherAndCount(r.Gatherer(), "gateway_limits_admitted_total", "gateway_limits_version_info"); err != nil || n != 0 {
		t.Fatalf("series without a limiter = %d, %v; want 0", n, err)
	}
	var mu sync.Mutex
	counts := map[string]LimitCounts{"orders-per-service": {Admitted: 10, Waited: 4, Rejected: 2, Shadowed: 1}}
	version := "v1"
	l.SetSource(func() (map[string]LimitCounts, int64) {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(counts), 3
	}, func() string { mu.Lock(); defer mu.Unlock(); return version })
	l.ObserveWait("orders-per-service", 50*time.Millisecond)
	mu.Lock()
	version = "v2"
	mu.Unlock()
	want := `
# HELP gateway_limits_acl_denied_total Calls the limits document's access rules denied (PERMISSION_DENIED).
# TYPE gateway_limits_acl_denied_total counter
gateway_limits_acl_denied_total 3
# HELP gateway_limits_admitted_total Records the rule admitted, shadow-limited ones included.
# TYPE gateway_limits_admitted_total counter
gateway_limits_admitted_total{rule="orders-per-service"} 10
# HELP gateway_limits_rejected_total Records the rule refused (RESOURCE_EXHAUSTED).
# TYPE gateway_limits_rejected_total counter
gateway_limits_rejected_total{rule="orders-per-service"} 2
# HELP gateway_limits_shadow_limited_total Records a rule in shadow mode would have delayed or refused, admitted at once.
# TYPE gateway_limits_shadow_limited_total counter
gateway_limits_shadow_limited_total{rule="orders-per-service"} 1
# HELP gateway_limits_waited_total Calls the rule admitted only after waiting for capacity.
# TYPE gateway_limits_waited_total counter
gateway_limits_waited_total{rule="orders-per-service"} 4
# HELP gateway_limits_version_info 1 for the version of the limits document in force.
# TYPE gateway_limits_version_info gauge
gateway_limits_version_info{version="v2"} 1
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want),
		"gateway_limits_acl_denied_total", "gateway_limits_admitted_total", "gateway_limits_rejected_total",
		"gateway_limits_shadow_limited_total", "gateway_limits_waited_total", "gateway_limits_version_info"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(l.wait); n != 1 {
		t.Errorf("%d wait series, want 1", n)
	}
	l.Forget("orders-per-service")
	if n := testutil.CollectAndCount(l.wait); n != 0 {
		t.Errorf("%d wait series of a forgotten rule, want 0", n)
	}
}

func TestServerAnswersProbesAndScrapes(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	RegisterReadiness(r).Set(true, map[string]bool{"kafka": true})
	var ready atomic.Bool
	srv, err := Listen(Config{Listen: "127.0.0.1:0"}, r, func() error {
		if ready.Load() {
			return nil
		}
		return errors.New("kafka: unreachable")
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + srv.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "kafka: unreachable") {
		t.Errorf("/readyz while not ready = %d %q, want 503 naming the failing check", code, body)
	}
	ready.Store(true)
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz while ready = %d %q, want 200", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `gateway_readiness_check_up{check="kafka"} 1`) {
		t.Errorf("/metrics = %d, want 200 with the readiness series:\n%s", code, body)
	}
}

// The CPU profile of a running gateway is how one finds where its CPU goes
// under load (the benchmark fetches it during its produce scenarios); it
// must be there when metrics.pprof is on, and absent by default, since
// profiles expose the process's internals to whoever reaches the listener.
func TestPprofIsServedOnlyWhenTurnedOn(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, c Config, path string) (int, []byte) {
		t.Helper()
		srv, err := Listen(c, NewRegistry(), func() error { return nil }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve()
		defer srv.Shutdown()
		resp, err := http.Get("http://" + srv.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	off := DefaultConfig()
	off.Listen = "127.0.0.1:0"
	on := off
	on.Pprof = true
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1"} {
		if code, _ := get(t, off, path); code != http.StatusNotFound {
			t.Errorf("by default, %s = %d, want 404", path, code)
		}
	}
	if code, body := get(t, on, "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(string(body), "goroutine profile:") {
		t.Errorf("with pprof on, the goroutine profile = %d %.80q, want 200 and the profile", code, body)
	}
	// A CPU profile is a gzipped protocol buffer.
	if code, body := get(t, on, "/debug/pprof/profile?seconds=1"); code != 200 || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Errorf("with pprof on, the CPU profile = %d, %d bytes, want 200 and a gzipped profile", code, len(body))
	}
}
