package gateway_test

// Tests of the metrics against the real broker and the real Redis: the
// counts after a scripted run, and bounded label values.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

// scrape reads the gateway's /metrics.
func scrape(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + h.gw.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return fams
}

// sample is the value of the series of family name whose labels include
// want, and whether there is one. For histograms it is the sample count.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// expectation is one series and its expected value; min makes it a lower
// bound.
type expectation struct {
	name   string
	labels map[string]string
	want   float64
	min    bool
}

// mismatches lists the expectations fams does not meet.
func mismatches(fams map[string]*dto.MetricFamily, exps []expectation) []string {
	var out []string
	for _, e := range exps {
		got, ok := sample(fams, e.name, e.labels)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s%v: absent, want %v", e.name, e.labels, e.want))
		case e.min && got < e.want:
			out = append(out, fmt.Sprintf("%s%v = %v, want at least %v", e.name, e.labels, got, e.want))
		case !e.min && got != e.want:
			out = append(out, fmt.Sprintf("%s%v = %v, want %v", e.name, e.labels, got, e.want))
		}
	}
	return out
}

// awaitMetrics scrapes until every expectation holds, and fails with what
// is still off when timeout passes.
func awaitMetrics(t *testing.T, h *harness, timeout time.Duration, exps []expectation) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		fams := scrape(t, h)
		off := mismatches(fams, exps)
		if len(off) == 0 {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics after %v:\n  %s", timeout, strings.Join(off, "\n  "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// labelValues returns every label value of every series, with where it was
// seen.
func labelValues(fams map[string]*dto.MetricFamily) map[string]string {
	out := map[string]string{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				out[lp.GetValue()] = name + "{" + lp.GetName() + "}"
			}
		}
	}
	return out
}

func seriesCount(fams map[string]*dto.MetricFamily) int {
	n := 0
	for name, f := range fams {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue // the runtime's own families vary with the Go version
		}
		n += len(f.GetMetric())
	}
	return n
}

// scriptedApp consumes for TestMetricsCountAScriptedRun: record "rec-i" is
// nacked once for a retry when i%10 == 1, nacked to the dead-letter topic
// when i%10 == 2, acked otherwise; every other record is acked. It records
// what it did and every ID it saw.
type scriptedApp struct {
	mu               sync.Mutex
	acked, nacked    int
	ackCalls         int
	ackIDs, msgIDs   map[string]bool
	deliveredRecords int
}

func (a *scriptedApp) run(ctx context.Context, h *harness, req *gatewayv1.SubscribeRequest) {
	client := h.consumer()
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		var ack []string
		for _, d := range resp.GetDeliveries().GetDeliveries() {
			a.mu.Lock()
			a.deliveredRecords++
			a.ackIDs[d.GetAckId()] = true
			a.msgIDs[d.GetMessageId()] = true
			a.mu.Unlock()
			var i int
			if _, err := fmt.Sscanf(string(d.GetValue()), "rec-%d", &i); err == nil && (i%10 == 1 && d.GetAttempt() == 1 || i%10 == 2) {
				nack := &gatewayv1.NackRequest{Group: req.GetGroup(), AckIds: []string{d.GetAckId()}, RetryAfter: durationpb.New(0), DeadLetter: i%10 == 2, Reason: "scripted"}
				if _, err := client.Nack(ctx, nack); err == nil {
					a.mu.Lock()
					a.nacked++
					a.mu.Unlock()
				}
				continue
			}
			ack = append(ack, d.GetAckId())
		}
		if len(ack) == 0 {
			continue
		}
		if _, err := client.Ack(ctx, &gatewayv1.AckRequest{Group: req.GetGroup(), AckIds: ack}); err == nil {
			a.mu.Lock()
			a.acked += len(ack)
			a.ackCalls++
			a.mu.Unlock()
		}
	}
}

// TestMetricsCountAScriptedRun produces 60 records through the gateway and
// 5 messages written twice behind its back, consumes them with dedupe on,
// nacking 6 records once and dead-lettering 6 others, and checks that
// /metrics counts exactly that, and that no label carries a key, a value,
// a message ID or an ack ID.
func TestMetricsCountAScriptedRun(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	group := testenv.UniqueName("metrics")
	h := dedupeGateway(t, redisAddr, func(c *config.Config) {
		c.Metrics.KafkaStatisticsInterval = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	const n = 60
	keys, values, msgIDs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var bytes int
	for batch := range 3 {
		var recs []*gatewayv1.Record
		for i := batch * 20; i < (batch+1)*20; i++ {
			r := &gatewayv1.Record{Key: fmt.Appendf(nil, "key-%d", i), Value: fmt.Appendf(nil, "rec-%d", i)}
			keys[string(r.Key)], values[string(r.Value)] = true, true
			bytes += len(r.Key) + len(r.Value)
			recs = append(recs, r)
		}
		resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		for _, r := range resp.GetResults() {
			msgIDs[r.GetMessageId()] = true
		}
	}
	produceDuplicated(t, bootstrap, topic, 5) // msg-0..msg-4, each twice

	app := &scriptedApp{ackIDs: map[string]bool{}, msgIDs: map[string]bool{}}
	go app.run(ctx, h, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 50})

	g := map[string]string{"group": group}
	const retried, deadLettered, dupMessages = 6, 6, 5
	fams := awaitMetrics(t, h, 90*time.Second, []expectation{
		{name: "gateway_producer_records_total", labels: map[string]string{"topic": topic, "result": "ok"}, want: n},
		{name: "gateway_producer_bytes_total", labels: map[string]string{"topic": topic, "result": "ok"}, want: float64(bytes)},
		{name: "gateway_producer_batch_latency_seconds", labels: map[string]string{"topic": topic}, want: 3},
		{name: "gateway_producer_records_total", labels: map[string]string{"topic": topic + ".dlq", "result": "ok"}, want: deadLettered},
		{name: "gateway_consumer_deliveries_total", labels: g, want: n + retried + dupMessages},
		{name: "gateway_consumer_redeliveries_total", labels: g, want: retried},
		{name: "gateway_consumer_acks_total", labels: g, want: n - deadLettered + dupMessages},
		{name: "gateway_consumer_nacks_total", labels: g, want: retried + deadLettered},
		{name: "gateway_consumer_dead_lettered_total", labels: g, want: deadLettered},
		{name: "gateway_consumer_ack_timeouts_total", labels: g, want: 0},
		{name: "gateway_consumer_in_flight_records", labels: g, want: 0},
		{name: "gateway_consumer_buffered_records", labels: g, want: 0},
		{name: "gateway_consumer_oldest_unacked_age_seconds", labels: g, want: 0},
		{name: "gateway_consumer_partitions_assigned", labels: g, want: 3},
		{name: "gateway_consumer_streams", labels: g, want: 1},
		{name: "gateway_consumer_commits_total", labels: g, want: 1, min: true},
		{name: "gateway_consumer_commit_failures_total", labels: g, want: 0},
		{name: "gateway_consumer_rebalances_total", labels: g, want: 1},
		{name: "gateway_dedupe_claims_total", labels: g, want: n + retried + dupMessages},
		{name: "gateway_dedupe_duplicates_dropped_total", labels: g, want: dupMessages},
		{name: "gateway_dedupe_redis_errors_total", labels: g, want: 0},
		{name: "gateway_dedupe_lost_claims_total", labels: g, want: 0},
		{name: "gateway_dedupe_degraded", labels: g, want: 0},
		{name: "gateway_consumer_lag_records", labels: map[string]string{"group": group, "topic": topic, "partition": "0"}, want: 0},
		{name: "gateway_consumer_lag_records", labels: map[string]string{"group": group, "topic": topic, "partition": "1"}, want: 0},
		{name: "gateway_consumer_lag_records", labels: map[string]string{"group": group, "topic": topic, "partition": "2"}, want: 0},
		{name: "gateway_kafka_broker_up", labels: map[string]string{"client": "producer"}, want: 1},
		{name: "gateway_kafka_broker_up", labels: map[string]string{"client": "consumer", "group": group}, want: 1},
		{name: "grpc_server_handled_total", labels: map[string]string{"grpc_method": "Produce", "grpc_code": "OK"}, want: 3},
		{name: "gateway_ready", want: 1},
		{name: "gateway_readiness_check_up", labels: map[string]string{"check": "kafka"}, want: 1},
		{name: "gateway_readiness_check_up", labels: map[string]string{"check": "redis"}, want: 1},
	})
	app.mu.Lock()
	defer app.mu.Unlock()
	// The app's own account agrees with the gateway's.
	if got, _ := sample(fams, "gateway_consumer_deliveries_total", g); int(got) != app.deliveredRecords {
		t.Errorf("deliveries_total = %v, the app saw %d deliveries", got, app.deliveredRecords)
	}
	if got, _ := sample(fams, "grpc_server_handled_total", map[string]string{"grpc_method": "Ack", "grpc_code": "OK"}); int(got) != app.ackCalls {
		t.Errorf("Ack calls answered OK = %v, the app made %d", got, app.ackCalls)
	}
	for value, where := range labelValues(fams) {
		if keys[value] || values[value] || msgIDs[value] || app.ackIDs[value] || app.msgIDs[value] {
			t.Errorf("label %s carries a per-record value %q", where, value)
		}
	}
}

// TestMetricSeriesDoNotGrowWithKeysOrIDs writes and consumes records with
// ever new keys and idempotency keys: the number of series stays the same
// and no label carries any of them.
func TestMetricSeriesDoNotGrowWithKeysOrIDs(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	group := testenv.UniqueName("labels")
	h := consumerGateway(t, func(c *config.Config) {
		c.Metrics.KafkaStatisticsInterval = 0 // broker series come and go with the statistics
	})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	perRecord := map[string]bool{}
	var seen sync.Map // message and ack IDs delivered
	go func() {
		client := h.consumer()
		stream, err := client.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 200})
		if err != nil {
			return
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			var ids []string
			for _, d := range resp.GetDeliveries().GetDeliveries() {
				seen.Store(d.GetMessageId(), true)
				seen.Store(d.GetAckId(), true)
				ids = append(ids, d.GetAckId())
			}
			if len(ids) > 0 {
				_, _ = client.Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ids})
			}
		}
	}()
	written := 0
	round := func(records int) map[string]*dto.MetricFamily {
		t.Helper()
		for start := 0; start < records; start += 100 {
			var recs []*gatewayv1.Record
			for i := range 100 {
				id := fmt.Sprintf("order-%d-%d", written, i)
				perRecord["key-"+id], perRecord["idem-"+id] = true, true
				recs = append(recs, &gatewayv1.Record{Key: []byte("key-" + id), Value: []byte("v"), IdempotencyKey: "idem-" + id})
			}
			written++
			if _, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs}); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
		total := float64(written * 100)
		return awaitMetrics(t, h, 60*time.Second, []expectation{
			{name: "gateway_consumer_acks_total", labels: map[string]string{"group": group}, want: total},
			{name: "gateway_consumer_buffered_records", labels: map[string]string{"group": group}, want: 0},
		})
	}
	first := seriesCount(round(100))
	after := round(1000)
	if n := seriesCount(after); n != first {
		t.Errorf("%d series after 100 records, %d after 1100: label values grow with the records", first, n)
		var names []string
		for name, f := range after {
			names = append(names, fmt.Sprintf("%s=%d", name, len(f.GetMetric())))
		}
		slices.Sort(names)
		t.Logf("series per family: %v", names)
	}
	seen.Range(func(k, _ any) bool { perRecord[k.(string)] = true; return true })
	for value, where := range labelValues(after) {
		if perRecord[value] {
			t.Errorf("label %s carries a per-record value %q", where, value)
		}
	}
	if len(perRecord) < 2000 {
		t.Fatalf("only %d per-record values collected; the test checked little", len(perRecord))
	}
}

// TestAnOffsetResetIsCounted: a group whose committed offset was deleted
// (retention, here DeleteRecords) before it consumed it is moved to the
// log start by librdkafka, skipping records; the gateway counts it for the
// group. A new group starting without a committed offset is not a reset.
func TestAnOffsetResetIsCounted(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := consumerGateway(t, nil)
	produceRecords(t, h, topic, 10, 10)
	behind, fresh := testenv.UniqueName("behind"), testenv.UniqueName("fresh")

	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": behind, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CommitOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: 3}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := admin.DeleteRecords(ctx, []kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: 8}}); err != nil {
		t.Fatalf("delete records: %v", err)
	}

	for _, group := range []string{behind, fresh} {
		p := &processed{counts: map[string]int{}}
		go ackingApp(ctx, h, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}}, p)
		testenv.Eventually(t, 30*time.Second, group+" to process the records left", func() bool { return p.distinct() == 2 })
	}
	awaitMetrics(t, h, 30*time.Second, []expectation{
		{name: "gateway_consumer_offset_resets_total", labels: map[string]string{"group": behind}, want: 1},
		{name: "gateway_consumer_offset_resets_total", labels: map[string]string{"group": fresh}, want: 0},
	})
}
