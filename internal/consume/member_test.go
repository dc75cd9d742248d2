package consume

// Tests of a group's librdkafka side (the poll loop, the rebalance callback,
// shutdown) against librdkafka on an in-process Kafka-protocol broker.

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/rdkafka"
)

// newCluster starts an in-process broker with topic t of the given
// partitions, each holding n records.
func newCluster(t *testing.T, partitions int32, n int) string {
	_, boot := newFakeCluster(t, partitions, n)
	return boot
}

// newFakeCluster is newCluster with the in-process broker itself.
func newFakeCluster(t *testing.T, partitions int32, n int) (*kfake.Cluster, string) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	boot := cluster.ListenAddrs()[0]
	for p := range partitions {
		produceTo(t, boot, p, n, "r")
	}
	return cluster, boot
}

func produceTo(t *testing.T, boot string, part int32, n int, tag string) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": boot, "log_level": 0, "go.delivery.reports": false})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	topic := "t"
	for i := range n {
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: part},
			Value: []byte(tag + strconv.Itoa(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if left := p.Flush(10_000); left > 0 {
		t.Fatalf("%d records not flushed", left)
	}
}

// newManager runs a Manager against boot until the test ends; setup, when
// not nil, sees it before it runs.
func newManager(t *testing.T, boot string, edit func(*Config), setup ...func(*Manager)) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Properties = map[string]string{"session.timeout.ms": "6000", "heartbeat.interval.ms": "300", "log_level": "0"}
	if edit != nil {
		edit(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	m, err := New(kafkaclient.Config{BootstrapServers: boot}, cfg, nil, "message-id", nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

// fetchedUpTo is the offset after the last record the group appended for
// part (-1: none, -2: not owned).
func fetchedUpTo(g *group, part int32) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.parts[tpKey{"t", part}]; l != nil {
		return l.next
	}
	return -2
}

func waitFor(t *testing.T, what string, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The review found that a partition paused for a full buffer kept
// librdkafka's application pause through its revocation; when it came back
// to the same gateway, its new log said "not paused", nothing resumed it,
// and it was never fetched again: a silent, permanent stall. Every
// partition is now resumed when it is assigned.
func TestAPartitionPausedBeforeARevokeIsFetchedWhenItComesBack(t *testing.T) {
	t.Parallel()
	boot := newCluster(t, 2, 20)
	m := newManager(t, boot, func(c *Config) { c.MaxBufferedRecords = 4; c.RevokeGrace = 0 })
	ctx := context.Background()
	st, err := m.Subscribe(ctx, SubscribeRequest{Group: "g", Topics: []string{"t"}, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := m.running("g")
	paused := func(part int32) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		l := g.parts[tpKey{"t", part}]
		return l != nil && l.paused
	}
	// The app takes one record and never acks: both partitions fill up and
	// pause.
	waitFor(t, "both partitions paused", 20*time.Second, func() bool { return paused(0) && paused(1) })

	// A second member joins (one partition moves to it), then leaves (the
	// partition comes back, still paused inside librdkafka).
	other, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": boot, "group.id": "g",
		"partition.assignment.strategy": "cooperative-sticky", "enable.auto.commit": false,
		"session.timeout.ms": 6000, "heartbeat.interval.ms": 300, "log_level": 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Subscribe("t", nil); err != nil {
		t.Fatal(err)
	}
	owned := func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.parts)
	}
	deadline := time.Now().Add(30 * time.Second)
	for owned() != 1 && time.Now().Before(deadline) {
		other.Poll(100)
	}
	if owned() != 1 {
		other.Close()
		t.Fatal("no partition moved to the second member")
	}
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		other.Poll(100)
		if a, _ := other.Assignment(); len(a) > 0 {
			for end2 := time.Now().Add(time.Second); time.Now().Before(end2); {
				other.Poll(100)
			}
			break
		}
	}
	other.Close()
	waitFor(t, "the partition to come back", 60*time.Second, func() bool { return owned() == 2 })

	// The app catches up: it acks everything it gets from now on.
	appCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			f, err := st.Next(appCtx)
			if err != nil {
				return
			}
			var ids []string
			for _, d := range f.Deliveries {
				ids = append(ids, d.AckID)
			}
			if len(ids) > 0 {
				_ = m.Ack(appCtx, "g", ids)
			}
		}
	}()
	produceTo(t, boot, 0, 5, "c")
	produceTo(t, boot, 1, 5, "d")
	for _, part := range []int32{0, 1} {
		waitFor(t, "partition "+strconv.Itoa(int(part))+" fetched to its end (25)", 30*time.Second, func() bool { return fetchedUpTo(g, part) == 25 })
	}
}

// The review found that consumer.assignor "range" passed --check-config but
// never consumed: the rebalance callback always used the incremental calls,
// which librdkafka refuses under an eager protocol. Eager assignors now get
// Assign and Unassign.
func TestAnEagerAssignorConsumes(t *testing.T) {
	t.Parallel()
	boot := newCluster(t, 1, 1)
	m := newManager(t, boot, func(c *Config) { c.Assignor = "range" })
	if err := m.cfg.Validate(kafkaclient.Config{BootstrapServers: boot}); err != nil {
		t.Fatalf("validate: %v", err)
	}
	st, err := m.Subscribe(context.Background(), SubscribeRequest{Group: "g-range", Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := next(st, 20*time.Second)
	if d == nil {
		t.Fatal("assignor range: nothing delivered in 20s")
	}
	if err := m.Ack(context.Background(), "g-range", []string{d.AckID}); err != nil {
		t.Fatal(err)
	}
}

// The review found that the guard on the consumer's close could not fire:
// the group's wait group held the librdkafka log router, which ends only
// inside Close, so a hung Close hung the whole shutdown (and the producer
// was never flushed). The router is now waited for only once Close returns.
func TestAHungConsumerCloseDoesNotHangTheShutdown(t *testing.T) {
	t.Parallel()
	boot := newCluster(t, 1, 1)
	m := newManager(t, boot, func(c *Config) { c.DrainTimeout = 0 })
	s, err := m.cfg.settings("", "g", []string{"t"}, "", "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	g, mb, err := startMember(m, s, false)
	if err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	defer close(hang)
	realClose := mb.close
	mb.close = func() error { <-hang; return realClose() }
	mb.closeTimeout = 300 * time.Millisecond
	done := make(chan struct{})
	go func() { mb.run(); close(done) }()
	g.beginShutdown()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown hung with the consumer's close")
	}
}

// subscribeSkewed subscribes a stream to topic t of boot in group g, on a
// manager whose clock runs ahead by what skew holds, and returns the group.
func subscribeSkewed(t *testing.T, boot string) (*group, *atomic.Int64) {
	t.Helper()
	skew := new(atomic.Int64)
	m := newManager(t, boot, nil, func(m *Manager) {
		m.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	st, err := m.Subscribe(context.Background(), SubscribeRequest{Group: "g", Topics: []string{"t"}, MaxInFlight: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return m.running("g"), skew
}

// A partition left paused inside librdkafka (here by a pause behind the
// group's back, as a stray pause across a revocation once did) is found by
// the fetch watcher, counted as a stall and resumed: also when its log grew
// only after every fetch of it had come back, so that librdkafka's cached
// log end for it is stale and only its leader knows.
func TestAPartitionNotFetchedIsFoundAndResumed(t *testing.T) {
	t.Parallel()
	boot := newCluster(t, 1, 3)
	g, skew := subscribeSkewed(t, boot)
	waitFor(t, "the first records", 20*time.Second, func() bool { return fetchedUpTo(g, 0) == 3 })
	if err := g.client.(kafkaClient).c.Pause([]rdkafka.TopicPartition{{Topic: "t", Partition: 0}}); err != nil {
		t.Fatal(err)
	}
	// Every fetch in flight at the pause (fetch.wait.max.ms, 100 ms) has
	// come back before the log grows.
	time.Sleep(time.Second)
	produceTo(t, boot, 0, 5, "late")
	skew.Store(int64(fetchStallAfter + time.Second)) // make the partition look idle for long
	waitFor(t, "the stall found and the partition resumed", 30*time.Second, func() bool { return fetchedUpTo(g, 0) == 8 })
	if n := g.stats.stalls.Load(); n < 1 {
		t.Fatalf("stalls = %d, want at least 1", n)
	}
}

// The fetch watcher asks about every idle partition of a check in one
// request to their leader, not one (or two, low and high) per partition:
// a gateway with many quiet partitions does not load the brokers with it.
func TestTheFetchWatcherAsksAboutIdlePartitionsInOneRequest(t *testing.T) {
	t.Parallel()
	const partitions = 12
	cluster, boot := newFakeCluster(t, partitions, 2)
	g, skew := subscribeSkewed(t, boot)
	waitFor(t, "every partition's records", 20*time.Second, func() bool {
		for p := range int32(partitions) {
			if fetchedUpTo(g, p) != 2 {
				return false
			}
		}
		return true
	})
	var mu sync.Mutex
	var requests, asked int
	cluster.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		requests++
		for _, tt := range req.(*kmsg.ListOffsetsRequest).Topics {
			asked += len(tt.Partitions)
		}
		return nil, nil, false
	})
	skew.Store(int64(fetchStallAfter + time.Second)) // every partition looks idle for long
	waitFor(t, "a check of the idle partitions", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return asked >= partitions
	})
	mu.Lock()
	defer mu.Unlock()
	if requests != 1 || asked != partitions {
		t.Errorf("a check of %d idle partitions made %d ListOffsets requests asking about %d partitions, want 1 asking about each once", partitions, requests, asked)
	}
	if n := g.stats.stalls.Load(); n != 0 {
		t.Errorf("stalls = %d for partitions fetched to their log end, want 0", n)
	}
}
