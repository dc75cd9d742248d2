package ratelimit

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/testenv"
)

const fleetDoc = "rules:\n- {name: quota, records: {per_second: 1000, burst: 100}, scope: fleet, max_wait: 5s}\n"

// TestAFleetQuotaIsSharedByTheReplicas runs two limiters, as two gateways
// would, on one Redis: together they admit the quota, within 15%.
func TestAFleetQuotaIsSharedByTheReplicas(t *testing.T) {
	t.Parallel()
	rdb, prefix := realRedis(t)
	var limiters []*Limiter
	for _, owner := range []string{"gw-a", "gw-b"} {
		l := New(NewFleetStore(rdb, prefix, owner, testenv.Logger(t)), testenv.Logger(t))
		defer l.Close()
		l.Apply(mustParse(t, fleetDoc), "test")
		limiters = append(limiters, l)
	}
	var admitted [2]atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	const d = 5 * time.Second
	for i, l := range limiters {
		for range 2 { // two callers per replica
			wg.Go(func() {
				for time.Since(start) < d {
					if err := l.Admit(context.Background(), "app", "t", 5, 5); err != nil {
						t.Error(err)
						return
					}
					admitted[i].Add(5)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	a, b := admitted[0].Load(), admitted[1].Load()
	t.Logf("replica a admitted %d, b %d in %v", a, b, elapsed.Round(time.Millisecond))
	// The bucket starts full (burst 100), and each replica may hold one
	// leased chunk (100) it has not spent yet.
	checkRate(t, "records, both replicas", float64(a+b-100)/elapsed.Seconds(), 1000, 0.15)
	if a < (a+b)/4 || b < (a+b)/4 {
		t.Fatalf("one replica starved: %d vs %d", a, b)
	}
}

// TestAFleetQuotaFallsBackToTheReplicasShareWithoutRedis: with Redis
// unreachable, each replica enforces its share of the quota, by the member
// count it saw last.
func TestAFleetQuotaFallsBackToTheReplicasShareWithoutRedis(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer down.Close()
	l := New(NewFleetStore(down, "x:", "gw-a", testenv.Logger(t)), testenv.Logger(t))
	defer l.Close()
	l.Apply(mustParse(t, fleetDoc), "test")

	// The first replica to find Redis down knows of no other member: it
	// takes the whole rate.
	admitted, elapsed := admitFor(t, l, 2*time.Second, 5, 1)
	checkRate(t, "records, alone without Redis", float64(admitted-100)/elapsed.Seconds(), 1000, 0.15)

	// A replica that last saw three members takes a third.
	l.mu.RLock()
	ft := l.buckets[bucketKey{"quota", "app"}].records.(*fleetTokens)
	l.mu.RUnlock()
	ft.mu.Lock()
	ft.members, ft.avail = 3, 0
	ft.mu.Unlock()
	admitted, elapsed = admitFor(t, l, 2*time.Second, 5, 1)
	checkRate(t, "records, one of three without Redis", float64(admitted)/elapsed.Seconds(), 1000.0/3, 0.15)
}

// TestACallerInDebtWaitsForItsReplicasShareOfTheFleetRate: a caller the pool
// cannot cover waits as long as the leases of its replica, one of several
// sharing the quota, take to pay for it. Waiting only what the whole fleet's
// rate would take let each of two replicas admit its queue at the fleet's
// rate (a combined 117/s against a quota of 100/s in one run).
func TestACallerInDebtWaitsForItsReplicasShareOfTheFleetRate(t *testing.T) {
	for _, tc := range []struct {
		members int
		want    time.Duration
	}{
		{1, 50 * time.Millisecond},  // 50 tokens at 1000/s
		{2, 100 * time.Millisecond}, // at 500/s
		{4, 200 * time.Millisecond}, // at 250/s
	} {
		ft := &fleetTokens{lim: Limit{PerSecond: 1000, Burst: 100}, members: tc.members, kick: make(chan struct{}, 1)}
		delay, ok, _ := ft.reserve(time.Now(), 50)
		if !ok {
			t.Fatalf("%d members: 50 tokens within a burst of 100 refused", tc.members)
		}
		if delay != tc.want {
			t.Errorf("%d members: a caller owed 50 tokens waits %v, want %v", tc.members, delay, tc.want)
		}
	}
}
