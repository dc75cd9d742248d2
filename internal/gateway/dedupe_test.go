package gateway_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
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
// records (the same idempotency key, so the same message ID), as a
// producer retry that was written twice looks.
func produceDuplicated(t *testing.T, h *harness, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []*gatewayv1.Record
	for copyNo := range 2 {
		for i := range n {
			recs = append(recs, &gatewayv1.Record{
				Key:            fmt.Appendf(nil, "key-%d", i%10),
				Value:          fmt.Appendf(nil, "%d/copy%d", i, copyNo),
				IdempotencyKey: fmt.Sprintf("msg-%d", i),
			})
		}
	}
	resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		if r.GetError() != nil {
			t.Fatal(r.GetError())
		}
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
		if len(ids) > 0 {
			if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: req.GetGroup(), AckIds: ids}); err != nil {
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
	produceDuplicated(t, h, topic, n)

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
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 20}

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
	const n = 3000
	produceRecords(t, h, topic, n, 100)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p := &processed{counts: map[string]int{}}
	for range 3 {
		go ackingApp(ctx, h, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 50}, p)
	}
	testenv.Eventually(t, 30*time.Second, "the run to be under way", func() bool { return p.distinct() >= n/5 })
	rs.kill(t)
	time.Sleep(3 * time.Second) // the outage
	during := p.distinct()
	rs.start(t)
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
