package dedupe

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestReserveProduceConcurrent(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		ctx := testCtx(t)
		const n = 20
		// Each goroutine is its own gateway process, except that two share
		// an owner: reservations differ by their token too.
		stores := make([]*Store, n)
		for i := range stores {
			stores[i] = NewStore(rdb, prefix, week, NewOwner("gw"))
		}
		stores[1] = NewStore(rdb, prefix, week, stores[0].Owner())
		want := ProduceResult{Partition: 3, Offset: 4711, Timestamp: time.Unix(1_700_000_000, 123_456_789), MessageID: "0190-a|b"}

		var (
			wg       sync.WaitGroup
			start    = make(chan struct{})
			mu       sync.Mutex
			reserved []int
			results  = make([]*ProduceResult, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				s := stores[i]
				st, err := s.ReserveProduce(ctx, "orders", in([]string{"key-1"}...), ttl(10*time.Second))
				if err != nil {
					t.Error(err)
					return
				}
				if st[0].Reserved {
					mu.Lock()
					reserved = append(reserved, i)
					mu.Unlock()
					time.Sleep(100 * time.Millisecond) // the write to Kafka
					ok, err := s.CompleteProduce(ctx, "orders", []Reservation{{Key: "key-1", Token: st[0].Token}}, []ProduceResult{want}, time.Hour)
					if err != nil || !ok[0] {
						t.Errorf("complete: %v %v", ok, err)
					}
					r := want
					results[i] = &r
					return
				}
				if st[0].Done == nil {
					if st, err = s.WaitProduce(ctx, "orders", in([]string{"key-1"}...), ttl(10*time.Second)); err != nil {
						t.Error(err)
						return
					}
				}
				if st[0].Reserved || st[0].Done == nil {
					t.Errorf("goroutine %d: %+v, want done", i, st[0])
					return
				}
				results[i] = st[0].Done
			})
		}
		close(start)
		wg.Wait()
		if len(reserved) != 1 {
			t.Fatalf("%d goroutines reserved the key (%v), want 1", len(reserved), reserved)
		}
		var first *ProduceResult
		for i, r := range results {
			if r == nil {
				t.Fatalf("goroutine %d has no result", i)
			}
			if !r.Timestamp.Equal(want.Timestamp) || r.Partition != want.Partition || r.Offset != want.Offset || r.MessageID != want.MessageID {
				t.Fatalf("goroutine %d: %+v, want %+v", i, *r, want)
			}
			if i == reserved[0] {
				continue
			}
			if first == nil {
				first = r
			} else if !reflect.DeepEqual(*r, *first) {
				t.Fatalf("waiters differ: %+v and %+v", *r, *first)
			}
		}
		// A later Produce gets the same result, from another gateway too.
		st, err := NewStore(rdb, prefix, week, "gw-late").ReserveProduce(ctx, "orders", in([]string{"key-1"}...), ttl(time.Second))
		if err != nil || st[0].Done == nil || !reflect.DeepEqual(*st[0].Done, *first) {
			t.Fatalf("later reserve: %+v %v", st, err)
		}
		ttl, err := rdb.PTTL(ctx, prefix+"produce:orders:key-1").Result()
		if err != nil || ttl < 59*time.Minute || ttl > time.Hour {
			t.Fatalf("result TTL %v %v, want about the 1h window", ttl, err)
		}
	})
}

func TestAbortProduceLetsWaiterTakeOver(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		ctx := testCtx(t)
		holder := NewStore(rdb, prefix, week, "gw-holder")
		st, err := holder.ReserveProduce(ctx, "orders", in([]string{"k"}...), ttl(10*time.Second))
		if err != nil || !st[0].Reserved {
			t.Fatalf("reserve: %+v %v", st, err)
		}
		holderRes := Reservation{Key: "k", Token: st[0].Token}

		const waiters = 5
		var (
			wg      sync.WaitGroup
			waiting sync.WaitGroup // every waiter found the key pending
			mu      sync.Mutex
			takers  []int
			done    = make([]*ProduceResult, waiters)
		)
		waiting.Add(waiters)
		for i := range waiters {
			wg.Go(func() {
				s := NewStore(rdb, prefix, week, NewOwner("gw-waiter"))
				st, err := s.ReserveProduce(ctx, "orders", in([]string{"k"}...), ttl(10*time.Second))
				waiting.Done()
				if err != nil || !st[0].Pending() {
					t.Errorf("waiter %d reserve: %+v %v, want pending", i, st, err)
					return
				}
				st, err = s.WaitProduce(ctx, "orders", in([]string{"k"}...), ttl(10*time.Second))
				if err != nil {
					t.Error(err)
					return
				}
				if st[0].Reserved {
					mu.Lock()
					takers = append(takers, i)
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
					r := ProduceResult{Partition: int32(i), Offset: 1, MessageID: "taker"}
					if ok, err := s.CompleteProduce(ctx, "orders", []Reservation{{Key: "k", Token: st[0].Token}}, []ProduceResult{r}, time.Hour); err != nil || !ok[0] {
						t.Errorf("complete: %v %v", ok, err)
					}
					done[i] = &r
					return
				}
				done[i] = st[0].Done
			})
		}
		waiting.Wait()
		time.Sleep(50 * time.Millisecond) // the waiters poll
		if err := holder.AbortProduce(ctx, "orders", []Reservation{holderRes}); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if len(takers) != 1 {
			t.Fatalf("%d waiters took over (%v), want 1", len(takers), takers)
		}
		for i, r := range done {
			if r == nil || r.Partition != int32(takers[0]) || r.MessageID != "taker" || !r.Timestamp.IsZero() {
				t.Fatalf("waiter %d: %+v, want the taker's result", i, r)
			}
		}
		// The holder's late Complete does not overwrite the taker's result.
		ok, err := holder.CompleteProduce(ctx, "orders", []Reservation{holderRes}, []ProduceResult{{MessageID: "late"}}, time.Hour)
		if err != nil || ok[0] {
			t.Fatalf("late complete: %v %v, want false", ok, err)
		}
	})
}

func TestProduceReservations(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		res := ProduceResult{Partition: 1, Offset: 2, Timestamp: time.UnixMilli(1_700_000_000_123), MessageID: "m"}
		reserve := func(t *testing.T, s *Store, key string, pendingTTL time.Duration) ProduceState {
			t.Helper()
			st, err := s.ReserveProduce(testCtx(t), "orders", in([]string{key}...), ttl(pendingTTL))
			if err != nil {
				t.Fatal(err)
			}
			return st[0]
		}
		complete := func(t *testing.T, s *Store, key, token string) bool {
			t.Helper()
			ok, err := s.CompleteProduce(testCtx(t), "orders", []Reservation{{key, token}}, []ProduceResult{res}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return ok[0]
		}
		tests := []struct {
			name string
			run  func(t *testing.T, key string)
		}{
			{"reserve, complete, then done for anyone", func(t *testing.T, key string) {
				st := reserve(t, a, key, time.Minute)
				if !st.Reserved || st.Token == "" {
					t.Fatalf("%+v", st)
				}
				if st := reserve(t, a, key, time.Minute); !st.Pending() {
					t.Fatalf("same owner, second reservation: %+v, want pending", st)
				}
				if !complete(t, a, key, st.Token) {
					t.Fatal("complete: false")
				}
				if !complete(t, a, key, st.Token) {
					t.Fatal("complete again (retried): false")
				}
				for _, s := range []*Store{a, b} {
					got := reserve(t, s, key, time.Minute)
					if got.Done == nil || !got.Done.Timestamp.Equal(res.Timestamp) || got.Done.Offset != 2 {
						t.Fatalf("%+v, want done", got)
					}
				}
			}},
			{"expired reservation, nobody else: complete stores", func(t *testing.T, key string) {
				st := reserve(t, a, key, 50*time.Millisecond)
				time.Sleep(200 * time.Millisecond)
				if !complete(t, a, key, st.Token) {
					t.Fatal("complete after expiry: false")
				}
				if got := reserve(t, b, key, time.Minute); got.Done == nil {
					t.Fatalf("%+v, want done", got)
				}
			}},
			{"expired reservation, taken by another: complete refused", func(t *testing.T, key string) {
				st := reserve(t, a, key, 50*time.Millisecond)
				time.Sleep(200 * time.Millisecond)
				stb := reserve(t, b, key, time.Minute)
				if !stb.Reserved {
					t.Fatalf("b after a's reservation expired: %+v", stb)
				}
				if complete(t, a, key, st.Token) {
					t.Fatal("a's complete over b's reservation: true")
				}
				if err := a.AbortProduce(testCtx(t), "orders", []Reservation{{key, st.Token}}); err != nil {
					t.Fatal(err)
				}
				if got := reserve(t, a, key, time.Minute); !got.Pending() {
					t.Fatalf("a's abort removed b's reservation: %+v", got)
				}
				if !complete(t, b, key, stb.Token) {
					t.Fatal("b's complete: false")
				}
			}},
			{"abort frees the key", func(t *testing.T, key string) {
				st := reserve(t, a, key, time.Minute)
				if err := a.AbortProduce(testCtx(t), "orders", []Reservation{{key, st.Token}}); err != nil {
					t.Fatal(err)
				}
				if got := reserve(t, b, key, time.Minute); !got.Reserved {
					t.Fatalf("after abort: %+v", got)
				}
			}},
			{"abort after complete keeps the result", func(t *testing.T, key string) {
				st := reserve(t, a, key, time.Minute)
				complete(t, a, key, st.Token)
				if err := a.AbortProduce(testCtx(t), "orders", []Reservation{{key, st.Token}}); err != nil {
					t.Fatal(err)
				}
				if got := reserve(t, b, key, time.Minute); got.Done == nil {
					t.Fatalf("after abort: %+v", got)
				}
			}},
			{"writer dies: waiter reserves after the pending TTL", func(t *testing.T, key string) {
				reserve(t, a, key, 150*time.Millisecond)
				start := time.Now()
				st, err := b.WaitProduce(testCtx(t), "orders", in([]string{key}...), ttl(time.Minute))
				if err != nil || !st[0].Reserved {
					t.Fatalf("wait: %+v %v", st, err)
				}
				if waited := time.Since(start); waited > 5*time.Second {
					t.Fatalf("waited %v", waited)
				}
			}},
			{"wait ends with ctx, keeping what resolved", func(t *testing.T, key string) {
				free := key + "-free"
				reserve(t, a, key, time.Minute)
				ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
				defer cancel()
				st, err := b.WaitProduce(ctx, "orders", in([]string{key, free}...), ttl(time.Minute))
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %v, want DeadlineExceeded", err)
				}
				if !st[0].Pending() || !st[1].Reserved {
					t.Fatalf("states %+v, want pending and reserved", st)
				}
			}},
			{"topics are namespaced", func(t *testing.T, key string) {
				st := reserve(t, a, key, time.Minute)
				other, err := a.ReserveProduce(testCtx(t), "payments", in([]string{key}...), ttl(time.Minute))
				if err != nil || !st.Reserved || !other[0].Reserved {
					t.Fatalf("%+v %+v %v", st, other, err)
				}
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.run(t, "key-"+tc.name)
			})
		}
	})
}

func TestProduceBatch(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		s := NewStore(rdb, prefix, week, "gw-a")
		ctx := testCtx(t)
		warmUp(t, s)
		var h countHook
		rdb.AddHook(&h)
		keys := []string{"k0", "k1", "k2", "k3"}
		st, err := s.ReserveProduce(ctx, "orders", in(keys[:2]...), ttl(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		res := []ProduceResult{{Offset: 10}, {Offset: 11}}
		if _, err := s.CompleteProduce(ctx, "orders", []Reservation{{keys[0], st[0].Token}, {keys[1], st[1].Token}}, res, time.Hour); err != nil {
			t.Fatal(err)
		}
		h.reset()
		st, err = s.ReserveProduce(ctx, "orders", in(keys...), ttl(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if p, c := h.pipelines.Load(), h.processes.Load(); p != 1 || c != 0 {
			t.Fatalf("%d pipelines, %d commands, want 1 pipeline", p, c)
		}
		if st[0].Done == nil || st[0].Done.Offset != 10 || st[1].Done == nil || st[1].Done.Offset != 11 || !st[2].Reserved || !st[3].Reserved {
			t.Fatalf("states %+v", st)
		}
		if st[2].Token != st[3].Token {
			t.Fatalf("tokens of one call differ: %q %q", st[2].Token, st[3].Token)
		}
	})
}

func TestResultEncoding(t *testing.T) {
	t.Parallel()
	tests := []ProduceResult{
		{},
		{Partition: 0, Offset: 0, MessageID: ""},
		{Partition: 7, Offset: 1 << 40, Timestamp: time.Unix(1_700_000_000, 1), MessageID: "0190abcd-ef"},
		{Partition: 2147483647, Offset: -1, Timestamp: time.Unix(0, 0), MessageID: "a|b|c|"},
		{Partition: 1, Offset: 2, Timestamp: time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), MessageID: "x"},
	}
	for _, want := range tests {
		enc := encodeResult(want)
		got, err := decodeResult(enc)
		if err != nil {
			t.Fatalf("%q: %v", enc, err)
		}
		if got.Partition != want.Partition || got.Offset != want.Offset || got.MessageID != want.MessageID ||
			!got.Timestamp.Equal(want.Timestamp) || got.Timestamp.IsZero() != want.Timestamp.IsZero() {
			t.Errorf("%q: got %+v, want %+v", enc, got, want)
		}
	}
	for _, bad := range []string{"r|", "r|1|2", "r|x|2||m", "r|1|y||m", "r|1|2|z|m", "r|99999999999|2||m"} {
		if _, err := decodeResult(bad); !errors.Is(err, errBadResult) {
			t.Errorf("%q: got %v, want errBadResult", bad, err)
		}
	}
}

// in makes intents of keys whose partition is not known.
func in(keys ...string) []Intent {
	out := make([]Intent, len(keys))
	for i, k := range keys {
		out[i] = Intent{Key: k, Partition: -1}
	}
	return out
}

// ttl is a reservation settled and kept for d.
func ttl(d time.Duration) ProduceTTL { return ProduceTTL{Settle: d, Keep: d} }

// A reservation its writer did not settle in time (the writer died, or
// could not learn whether its record was written) turns stale for the
// others, who may take it over to look for the record in the topic. The
// take-over keeps the first writer's From and partition, so that a writer
// taking over after a second death still looks far enough back; the first
// writer, should it come back, can no longer complete it; and of two
// writers taking over one stale reservation, one gets it.
func TestAStaleReservationIsTakenOverOnce(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := testCtx(t)
		prefix := testPrefix(t, rdb)
		start := time.Now().Truncate(time.Millisecond)
		clock := func(at *time.Time) func() time.Time { return func() time.Time { return *at } }
		aNow, bNow, cNow := start, start, start
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		c := NewStore(rdb, prefix, week, "gw-c")
		a.now, b.now, c.now = clock(&aNow), clock(&bNow), clock(&cNow)
		times := ProduceTTL{Settle: 10 * time.Second, Keep: time.Hour}
		from := start.Add(-time.Minute) // the record carries an earlier timestamp
		st, err := a.ReserveProduce(ctx, "orders", []Intent{{Key: "k", Partition: 3, From: from}}, times)
		if err != nil || !st[0].Reserved {
			t.Fatalf("a reserves: %+v %v", st, err)
		}
		aToken := st[0].Token

		// Within the settle time and the clocks' slack: pending.
		bNow = start.Add(times.Settle + staleSkew)
		st, err = b.ReserveProduce(ctx, "orders", []Intent{{Key: "k", Partition: 3}}, times)
		if err != nil || !st[0].Pending() {
			t.Fatalf("b before the settle time: %+v %v, want pending", st, err)
		}
		// After: stale, naming a's write.
		bNow = bNow.Add(time.Millisecond)
		st, err = b.ReserveProduce(ctx, "orders", []Intent{{Key: "k", Partition: 3}}, times)
		if err != nil || st[0].Stale == nil {
			t.Fatalf("b after the settle time: %+v %v, want stale", st, err)
		}
		stale := st[0].Stale
		if stale.Owner != "gw-a" || !stale.From.Equal(from) || stale.Partition != 3 {
			t.Fatalf("stale reservation %+v, want gw-a's from %v on partition 3", stale, from)
		}
		cNow = bNow
		stC, err := c.ReserveProduce(ctx, "orders", []Intent{{Key: "k", Partition: 3}}, times)
		if err != nil || stC[0].Stale == nil {
			t.Fatalf("c: %+v %v, want stale", stC, err)
		}

		// b takes it over, with a record for another partition: the
		// partition is no longer known.
		took, err := b.TakeOverProduce(ctx, "orders", Intent{Key: "k", Partition: 1}, stale, times)
		if err != nil || !took.Reserved {
			t.Fatalf("b takes over: %+v %v", took, err)
		}
		// c, with the same stale reservation, comes too late.
		late, err := c.TakeOverProduce(ctx, "orders", Intent{Key: "k", Partition: 3}, stC[0].Stale, times)
		if err != nil || !late.Pending() {
			t.Fatalf("c takes over after b: %+v %v, want pending", late, err)
		}
		// a comes back: its reservation is gone.
		ok, err := a.CompleteProduce(ctx, "orders", []Reservation{{Key: "k", Token: aToken}}, []ProduceResult{{Partition: 3, Offset: 7}}, time.Hour)
		if err != nil || ok[0] {
			t.Fatalf("a completes after the take-over: %v %v, want refused", ok, err)
		}
		// b dies too: c finds b's reservation stale in turn, still looking
		// back to a's From, in every partition.
		cNow = bNow.Add(times.Settle + staleSkew + time.Millisecond)
		stC, err = c.ReserveProduce(ctx, "orders", []Intent{{Key: "k", Partition: 3}}, times)
		if err != nil || stC[0].Stale == nil {
			t.Fatalf("c after b's settle time: %+v %v, want stale", stC, err)
		}
		if s := stC[0].Stale; s.Owner != "gw-b" || !s.From.Equal(from) || s.Partition != -1 {
			t.Fatalf("b's reservation %+v, want gw-b's, from %v, partition unknown", s, from)
		}
	})
}

// A reservation in the form older gateways wrote carries no settle time:
// it is waited for until it expires, never taken for stale.
func TestAnOlderGatewaysReservationIsNeverStale(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := testCtx(t)
		prefix := testPrefix(t, rdb)
		s := NewStore(rdb, prefix, week, "gw-new")
		if err := rdb.Set(ctx, s.produceKey("orders", "k"), "p|gw-old|0123456789abcdef", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(24 * time.Hour)
		s.now = func() time.Time { return later }
		st, err := s.ReserveProduce(ctx, "orders", in("k"), ProduceTTL{Settle: time.Second, Keep: time.Hour})
		if err != nil || !st[0].Pending() {
			t.Fatalf("reserve: %+v %v, want pending", st, err)
		}
	})
}
