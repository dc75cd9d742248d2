package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/ratelimit"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestTwoGatewaysShareAFleetQuotaSetInRedis runs two gateway processes on one
// Redis, with their limits document in Redis (as gatewayctl limits set
// writes it), holding a fleet-wide quota of 400 records/s: producing as fast
// as they are let through both gateways for 5 s, the two together admit no
// more than 400/s (15% allowed for the clock). Then the quota is changed in
// Redis, and both apply the new one at once.
func TestTwoGatewaysShareAFleetQuotaSetInRedis(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	prefix := testenv.UniqueName("e2e-limits") + ":"
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	store := ratelimit.NewStore(rdb, prefix)
	quota := func(perSecond int) []byte {
		return fmt.Appendf(nil, "rules:\n- {name: quota, topic: %q, records: {per_second: %d, burst: 40}, scope: fleet, action: wait, max_wait: 5s}\n", topic, perSecond)
	}
	if _, err := store.Set(t.Context(), quota(400), "test", -1); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--embedded.enabled=false",
		"--kafka.bootstrap_servers=" + bootstrap,
		"--dedupe.redis.addrs=" + redisAddr,
		"--dedupe.key_prefix=" + prefix,
		"--limits.redis=true",
		"--identity.service=loadgen",
	}
	gateways := []*process{startBinary(t, args...), startBinary(t, args...)}
	for _, p := range gateways {
		defer p.stop(t)
	}

	var admitted atomic.Int64
	var wg sync.WaitGroup
	produceFor := func(d time.Duration) time.Duration {
		start := time.Now()
		for _, p := range gateways {
			client := gatewayv1.NewProducerServiceClient(dial(t, p.addr))
			// Offer far more than the quota, even when each call is slow
			// on a busy machine: 16 callers × 5 records per gateway.
			for range 16 {
				wg.Go(func() {
					for time.Since(start) < d {
						_, err := client.Produce(context.Background(), &gatewayv1.ProduceRequest{Topic: topic,
							Records: []*gatewayv1.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}, {Value: []byte("d")}, {Value: []byte("e")}}})
						if err != nil {
							t.Errorf("produce: %v", err)
							return
						}
						admitted.Add(5)
					}
				})
			}
		}
		wg.Wait()
		return time.Since(start)
	}
	elapsed := produceFor(5 * time.Second)
	// The shared bucket starts full (40), and each gateway may hold a
	// leased chunk (40) it has not spent.
	rate := float64(admitted.Load()-40) / elapsed.Seconds()
	t.Logf("two gateways admitted %d records in %v: %.0f/s against a quota of 400/s", admitted.Load(), elapsed.Round(time.Millisecond), rate)
	// The quota bounds what the two admit together; how close they come
	// to it depends on how busy the machine is, which a test cannot assert.
	if rate > 400*1.15 {
		t.Fatalf("combined rate %.0f/s, more than the quota of 400/s (+15%%)", rate)
	}

	if _, err := store.Set(t.Context(), quota(100), "test", 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // announced at once; well within this
	admitted.Store(0)
	elapsed = produceFor(5 * time.Second)
	// Besides the bucket's burst (40), each gateway may still spend a
	// chunk it leased under the old quota (40 each).
	rate = float64(admitted.Load()-120) / elapsed.Seconds()
	t.Logf("after the change: %.0f/s against a quota of 100/s", rate)
	if rate > 100*1.15 {
		t.Fatalf("combined rate %.0f/s after lowering the quota to 100/s", rate)
	}
}
