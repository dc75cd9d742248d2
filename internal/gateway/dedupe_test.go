package gateway_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/gateway"
	"github.com/kafkagate/gateway/internal/testenv"
)

// dedupeGateway is a consumer gateway with dedupe on, against redisAddr.
func dedupeGateway(t *testing.T, redisAddr string, mutate func(*config.Config)) *harness {
	return consumerGateway(t, func(c *config.Config) {
		c.Dedupe.Enabled = true
		c.Dedupe.Redis.Addrs = []string{redisAddr}
		c.Dedupe.KeyPrefix = testenv.UniqueName("test") + ":"
		c.Dedupe.HoldRetry = 200 * time.Millisecond
		if mutate != nil {
			mutate(c)
		}
	})
}

// produceDuplicated writes n distinct messages, each twice as separate
// records with the same message-id header, with a plain librdkafka producer:
// what a producer retry written twice, or a replay, looks like to consumers.
func produceDuplicated(t *testing.T, bootstrap, topic string, n int) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3, "go.delivery.reports": false})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for copyNo := range 2 {
		for i := range n {
			err := p.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key:            fmt.Appendf(nil, "key-%d", i%10),
				Value:          fmt.Appendf(nil, "%d/copy%d", i, copyNo),
				Headers:        []kafka.Header{{Key: "message-id", Value: fmt.Appendf(nil, "msg-%d", i)}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if left := p.Flush(30_000); left > 0 {
		t.Fatalf("%d records not flushed", left)
	}
}

// processed counts acks per message ID across every stream.
type processed struct {
	mu     sync.Mutex
	counts map[string]int
}

func (p *processed) add(id string) {
	p.mu.Lock()
	p.counts[id]++
	p.mu.Unlock()
}

func (p *processed) distinct() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.counts)
}

// ackingApp processes (acks) every delivery and records it by message ID.
func ackingApp(ctx context.Context, h *harness, req *gatewayv1.SubscribeRequest, p *processed) {
	stream, err := h.consumer().Subscribe(ctx, req)
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
			p.add(d.GetMessageId())
			ids = append(ids, d.GetAckId())
		}
		// An Ack whose done markers Redis cannot take yet fails with
		// UNAVAILABLE and stays applied: an app repeats it.
		for len(ids) > 0 {
			_, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: req.GetGroup(), AckIds: ids})
			switch {
			case err == nil:
				ids = nil
			case status.Code(err) == codes.Unavailable && ctx.Err() == nil:
				time.Sleep(100 * time.Millisecond)
			default:
				return
			}
		}
	}
}

func (p *processed) requireOnce(t *testing.T, n int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.counts) != n {
		t.Errorf("%d distinct messages processed, want %d", len(p.counts), n)
	}
	for id, c := range p.counts {
		if c != 1 {
			t.Errorf("message %s processed %d times, want once", id, c)
		}
	}
}

func TestWithDedupeADuplicatedMessageReachesTheAppOnce(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	group := testenv.UniqueName("g")
	h := dedupeGateway(t, redisAddr, nil)
	const n = 300
	produceDuplicated(t, bootstrap, topic, n)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := &processed{counts: map[string]int{}}
	for range 3 {
		go ackingApp(ctx, h, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE}, p)
	}
	testenv.Eventually(t, 30*time.Second, "every message to be processed", func() bool { return p.distinct() == n })
	// The duplicates count as done: the commit reaches the end.
	offsets := newOffsetReader(t, bootstrap, group, topic, 3)
	ends := map[int32]int64{}
	for _, m := range testenv.ReadTopic(t, bootstrap, topic) {
		ends[m.TopicPartition.Partition] = int64(m.TopicPartition.Offset) + 1
	}
	testenv.Eventually(t, 20*time.Second, "commits to pass the dropped duplicates", func() bool {
		got := offsets.committed()
		for part, end := range ends {
			if got[part] != end {
				return false
			}
		}
		return true
	})
	p.requireOnce(t, n)
}

func TestWithDedupeARecordOfACancelledStreamIsProcessedOnce(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	h := dedupeGateway(t, redisAddr, nil)
	produceRecords(t, h, topic, 50, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// With dedupe, a broken stream's records stay with it until the ack
	// timeout (its app may live on); a short one brings them back soon.
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 20,
		AckTimeout: durationpb.New(2 * time.Second)}

	// The app "crashes" after receiving, before acking.
	crashCtx, crash := context.WithCancel(ctx)
	stream, err := h.consumer().Subscribe(crashCtx, req)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got == 0 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = len(resp.GetDeliveries().GetDeliveries())
	}
	crash()

	p := &processed{counts: map[string]int{}}
	go ackingApp(ctx, h, req, p)
	testenv.Eventually(t, 30*time.Second, "every record to be processed after the crash", func() bool { return p.distinct() == 50 })
	p.requireOnce(t, 50)
}

// TestWithDedupeARedisOutagePausesDeliveryAndLosesNothing kills a real
// redis-server in the middle of a run and starts it again: delivery pauses
// (policy "pause") and resumes, nothing is lost and nothing is processed
// twice.
func TestWithDedupeARedisOutagePausesDeliveryAndLosesNothing(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	rs := startRedisServer(t)
	topic := testenv.CreateTopic(t, bootstrap, 4)
	group := testenv.UniqueName("g")
	h := dedupeGateway(t, rs.addr, nil)
	const n = 10_000
	produceRecords(t, h, topic, n, 100)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p := &processed{counts: map[string]int{}}
	for range 3 {
		go ackingApp(ctx, h, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 50}, p)
	}
	testenv.Eventually(t, 30*time.Second, "the run to be under way", func() bool { return p.distinct() >= n/5 })
	rs.kill(t)
	health := healthpb.NewHealthClient(h.conn)
	consumerService := &healthpb.HealthCheckRequest{Service: gatewayv1.ConsumerService_ServiceDesc.ServiceName}
	testenv.Eventually(t, 10*time.Second, "health to report the consumer degraded", func() bool {
		hc, err := health.Check(ctx, consumerService)
		return err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	time.Sleep(10 * time.Second) // the outage
	during := p.distinct()
	rs.start(t)
	testenv.Eventually(t, 20*time.Second, "health to report the consumer serving again", func() bool {
		hc, err := health.Check(ctx, consumerService)
		return err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	testenv.Eventually(t, 60*time.Second, "every record to be processed after Redis returned", func() bool { return p.distinct() == n })
	t.Logf("%d of %d processed when Redis came back", during, n)
	p.requireOnce(t, n)
}

// redisServer is a redis-server process owned by one test.
type redisServer struct {
	addr string
	port int
	cmd  *exec.Cmd
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	testenv.Redis(t) // the harness installed redis-server
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	rs := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), port: port}
	rs.start(t)
	t.Cleanup(func() {
		if rs.cmd != nil {
			rs.cmd.Process.Kill()
			rs.cmd.Wait()
		}
	})
	return rs
}

func (rs *redisServer) start(t *testing.T) {
	t.Helper()
	rs.cmd = exec.Command("redis-server", "--port", strconv.Itoa(rs.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := rs.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: rs.addr})
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, "redis-server to answer", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
}

func (rs *redisServer) kill(t *testing.T) {
	t.Helper()
	rs.cmd.Process.Kill()
	rs.cmd.Wait()
	rs.cmd = nil
}

func TestConcurrentProducesWithOneIdempotencyKeyWriteOnce(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	h := dedupeGateway(t, redisAddr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Key: []byte("k"), Value: []byte("pay 10"), IdempotencyKey: "payment-42"}}}

	results := make([]*gatewayv1.RecordResult, 20)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			resp, err := h.producer.Produce(ctx, req)
			if err != nil {
				t.Errorf("Produce: %v", err)
				return
			}
			results[i] = resp.GetResults()[0]
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.GetError() != nil || !proto.Equal(r, results[0]) {
			t.Errorf("result %d = %v, want the same as result 0 = %v", i, r, results[0])
		}
	}
	// And a retry much later, on the stream API, answers the same again.
	stream, err := h.producer.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&gatewayv1.ProduceStreamRequest{RequestId: "retry", Topic: topic, Records: req.GetRecords()}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResults()[0]; !proto.Equal(r, results[0]) {
		t.Errorf("stream retry result = %v, want %v", r, results[0])
	}
	if msgs := testenv.ReadTopic(t, bootstrap, topic); len(msgs) != 1 {
		t.Fatalf("topic holds %d records, want exactly one", len(msgs))
	}
}

// TestWithDedupeABrokenStreamKeepsItsRecordsUntilItsAppsLateAck: a stream
// breaks while its app still works on its batch (the app lives on). Another
// stream of the group must not get those records meanwhile; the app's late
// Ack succeeds, and the records are never delivered again.
func TestWithDedupeABrokenStreamKeepsItsRecordsUntilItsAppsLateAck(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	h := dedupeGateway(t, redisAddr, nil)
	produceRecords(t, h, topic, 10, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE,
		MaxInFlight: 10, AckTimeout: durationpb.New(30 * time.Second)}

	// Stream A takes the whole batch.
	actx, breakA := context.WithCancel(ctx)
	a, err := h.consumer().Subscribe(actx, req)
	if err != nil {
		t.Fatal(err)
	}
	var batch []*gatewayv1.Delivery
	for len(batch) < 10 {
		resp, err := a.Recv()
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, resp.GetDeliveries().GetDeliveries()...)
	}
	// Stream B of another app joins; A's stream breaks mid-batch.
	b, err := h.consumer().Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	gotB := make(chan *gatewayv1.Delivery, 100)
	go func() {
		for {
			resp, err := b.Recv()
			if err != nil {
				return
			}
			for _, d := range resp.GetDeliveries().GetDeliveries() {
				gotB <- d
			}
		}
	}()
	breakA()
	select {
	case d := <-gotB:
		t.Fatalf("stream B got %s/%d while A's app still held it", d.GetTopic(), d.GetOffset())
	case <-time.After(2 * time.Second):
	}
	// A's app finishes and acks through a new connection's call: accepted.
	if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ackIDs(batch)}); err != nil {
		t.Fatalf("the late ack of the broken stream's batch: %v", err)
	}
	// B is live, and gets the next record only.
	produceRecords(t, h, topic, 1, 1)
	select {
	case d := <-gotB:
		if d.GetOffset() != 10 {
			t.Fatalf("stream B got offset %d, want only the new record (10)", d.GetOffset())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stream B got nothing")
	}
	select {
	case d := <-gotB:
		t.Fatalf("stream B got %d as well", d.GetOffset())
	case <-time.After(time.Second):
	}
}

// TestARedisClusterBehindOneAddressNeedsTheClusterKey pins a Redis Cluster
// reached through one address: the gateway built a single-server client,
// whose batches a Cluster answers with MOVED, and consumption with dedupe
// paused forever. Now the gateway refuses to start, naming
// dedupe.redis.cluster; with it, it starts and idempotency keys work
// through a Cluster client.
func TestARedisClusterBehindOneAddressNeedsTheClusterKey(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	node := testenv.RedisClusterNode(t)
	cfg := config.Default()
	cfg.Embedded.Enabled = false
	cfg.Server.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.BootstrapServers = bootstrap
	cfg.Dedupe.Enabled = true
	cfg.Dedupe.Redis.Addrs = []string{node}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, testenv.Logger(t))
	if err == nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = gw.Run(ctx)
		t.Fatal("the gateway started with a single-server client of a Redis Cluster node")
	}
	if !strings.Contains(err.Error(), "dedupe.redis.cluster") {
		t.Fatalf("start-up error %q does not name dedupe.redis.cluster", err)
	}

	topic := testenv.CreateTopic(t, bootstrap, 3)
	h := dedupeGateway(t, node, func(c *config.Config) { c.Dedupe.Redis.Cluster = true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("pay 5"), IdempotencyKey: "payment-5"}}}
	var results []*gatewayv1.RecordResult
	for range 2 {
		resp, err := h.producer.Produce(ctx, req)
		if err != nil {
			t.Fatalf("Produce with an idempotency key through the Cluster client: %v", err)
		}
		results = append(results, resp.GetResults()[0])
	}
	if !proto.Equal(results[0], results[1]) {
		t.Errorf("retry answered %v, want the first write's %v", results[1], results[0])
	}
	if msgs := testenv.ReadTopic(t, bootstrap, topic); len(msgs) != 1 {
		t.Errorf("topic holds %d records, want 1", len(msgs))
	}
}
