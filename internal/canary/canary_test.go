package canary_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/canary"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
	"github.com/kafkagate/gateway/internal/testenv"
)

// counts is an Observer that counts.
type counts struct {
	sent, sendFailed, received, timed, lost, duplicates atomic.Int64
}

func (c *counts) Sent()       { c.sent.Add(1) }
func (c *counts) SendFailed() { c.sendFailed.Add(1) }
func (c *counts) Lost(n int)  { c.lost.Add(int64(n)) }
func (c *counts) Duplicate()  { c.duplicates.Add(1) }
func (c *counts) Received(latency time.Duration, _ time.Time) {
	c.received.Add(1)
	if latency >= 0 {
		c.timed.Add(1)
	}
}

// faultyProducer passes canary records to the real producer, except that
// it reports one sequence number written without writing it (a write the
// cluster lost) and writes another one twice (a duplicate in the topic).
type faultyProducer struct {
	p           canary.Producer
	drop, twice uint64
}

func (f *faultyProducer) Produce(ctx context.Context, topic string, recs []produce.Record) ([]produce.Result, error) {
	seqText, _, _ := strings.Cut(string(recs[0].Value), " ")
	seq, _ := strconv.ParseUint(seqText, 10, 64)
	if seq == f.drop {
		return []produce.Result{{}}, nil
	}
	res, err := f.p.Produce(ctx, topic, recs)
	if err == nil && seq == f.twice {
		_, err = f.p.Produce(ctx, topic, recs)
	}
	return res, err
}

// TestCanaryCountsInjectedLossAndDuplicates runs the canary through a real
// producer and consumer group on the real broker, with a producer that
// loses record 3 and writes record 5 twice: the canary reports exactly one
// lost record and one duplicate, and times every other record.
func TestCanaryCountsInjectedLossAndDuplicates(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	logger := testenv.Logger(t)
	kc := kafkaclient.Config{BootstrapServers: bootstrap, ClientID: "canary-test"}

	p, err := produce.New(kc, produce.DefaultConfig(), logger)
	if err != nil {
		t.Fatal(err)
	}
	m, err := consume.New(kc, consume.DefaultConfig(), p, "message-id", nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	prodCtx, stopProducer := context.WithCancel(context.Background())
	wg.Go(func() { _ = p.Run(prodCtx) })
	consCtx, stopConsumers := context.WithCancel(context.Background())
	wg.Go(func() { _ = m.Run(consCtx) })
	t.Cleanup(func() { stopConsumers(); stopProducer(); wg.Wait() })

	cfg := canary.Config{Enabled: true, Topic: topic, Interval: 100 * time.Millisecond}
	obs := &counts{}
	c := canary.New(cfg, testenv.UniqueName("canary"), kc, &faultyProducer{p: p, drop: 3, twice: 5}, m, obs, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Records 1..10, one lost: 9 distinct received, plus the duplicate.
	testenv.Eventually(t, 90*time.Second, "ten canary records to come back", func() bool { return obs.received.Load()+obs.duplicates.Load() >= 10 })
	cancel()
	<-done
	if got := obs.lost.Load(); got != 1 {
		t.Errorf("lost = %d, want 1 (record 3 was never written)", got)
	}
	if got := obs.duplicates.Load(); got != 1 {
		t.Errorf("duplicates = %d, want 1 (record 5 was written twice)", got)
	}
	if got, want := obs.timed.Load(), obs.received.Load(); got != want {
		t.Errorf("%d of %d received records timed, want all", got, want)
	}
	if obs.sendFailed.Load() != 0 {
		t.Errorf("%d writes failed, want none", obs.sendFailed.Load())
	}
	t.Logf("sent %d, received %d", obs.sent.Load(), obs.received.Load())
}
