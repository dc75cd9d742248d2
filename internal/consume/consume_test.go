package consume

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/kafkagate/gateway/internal/dedupe"
)

// consumeStream attaches a Consume stream (credited, tokens) with no credit.
func (h *harness) consumeStream(max int) *Stream {
	s := newStream(h.g, max, nil, true)
	h.g.attach(s)
	return s
}

func (h *harness) settle(s *Stream, req SettleRequest) SettleResult {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := s.Settle(req)
	if err != nil {
		h.t.Fatalf("Settle: %v", err)
	}
	return p.Wait(ctx)
}

// A Consume stream is sent records only within the credit its app granted,
// whatever its max_in_flight, and acks in the stream give no credit back.
func TestAConsumeStreamGetsRecordsOnlyWithinItsCredit(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone})
	h.assign(0)
	for i := range 5 {
		h.add(rec(0, int64(i), string(rune('a'+i)), "v"))
	}
	s := h.consumeStream(10)
	if d := next(s, 100*time.Millisecond); d != nil {
		t.Fatalf("delivered %d with no credit", d.Offset)
	}
	s.Grant(2, 1<<20)
	a, b := h.must(s), h.must(s)
	if d := next(s, 100*time.Millisecond); d != nil {
		t.Fatalf("a third record (%d) on a credit of two", d.Offset)
	}
	if a.Token == 0 || b.Token == 0 || a.Token == b.Token || a.AckID != "" {
		t.Fatalf("tokens %x and %x, ack ID %q: want two distinct tokens and no text ack ID", a.Token, b.Token, a.AckID)
	}
	res := h.settle(s, SettleRequest{Acks: []uint64{a.Token, b.Token}})
	if !slices.Equal(res.Acks, []Outcome{Applied, Applied}) {
		t.Fatalf("acks: %v", res.Acks)
	}
	if d := next(s, 100*time.Millisecond); d != nil {
		t.Fatalf("acks gave credit back: %d delivered", d.Offset)
	}
	s.Grant(1, 1<<20)
	if d := h.must(s); d.Offset != 2 {
		t.Fatalf("after one more credit: offset %d", d.Offset)
	}
	eventually(t, "commit after the two acks", func() bool { return h.committable(0) == 2 })
}

// Byte credit: a record goes out while the byte credit is positive, so the
// last one may overdraw it; then nothing until more bytes are granted.
func TestAConsumeStreamsByteCreditBoundsWhatItIsSent(t *testing.T) {
	for _, o := range []Ordering{OrderingNone, OrderingKey} {
		t.Run(o.String(), func(t *testing.T) {
			h := newHarness(t, harnessOptions{ordering: o})
			h.assign(0)
			for i := range 4 {
				h.add(rec(0, int64(i), string(rune('a'+i)), "0123456789")) // 11 bytes each, a key each
			}
			s := h.consumeStream(10)
			s.Grant(100, 12)
			h.must(s)
			h.must(s) // 11 + 11 > 12: the second overdraws
			if d := next(s, 100*time.Millisecond); d != nil {
				t.Fatalf("offset %d sent with the byte credit spent", d.Offset)
			}
			s.Grant(0, 11) // back to 1
			if d := h.must(s); d.Offset != 2 {
				t.Fatalf("after more bytes: offset %d", d.Offset)
			}
			s.Grant(0, 100)
			if d := h.must(s); d.Offset != 3 {
				t.Fatalf("after more bytes again: offset %d", d.Offset)
			}
		})
	}
}

// Tokens name deliveries of their own stream only, while they are live:
// an unknown token, another stream's token, a settled one, and one whose
// record went out again are Stale, each on its own, and the rest of the
// Settle applies.
func TestATokenCountsOnlyInItsStreamWhileItsDeliveryIsLive(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone, ackTimeout: 100 * time.Millisecond})
	h.assign(0)
	h.add(rec(0, 0, "a", "v"), rec(0, 1, "b", "v"), rec(0, 2, "c", "v"))
	s1, s2 := h.consumeStream(1), h.consumeStream(1)
	s1.Grant(1, 1<<20)
	d1 := h.must(s1)
	s2.Grant(1, 1<<20)
	d2 := h.must(s2)

	res := h.settle(s1, SettleRequest{Acks: []uint64{d1.Token + 1, d2.Token, d1.Token}})
	if !slices.Equal(res.Acks, []Outcome{Stale, Stale, Applied}) {
		t.Fatalf("acks of an unknown token, another stream's and its own: %v", res.Acks)
	}
	res = h.settle(s1, SettleRequest{Acks: []uint64{d1.Token}, Nacks: []uint64{d1.Token}})
	if !slices.Equal(res.Acks, []Outcome{Stale}) || !slices.Equal(res.Nacks, []Outcome{Stale}) {
		t.Fatalf("a settled token again: acks %v, nacks %v", res.Acks, res.Nacks)
	}
	// d2's deadline passes: its token is stale, for an extension and an ack.
	time.Sleep(300 * time.Millisecond)
	res = h.settle(s2, SettleRequest{Extends: []uint64{d2.Token}, Extension: time.Minute, Acks: []uint64{d2.Token}})
	if res.Extends[0] != Stale || res.Acks[0] != Stale {
		t.Fatalf("after its deadline: extension %v, ack %v; want both stale", res.Extends[0], res.Acks[0])
	}
}

// With dedupe, an ack in the stream is Applied only once its done marker
// is written, and Stale when the marker finds another delivery's claim, or
// another delivery's done marker (finding 14 of the reliability report:
// this delivery's lease lapsed during a Redis outage, and another gateway
// claimed, delivered and confirmed the message first).
func TestWithDedupeAnAckInTheStreamIsAppliedOnceItsMarkerIsWritten(t *testing.T) {
	h := newHarness(t, harnessOptions{dedupe: true, ordering: OrderingNone})
	h.assign(0)
	h.add(rec(0, 0, "a", "v"), rec(0, 1, "b", "v"), rec(0, 2, "c", "v"))
	s := h.consumeStream(10)
	s.Grant(3, 1<<20)
	a, b, c := h.must(s), h.must(s), h.must(s)
	h.mr.Set("t:dedupe:g:t:b", "c|someone-else|1|t/0/1/1") // b's lease lapsed and another gateway claimed it
	h.mr.Set("t:dedupe:g:t:c", "d|0123456789abcdef")       // c's lease lapsed, and another gateway processed it
	res := h.settle(s, SettleRequest{Acks: []uint64{a.Token, b.Token, c.Token}, Extends: []uint64{}})
	if !slices.Equal(res.Acks, []Outcome{Applied, Stale, Stale}) {
		t.Fatalf("acks: %v, want applied, stale, stale", res.Acks)
	}
	if v := h.redisValue("a"); !dedupe.IsDone(v) {
		t.Fatalf("a's key after its Applied ack: %q", v)
	}
	if v := h.redisValue("c"); v != "d|0123456789abcdef" {
		t.Fatalf("c's key after its refused ack: %q, want the other delivery's marker", v)
	}
	if n := h.g.stats.lostClaims.Load(); n != 2 {
		t.Fatalf("%d lost claims counted, want 2", n)
	}
}

// A Consume stream's undelivered records give their credit back when they
// are taken back unsent at a revoke, so credit is never lost.
func TestCreditOfRecordsTakenBackUnsentIsGivenBack(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone})
	h.assign(0, 1)
	h.add(rec(0, 0, "a", "v"), rec(1, 0, "b", "v"))
	s := h.consumeStream(10)
	s.Grant(2, 1<<20)
	eventually(t, "both queued", func() bool {
		h.g.mu.Lock()
		defer h.g.mu.Unlock()
		return s.holding == 2
	})
	h.revoke(false, 0, 1) // neither was taken by Next: both go back
	h.g.mu.Lock()
	records, bytes, holding := s.creditRecords, s.creditBytes, s.holding
	h.g.mu.Unlock()
	if records != 2 || bytes != 1<<20 || holding != 0 {
		t.Fatalf("after the revoke: credit %d records, %d bytes, holding %d; want 2, %d, 0", records, bytes, holding, 1<<20)
	}
}

// The token table against a map of the tokens it issued: a live token
// names its delivery, a dropped one names nothing even once its slot is
// reused, no token is issued twice, and 0 never is.
func TestTheTokenTableNamesOnlyLiveDeliveries(t *testing.T) {
	tt := newTokenTable()
	live := map[uint64]AckID{}
	var dead []uint64
	issued := map[uint64]bool{}
	for i := range 20000 {
		switch {
		case i%3 != 2 || len(live) == 0:
			id := AckID{Topic: "t", Offset: int64(i), Epoch: 1, Delivery: 1}
			tok := tt.issue(id)
			if tok == 0 || issued[tok] || tok > 1<<53-1 {
				t.Fatalf("token %x issued again (or 0, or over 53 bits)", tok)
			}
			issued[tok] = true
			live[tok] = id
		default:
			for tok := range live {
				tt.drop(tok)
				delete(live, tok)
				dead = append(dead, tok)
				break
			}
		}
	}
	for tok, id := range live {
		if got, ok := tt.lookup(tok); !ok || got != id {
			t.Fatalf("live token %x: %v %v", tok, got, ok)
		}
	}
	for _, tok := range dead {
		if _, ok := tt.lookup(tok); ok {
			t.Fatalf("dropped token %x still names a delivery", tok)
		}
		tt.drop(tok) // dropping again changes nothing
	}
	if tt.count != len(live) || len(tt.ids) > len(live)+len(tt.free) {
		t.Fatalf("%d live in the table, %d in the model; %d slots, %d free", tt.count, len(live), len(tt.ids), len(tt.free))
	}
}

// A frame's deliveries given back with Recycle hold the next frame, and
// nothing of the old frame stays in them: the next frame carries exactly
// its own records.
func TestARecycledFrameHoldsTheNextFrameAndNothingOfTheOld(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone})
	h.assign(0)
	s := h.consumeStream(10)
	h.add(rec(0, 0, "a", "v0"), rec(0, 1, "b", "v1"), rec(0, 2, "c", "v2"))
	s.Grant(3, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deliveries := func() Frame {
		for {
			f, err := s.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if f.Assignment == nil {
				return f
			}
		}
	}
	first := deliveries()
	if len(first.Deliveries) != 3 {
		t.Fatalf("first frame: %d deliveries, want 3", len(first.Deliveries))
	}
	old := first.Deliveries
	backing := &old[:1][0]
	s.Recycle(old)
	for i, d := range old[:cap(old)] {
		if d.Value != nil || d.Token != 0 {
			t.Fatalf("recycled delivery %d still holds offset %d", i, d.Offset)
		}
	}
	h.add(rec(0, 3, "d", "v3"))
	s.Grant(1, 1<<20)
	second := deliveries()
	if len(second.Deliveries) != 1 || second.Deliveries[0].Offset != 3 || string(second.Deliveries[0].Value) != "v3" {
		t.Fatalf("second frame: %+v, want offset 3 alone", second.Deliveries)
	}
	if &second.Deliveries[0] != backing {
		t.Fatal("the second frame was not built in the recycled deliveries")
	}
}

// TestAStreamIsSentNoFasterThanItsDeliveryRate: a stream whose delivery
// rate is 20 records a second (burst 4) gets its burst at once and then no
// more than the rate allows, though records wait and it has room for them,
// while a stream of the same group without a rate takes the rest; lifting
// the rate while it runs sends it what comes next.
func TestAStreamIsSentNoFasterThanItsDeliveryRate(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone})
	h.assign(0)
	lim := rate.NewLimiter(20, 4)
	limited := newStream(h.g, 1000, lim, false)
	free := h.stream(1000)
	start := time.Now()
	h.g.attach(limited)
	const n = 200
	var batch []fetched // one poll's records: one dispatch
	for i := range n {
		batch = append(batch, rec(0, int64(i), fmt.Sprintf("m-%d", i), "v"))
	}
	h.add(batch...)
	got := 0
	for time.Since(start) < 300*time.Millisecond {
		if next(limited, 50*time.Millisecond) != nil {
			got++
		}
	}
	allowed := 4 + int(20*time.Since(start).Seconds()) + 1
	if got < 4 || got > allowed {
		t.Fatalf("%d deliveries in %v, want the burst of 4 and at most %d", got, time.Since(start), allowed)
	}
	for range n - got {
		h.must(free)
	}
	lim.SetLimit(rate.Inf)
	for i := range 50 {
		h.add(rec(0, int64(n+i), fmt.Sprintf("m-%d", n+i), "v"))
	}
	if next(limited, 5*time.Second) == nil {
		t.Fatal("no delivery to the stream once its rate was lifted")
	}
}

// Deliveries made beyond the tokens a stream had (the dedupe path delivers
// late-won claims outside their dispatch's credit) are paid for all the
// same, in debt: the stream gets nothing more until the rate has paid it
// back, so over time it runs no faster than its rate.
func TestDeliveriesBeyondTheTokensArePaidInDebt(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone})
	lim := rate.NewLimiter(10, 4)
	s := newStream(h.g, 1000, lim, false)
	h.g.mu.Lock()
	s.limited = s.rateLimited()
	for i := range 10 {
		s.add(Delivery{Topic: "t", Offset: int64(i)})
	}
	s.flush()
	credit := s.credit()
	h.g.mu.Unlock()
	if tokens := lim.Tokens(); tokens > 4-10+1 {
		t.Errorf("after 10 deliveries against a burst of 4 the rate holds %.1f tokens, want a debt of about 6", tokens)
	}
	if credit != 0 {
		t.Errorf("a stream in debt may take %d more records, want 0", credit)
	}
}
