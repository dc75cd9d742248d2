package consume

import (
	"context"
	"errors"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// The review found that with dedupe, a claim retained for an app that holds
// a record across a lost assignment was taken over by this same gateway
// when the partition came back (the claim script let an owner take over
// its own claim of the same record): two apps processed one message, and
// both acks answered OK. A claim now names the assignment that holds it,
// so the new assignment's copy is held until the first app settles it.
func TestARetainedClaimIsNotTakenOverWhenThePartitionComesBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{dedupe: true})
	s1 := h.stream(1)
	h.assign(0)
	h.add(rec(0, 0, "m-1", "v"))
	d1 := h.must(s1)
	s2 := h.stream(10)

	// The assignment is lost (session timeout) and comes back to this
	// gateway, which fetches the record again from the committed offset.
	h.revoke(true, 0)
	h.assign(0)
	h.add(rec(0, 0, "m-1", "v"))
	if d := next(s2, 300*time.Millisecond); d != nil {
		t.Fatalf("message m-1 delivered again (%s) while the first app holds it (%s)", d.AckID, d1.AckID)
	}
	if err := h.ack(d1.AckID); err != nil {
		t.Fatalf("the first app's late ack: %v", err)
	}
	if v := h.redisValue("m-1"); !dedupe.IsDone(v) {
		t.Fatalf("Redis holds %q for m-1 after the late ack, want the done marker", v)
	}
	// The new assignment's copy is a duplicate now: dropped, committed past.
	eventually(t, "the copy dropped as a duplicate", func() bool { return h.committable(0) == 1 })
	if d := next(s2, 100*time.Millisecond); d != nil {
		t.Fatalf("the duplicate was delivered: %+v", d)
	}
	if got := h.g.stats.duplicates.Load(); got != 1 {
		t.Fatalf("duplicates = %d, want 1", got)
	}
}

// gatedClaims lets a test hold the answer of claims of deliveries > 1 (the
// claims themselves land in Redis at once).
type gatedClaims struct {
	inner  Claims
	landed chan struct{}
	gate   chan struct{}
	once   sync.Once
}

func (c *gatedClaims) Do(ctx context.Context, b dedupe.Batch) (dedupe.BatchResult, error) {
	res, err := c.inner.Do(ctx, b)
	for _, cl := range b.Claims {
		if cl.Delivery >= 2 {
			c.once.Do(func() { close(c.landed) })
			<-c.gate
			break
		}
	}
	return res, err
}

// The review found that ack IDs carried no attempt: an app's late ack of
// attempt N, arriving while the claim of attempt N+1 was on its way, was
// applied to attempt N+1, its done marker lost the compare-and-set, and the
// Ack still answered OK; the redelivery's claim was then released and the
// record committed with no done marker in Redis. Now an ack names its
// delivery, and an ack of any delivery but the record's latest is refused,
// applying nothing.
func TestALateAckOfAnEarlierDeliveryIsRefusedWhileTheNextIsClaimed(t *testing.T) {
	t.Parallel()
	gc := &gatedClaims{landed: make(chan struct{}), gate: make(chan struct{})}
	h := newHarness(t, harnessOptions{dedupe: true, ackTimeout: 200 * time.Millisecond,
		claims: func(c Claims) Claims { gc.inner = c; return gc }})
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "m-1", "v"))
	d1 := h.must(s)
	select {
	case <-gc.landed: // the ack deadline passed; the second delivery's claim is in Redis
	case <-time.After(5 * time.Second):
		t.Fatal("no second claim")
	}
	err := h.ack(d1.AckID)
	close(gc.gate)
	if !errors.Is(err, ErrStaleAck) {
		t.Fatalf("late ack of the first delivery: %v, want ErrStaleAck", err)
	}
	d2 := h.must(s)
	if d2.Attempt != 2 || d2.AckID == d1.AckID {
		t.Fatalf("redelivery %+v", d2)
	}
	if err := h.ack(d2.AckID); err != nil {
		t.Fatalf("ack of the second delivery: %v", err)
	}
	if v := h.redisValue("m-1"); !dedupe.IsDone(v) {
		t.Fatalf("Redis holds %q for m-1 after the ack answered OK, want the done marker", v)
	}
	if err := h.ack(d2.AckID); err != nil {
		t.Fatalf("a repeated ack of the settled delivery: %v", err)
	}
	if err := h.ack(d1.AckID); !errors.Is(err, ErrStaleAck) {
		t.Fatalf("the first delivery's ack after the second's: %v, want ErrStaleAck", err)
	}
}

// Without dedupe the same rule holds: a late ack of a record's earlier
// delivery is refused once it has gone out again, so the app that was too
// slow learns that its ack did not count.
func TestWithoutDedupeALateAckOfAnEarlierDeliveryIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{ackTimeout: 100 * time.Millisecond})
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "m-1", "v"), rec(0, 1, "m-2", "v"))
	d1 := h.must(s)
	d2 := h.must(s)
	if d2.Attempt != 2 || d2.Offset != 0 {
		t.Fatalf("want the redelivery of offset 0, got %+v", d2)
	}
	if err := h.ack(d1.AckID); !errors.Is(err, ErrStaleAck) {
		t.Fatalf("late ack: %v, want ErrStaleAck", err)
	}
	if err := h.ack(d2.AckID); err != nil {
		t.Fatal(err)
	}
	if c := h.committable(0); c != 1 {
		t.Fatalf("committable %d, want 1", c)
	}
}

// An ack of a delivery whose ack deadline passed, before the record went
// out again, still counts: the app did process it, and nobody else has it.
func TestAnAckAfterTheDeadlineCountsUntilTheRecordGoesOutAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{ackTimeout: 100 * time.Millisecond})
	s := h.stream(1)
	h.assign(0)
	h.add(rec(0, 0, "m-1", "v"))
	d1 := h.must(s)
	s.g.mu.Lock()
	s.maxInFlight = 0 // no credit: the record waits, ready, after its deadline
	s.g.mu.Unlock()
	eventually(t, "the ack deadline", func() bool {
		h.g.mu.Lock()
		defer h.g.mu.Unlock()
		return h.g.parts[tpKey{"t", 0}].count[stateReady] == 1
	})
	if err := h.ack(d1.AckID); err != nil {
		t.Fatalf("ack after the deadline, before a redelivery: %v", err)
	}
	if c := h.committable(0); c != 1 {
		t.Fatalf("committable %d, want 1", c)
	}
}

// stealClaims makes every done marker find another gateway's claim.
type stealClaims struct{ inner Claims }

func (c stealClaims) Do(ctx context.Context, b dedupe.Batch) (dedupe.BatchResult, error) {
	res, err := c.inner.Do(ctx, b)
	for i := range res.Confirmed {
		res.Confirmed[i] = false
	}
	return res, err
}

// An Ack answers OK only once its done marker is written: when the marker
// finds another delivery's claim (this delivery's lease lapsed), the Ack is
// refused and the record is not done here.
func TestAnAckWhoseDoneMarkerFindsAnotherClaimIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{dedupe: true, claims: func(c Claims) Claims { return stealClaims{c} }})
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "m-1", "v"))
	d := h.must(s)
	if err := h.ack(d.AckID); !errors.Is(err, ErrStaleAck) {
		t.Fatalf("ack whose marker lost its claim: %v, want ErrStaleAck", err)
	}
	if c := h.committable(0); c != 0 {
		t.Fatalf("committable %d: the record counts as done without its marker", c)
	}
	if got := h.g.stats.lostClaims.Load(); got != 1 {
		t.Fatalf("lost claims = %d, want 1", got)
	}
}

// The review found that a dead letter that could never be written (a
// record produced within a kilobyte of max_record_bytes, which the dlq
// headers push over it) was retried forever: the record stayed unfinished,
// its partition's commit point stuck, and under PARTITION ordering nothing
// after it was ever delivered. Permanent failures now fall back to a
// compact dead letter without the payload.
func TestAnUnwritableDeadLetterFallsBackToACompactOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.prod.fn = func(_ string, recs []produce.Record) ([]produce.Result, error) {
		res := make([]produce.Result, len(recs))
		for i, r := range recs {
			if len(r.Value) > 0 {
				res[i].Err = kafkaclient.ErrRejected // too large for the dead-letter topic
			}
		}
		return res, nil
	}
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "poison", "a big value"), rec(0, 1, "next", "v"))
	d := h.must(s)
	if err := h.nack(NackOptions{DeadLetter: true, Reason: "poison"}, d.AckID); err != nil {
		t.Fatal(err)
	}
	n := h.must(s)
	if n.Offset != 1 {
		t.Fatalf("next delivery %+v, want offset 1", n)
	}
	eventually(t, "the compact dead letter", func() bool { return len(h.prod.records("t.dlq")) == 1 })
	dl := h.prod.records("t.dlq")[0]
	headers := map[string]string{}
	for _, hd := range dl.Headers {
		headers[hd.Key] = string(hd.Value)
	}
	want := map[string]string{HeaderDLQTopic: "t", HeaderDLQPartition: "0", HeaderDLQOffset: "0", HeaderDLQGroup: "g",
		HeaderDLQMessageID: "poison", HeaderDLQPayloadOmitted: "17"}
	for k, v := range want {
		if headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, headers[k], v)
		}
	}
	if len(dl.Value) != 0 || len(dl.Key) != 0 || headers["message-id"] != "" {
		t.Errorf("compact dead letter carries payload: %+v", dl)
	}
	if !strings.HasPrefix(headers[HeaderDLQReason], "poison; payload omitted: ") {
		t.Errorf("reason %q", headers[HeaderDLQReason])
	}
	eventually(t, "the commit point past the dead letter", func() bool { return h.committable(0) == 1 })
	if got := h.g.stats.deadLetteredCompact.Load(); got != 1 {
		t.Fatalf("compact dead letters = %d, want 1", got)
	}
}

// When not even the compact dead letter can be written (the gateway may not
// write the dead-letter topic at all), the record is dropped: counted,
// logged with its coordinates, and done, so the partition moves on.
func TestADeadLetterThatCannotBeWrittenAtAllIsDroppedNotRetriedForever(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	var calls atomic.Int32
	h.prod.fn = func(_ string, recs []produce.Record) ([]produce.Result, error) {
		calls.Add(1)
		return nil, kafkaclient.ErrNotAuthorized
	}
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "poison", "v"), rec(0, 1, "next", "v"))
	d := h.must(s)
	if err := h.nack(NackOptions{DeadLetter: true}, d.AckID); err != nil {
		t.Fatal(err)
	}
	if n := h.must(s); n.Offset != 1 {
		t.Fatalf("next delivery %+v, want offset 1", n)
	}
	eventually(t, "the dead letter dropped", func() bool { return h.g.stats.deadLettersDropped.Load() == 1 })
	eventually(t, "the commit point past it", func() bool { return h.committable(0) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d write attempts, want 2 (full, compact)", n)
	}
}

// The long chaos run dropped dead letters of large records: their full
// dead letters were refused as too large, and so were their compact ones,
// which had been put in one record batch with the full dead letters of the
// same record from the other groups (the broker applies max.message.bytes
// to a batch as a whole). A compact dead letter refused for its size is
// tried again, and written once it goes alone.
func TestACompactDeadLetterRefusedForItsBatchSizeIsTriedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	tooLarge := kafkaclient.Classify(kafka.NewError(kafka.ErrMsgSizeTooLarge, "Broker: Message size too large", false))
	var compactTries atomic.Int32
	h.prod.fn = func(_ string, recs []produce.Record) ([]produce.Result, error) {
		res := make([]produce.Result, len(recs))
		for i, r := range recs {
			if len(r.Value) > 0 || compactTries.Add(1) < 3 {
				res[i].Err = tooLarge
			}
		}
		return res, nil
	}
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "poison", "a big value"))
	d := h.must(s)
	if err := h.nack(NackOptions{DeadLetter: true, Reason: "poison"}, d.AckID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the compact dead letter", func() bool { return len(h.prod.records("t.dlq")) == 1 })
	if n := h.g.stats.deadLettersDropped.Load(); n != 0 {
		t.Fatalf("%d dead letters dropped, want 0", n)
	}
	eventually(t, "the commit point past it", func() bool { return h.committable(0) == 1 })
}

// A transient failure (Kafka unavailable) is retried until it succeeds;
// the full dead letter is written.
func TestATransientDeadLetterFailureIsRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	var calls atomic.Int32
	h.prod.fn = func(_ string, recs []produce.Record) ([]produce.Result, error) {
		if calls.Add(1) < 3 {
			return nil, kafkaclient.ErrUnavailable
		}
		return make([]produce.Result, len(recs)), nil
	}
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "poison", "value"))
	d := h.must(s)
	if err := h.nack(NackOptions{DeadLetter: true}, d.AckID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dead letter", func() bool { return len(h.prod.records("t.dlq")) == 1 })
	if dl := h.prod.records("t.dlq")[0]; string(dl.Value) != "value" {
		t.Fatalf("dead letter %+v, want the full record", dl)
	}
	eventually(t, "the commit point past it", func() bool { return h.committable(0) == 1 })
}

// The review found that dead letters of one message from two groups shared
// one idempotency key, so the second group's dead letter was never written.
func TestDeadLetterKeysAreNamespacedByGroupAndTopic(t *testing.T) {
	t.Parallel()
	a := deadLetterKey("g1", "orders", "m-1")
	for _, other := range []string{deadLetterKey("g2", "orders", "m-1"), deadLetterKey("g1", "payments", "m-1"),
		deadLetterKey("g1", "orders", "m-2"), deadLetterKey("g1o", "rders", "m-1")} {
		if other == a {
			t.Fatalf("two dead letters share the key %q", a)
		}
	}
	if deadLetterKey("g1", "orders", "m-1") != a {
		t.Fatal("the key of one message's dead letter is not stable")
	}
	if len(a) > 256 {
		t.Fatalf("key %q is longer than an idempotency key may be", a)
	}
}

// The review found that, over max_buffered_bytes, no partition of any group
// was resumed: one group whose records nobody acknowledged kept every other
// group of the gateway paused. Each group now has a fair share of the
// bound, and a partition with nothing pending is never left paused.
func TestOneStuckGroupDoesNotStallAnother(t *testing.T) {
	t.Parallel()
	stuck := newHarness(t, harnessOptions{cfg: func(c *Config) { c.MaxBufferedBytes = 10_000 }})
	healthy := newHarness(t, harnessOptions{with: stuck, group: "g2", ordering: OrderingNone})
	stuck.assign(0)
	for i := range 20 {
		stuck.add(rec(0, int64(i), "s", strings.Repeat("x", 1000))) // nobody acks
	}
	stuck.g.balanceFlow()
	if !stuck.client.isPaused(0) {
		t.Fatal("the group over its share is not paused")
	}

	s := healthy.stream(100)
	healthy.assign(0)
	healthy.add(rec(0, 0, "h0", "small"))
	healthy.g.balanceFlow()
	d := healthy.must(s)
	if err := healthy.ack(d.AckID); err != nil {
		t.Fatal(err)
	}
	healthy.g.balanceFlow()
	if healthy.client.isPaused(0) {
		t.Fatalf("group g2 drained, but its partition stays paused while group g holds %d bytes", stuck.m.buffered.Load())
	}
	// And a group past its share with nothing pending is resumed too.
	for i := range 20 {
		healthy.add(rec(0, int64(i+1), "h", strings.Repeat("y", 1000)))
	}
	healthy.g.balanceFlow()
	if !healthy.client.isPaused(0) {
		t.Fatal("g2 over its share is not paused")
	}
	for range 20 {
		d := healthy.must(s)
		if err := healthy.ack(d.AckID); err != nil {
			t.Fatal(err)
		}
	}
	healthy.g.balanceFlow()
	if healthy.client.isPaused(0) {
		t.Fatal("g2 has nothing pending but stays paused")
	}
}

// The review found that at a rebalance the commit went backwards: the
// revoke committed the acked prefix, then librdkafka's unassign committed
// its older stored offset over it, undoing every ack taken during the
// revoke grace. The final offset is now stored before it is committed, and
// acks during the grace are stored as they come.
func TestRevokeStoresTheFinalOffsetBeforeCommittingIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{ordering: OrderingNone, cfg: func(c *Config) { c.RevokeGrace = 5 * time.Second }})
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "a", "v"), rec(0, 1, "b", "v"), rec(0, 2, "c", "v"))
	var ds []*Delivery
	for range 3 {
		ds = append(ds, h.must(s))
	}
	if err := h.ack(ds[0].AckID); err != nil {
		t.Fatal(err)
	}
	// The rest are acked during the revoke grace.
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = h.ack(ds[1].AckID)
		time.Sleep(50 * time.Millisecond)
		_ = h.ack(ds[2].AckID)
	}()
	h.revoke(false, 0)
	log := h.client.log()
	store := strings.LastIndex(log, "store t/0@3")
	commit := strings.LastIndex(log, "commit t/0@3")
	if store < 0 || commit < 0 || store > commit {
		t.Fatalf("want the final offset 3 stored, then committed; calls:\n%s", log)
	}
	if strings.Contains(log[commit:], "store") {
		t.Fatalf("an offset stored after the final commit; calls:\n%s", log)
	}
}

// The review found that a graceful shutdown with dedupe stopped the dedupe
// workers before the partitions were released, so their claims were never
// given back and the next owner waited out every lease. Claims of records
// no app holds are now released before the workers stop; those an app
// holds stay until their lease, so no two apps hold one message.
func TestShutdownReleasesTheClaimsOfRecordsNoAppHolds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{dedupe: true, ordering: OrderingNone, cfg: func(c *Config) { c.DrainTimeout = 0 }})
	s := h.stream(2)
	h.assign(0)
	h.add(rec(0, 0, "held", "v"), rec(0, 1, "queued", "v"))
	d := h.must(s) // the app holds offset 0; offset 1 stays in the stream's outbox
	if d.Offset != 0 {
		t.Fatalf("first delivery %+v", d)
	}
	eventually(t, "both claims", func() bool { return h.redisValue("queued") != "" && h.redisValue("held") != "" })
	h.g.drainAndCommit()
	if v := h.redisValue("queued"); v != "" {
		t.Fatalf("claim of the unsent record still in Redis: %q", v)
	}
	if v := h.redisValue("held"); !strings.HasPrefix(v, "c|") {
		t.Fatalf("claim of the record the app holds: %q, want it kept until its lease", v)
	}
}

// A stalled partition (here its dispatch index lost a ready record, the
// kind of bookkeeping drift that once stalled a key for good) is found
// within stallAfter, logged, counted, exported and repaired.
func TestAStalledPartitionIsDetectedAndRepaired(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{ordering: OrderingNone})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	h.m.now = func() time.Time { return time.Unix(0, now.Load()) }
	s := h.stream(10)
	h.assign(0)
	s.g.mu.Lock()
	s.maxInFlight = 0
	s.g.mu.Unlock()
	h.add(rec(0, 0, "a", "v"))
	h.g.mu.Lock()
	l := h.g.parts[tpKey{"t", 0}]
	l.scan = 1 // drift: dispatch no longer sees offset 0
	s.maxInFlight = 10
	h.g.mu.Unlock()
	h.g.watchStalls()
	if d := next(s, 50*time.Millisecond); d != nil {
		t.Fatalf("delivered before the repair: %+v (the test's drift did not take)", d)
	}
	now.Add(int64(stallAfter + 2*time.Second))
	h.g.watchStalls()
	gs := GroupStats{}
	h.g.snapshot(&gs, h.m.now())
	if gs.Stalled != 1 || h.g.stats.stalls.Load() != 1 {
		t.Fatalf("stalled %d, stalls %d; want 1, 1", gs.Stalled, h.g.stats.stalls.Load())
	}
	if d := h.must(s); d.Offset != 0 {
		t.Fatalf("after the repair: %+v", d)
	}
	now.Add(int64(2 * time.Second))
	h.g.watchStalls()
	gs = GroupStats{}
	h.g.snapshot(&gs, h.m.now())
	if gs.Stalled != 0 {
		t.Fatalf("still stalled after the repair")
	}
}

// Subscribe's ack_timeout and max_attempts, and Nack's retry_after, are
// bounded by configuration: a 1 ns ack timeout was a timer storm, and one
// of centuries overflowed the claim lease.
func TestSubscribeAndNackBoundsAreEnforced(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	for _, tc := range []struct {
		field   string
		timeout time.Duration
		max     int
	}{
		{"ack_timeout", time.Nanosecond, 0},
		{"ack_timeout", 200 * 365 * 24 * time.Hour, 0},
		{"max_attempts", 0, cfg.MaxAttemptsLimit + 1},
		{"max_attempts", 0, -1},
	} {
		_, err := cfg.settings("", "g", []string{"t"}, "", "", tc.timeout, tc.max)
		var inv *invalid.Error
		if !errors.As(err, &inv) || inv.Violations[0].Field != tc.field {
			t.Errorf("settings(ack_timeout %v, max_attempts %d) = %v, want an invalid %s", tc.timeout, tc.max, err, tc.field)
		}
	}
	h := newHarness(t, harnessOptions{})
	s := h.stream(1)
	h.assign(0)
	h.add(rec(0, 0, "a", "v"))
	d := h.must(s)
	err := h.nack(NackOptions{RetryAfter: cfg.MaxRetryAfter + time.Second}, d.AckID)
	var inv *invalid.Error
	if !errors.As(err, &inv) || inv.Violations[0].Field != "retry_after" {
		t.Fatalf("nack with retry_after over the bound: %v", err)
	}
}

// An ack ID is signed for its group by this gateway process: an altered
// one, one of another group, or one made up is refused as stale (the same
// answer as an ID of a partition no longer owned: no oracle), and applies
// nothing.
func TestForgedAckIDsAreRefusedAsStale(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	s := h.stream(10)
	h.assign(0)
	h.add(rec(0, 0, "a", "v"), rec(0, 1, "b", "v"))
	d := h.must(s)
	id, _, err := ParseAckID("x", d.AckID)
	if err != nil {
		t.Fatal(err)
	}
	forged := []string{
		strings.Replace(d.AckID, "/0/", "/1/", 1), // another offset, same signature
		newAckSigner().format("g", id),            // another gateway's key
		h.m.signer.format("other", id),            // another group's ID
	}
	for _, f := range forged {
		if err := h.ack(f); !errors.Is(err, ErrStaleAck) {
			t.Errorf("ack %q: %v, want ErrStaleAck", f, err)
		}
	}
	if c := h.committable(0); c != 0 {
		t.Fatalf("a forged ack moved the commit point to %d", c)
	}
}

// Small records count for what they cost in memory, not only their
// payload: 100 records of 10 bytes take about 60 KB while buffered, so a
// byte bound of 20,000 pauses their partition although their payload is
// 1,000 bytes.
func TestTheByteBoundCountsWhatSmallRecordsCostInMemory(t *testing.T) {
	h := newHarness(t, harnessOptions{cfg: func(c *Config) { c.MaxBufferedBytes = 20_000 }})
	h.assign(0)
	for i := range 100 {
		h.add(rec(0, int64(i), "k", "0123456789"))
	}
	h.g.balanceFlow()
	if !h.client.isPaused(0) {
		t.Fatalf("100 small records (%d bytes counted) under a bound of 20,000 bytes: not paused", h.g.bytes.Load())
	}
}

// Under ORDERING_KEY with dedupe, a record held by a stream that ends stays
// held until its ack deadline, and its key's later records wait with it;
// an app that nacks what it will not process before closing its stream
// lets the key go on at once (docs/delivery-guarantees.md).
func TestWithDedupeANackBeforeClosingAStreamLetsItsKeyGoOn(t *testing.T) {
	t.Parallel()
	keyed := func(offset int64, id string) fetched {
		return fetched{topic: "t", partition: 0, r: &record{offset: offset, key: []byte("k"), value: []byte("v"),
			messageID: id, size: 2, headers: []Header{{Key: "message-id", Value: []byte(id)}}}}
	}
	for _, nackFirst := range []bool{false, true} {
		h := newHarness(t, harnessOptions{dedupe: true, ordering: OrderingKey})
		a := h.stream(10)
		h.assign(0)
		h.add(keyed(0, "m-1"), keyed(1, "m-2"))
		d := h.must(a)
		if d.MessageID != "m-1" {
			t.Fatalf("first delivery %s, want m-1", d.MessageID)
		}
		if nackFirst {
			if err := h.nack(NackOptions{}, d.AckID); err != nil {
				t.Fatalf("nack: %v", err)
			}
		}
		a.Close()
		b := h.stream(10)
		got := next(b, 500*time.Millisecond)
		switch {
		case !nackFirst && got != nil:
			t.Fatalf("without a nack, %s went to another stream while the closed stream's app may hold m-1", got.MessageID)
		case nackFirst && (got == nil || got.MessageID != "m-1"):
			t.Fatalf("after a nack and close, the next stream got %+v, want m-1 at once", got)
		case nackFirst:
			if err := h.ack(got.AckID); err != nil {
				t.Fatalf("ack m-1: %v", err)
			}
			if d2 := h.must(b); d2.MessageID != "m-2" {
				t.Fatalf("after m-1, the key's next delivery is %s, want m-2", d2.MessageID)
			}
		}
	}
}
