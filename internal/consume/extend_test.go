package consume

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/invalid"
)

func (h *harness) extend(by time.Duration, ids ...string) ([]time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.m.Extend(ctx, h.g.settings.Group, ids, by)
}

// An app slower than its ack timeout that keeps extending its lease gets no
// redelivery; once it stops extending, the record goes out again.
func TestAnAppThatExtendsIsNotRedeliveredAndOneThatStopsIs(t *testing.T) {
	for _, dd := range []bool{false, true} {
		t.Run(map[bool]string{false: "without dedupe", true: "with dedupe"}[dd], func(t *testing.T) {
			const timeout = 150 * time.Millisecond
			h := newHarness(t, harnessOptions{ackTimeout: timeout, dedupe: dd})
			h.assign(0)
			h.add(rec(0, 0, "a", "x"))
			s := h.stream(10)
			d := h.must(s)
			last := d.AckDeadline
			for range 6 { // 6 × timeout/2: twice the ack timeout in all
				time.Sleep(timeout / 2)
				got, err := h.extend(timeout, d.AckID)
				if err != nil {
					t.Fatalf("Extend: %v", err)
				}
				if len(got) != 1 || !got[0].After(last) {
					t.Fatalf("Extend answered deadlines %v, want one later than %v", got, last)
				}
				last = got[0]
			}
			if again := next(s, 0); again != nil {
				t.Fatalf("redelivered while its app extended: attempt %d", again.Attempt)
			}
			again := next(s, 3*timeout)
			if again == nil {
				t.Fatal("not redelivered after its app stopped extending")
			}
			if again.Attempt != 2 || again.Offset != 0 {
				t.Fatalf("redelivery: offset %d attempt %d, want offset 0 attempt 2", again.Offset, again.Attempt)
			}
			if _, err := h.extend(timeout, d.AckID); !errors.Is(err, ErrStaleAck) {
				t.Fatalf("Extend of the first delivery after the second began: %v, want ErrStaleAck", err)
			}
			if err := h.ack(again.AckID); err != nil {
				t.Fatal(err)
			}
			eventually(t, "commit past the record", func() bool { return h.committable(0) == 1 })
		})
	}
}

// With dedupe, an extension moves the claim's lease in Redis before the
// ack deadline, so no other gateway may claim the message while its app
// works on it; the lease outlasts the new deadline by the usual margin.
func TestWithDedupeAnExtensionMovesTheClaimsLease(t *testing.T) {
	h := newHarness(t, harnessOptions{dedupe: true})
	h.assign(0)
	h.add(rec(0, 0, "a", "x"))
	s := h.stream(10)
	d := h.must(s)
	key := "t:dedupe:g:t:a"
	before := h.mr.TTL(key)
	if before <= 0 || before > time.Minute {
		t.Fatalf("the claim's lease before the extension: %v", before)
	}
	got, err := h.extend(20*time.Minute, d.AckID)
	if err != nil {
		t.Fatal(err)
	}
	if after := h.mr.TTL(key); after < 20*time.Minute {
		t.Fatalf("the claim's lease after extending the deadline by 20 min: %v", after)
	}
	if until := time.Until(got[0]); until < 19*time.Minute || until > 20*time.Minute {
		t.Fatalf("the new ack deadline is %v away, want about 20 min", until)
	}
	if err := h.ack(d.AckID); err != nil {
		t.Fatal(err)
	}
	if v := h.redisValue("a"); !dedupe.IsDone(v) {
		t.Fatalf("after the ack Redis holds %q, want the done marker", v)
	}
}

// An extension never takes a delivery's deadline past consumer.max_lease
// after the delivery began, and never brings a deadline in.
func TestAnExtensionStopsAtMaxLease(t *testing.T) {
	h := newHarness(t, harnessOptions{ackTimeout: time.Minute, cfg: func(c *Config) { c.MaxLease = 2 * time.Minute }})
	h.assign(0)
	h.add(rec(0, 0, "a", "x"))
	s := h.stream(10)
	d := h.must(s)
	begun := d.AckDeadline.Add(-time.Minute)
	got, err := h.extend(time.Hour, d.AckID)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Equal(begun.Add(2 * time.Minute)) {
		t.Fatalf("deadline after asking for an hour: %v after delivery, want max_lease (2m)", got[0].Sub(begun))
	}
	got, err = h.extend(time.Second, d.AckID)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Equal(begun.Add(2 * time.Minute)) {
		t.Fatalf("a shorter extension brought the deadline in to %v after delivery", got[0].Sub(begun))
	}
}

// Extend applies to live deliveries only, all or none, with the codes of
// Ack and Nack; a bad extension names its field.
func TestExtendRefusesWhatIsNotALiveDelivery(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone})
	h.assign(0)
	h.add(rec(0, 0, "a", "x"), rec(0, 1, "b", "y"), rec(0, 2, "c", "z"))
	s := h.stream(10)
	a, b, c := h.must(s), h.must(s), h.must(s)

	for _, by := range []time.Duration{0, -time.Second, 2 * time.Hour} {
		_, err := h.extend(by, a.AckID)
		var inv *invalid.Error
		if !errors.As(err, &inv) || inv.Violations[0].Field != "extension" {
			t.Errorf("extension %v: %v, want an invalid argument naming extension", by, err)
		}
	}
	if err := h.ack(b.AckID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.extend(time.Minute, a.AckID, b.AckID); !errors.Is(err, ErrAlreadyAcked) {
		t.Errorf("Extend naming an acked record: %v, want ErrAlreadyAcked", err)
	}
	if err := h.nack(NackOptions{RetryAfter: time.Hour}, c.AckID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.extend(time.Minute, a.AckID, c.AckID); !errors.Is(err, ErrStaleAck) {
		t.Errorf("Extend naming a nacked record: %v, want ErrStaleAck", err)
	}
	// Another hex digit in the signature's place: still well formed, not
	// signed by this gateway. (Flipping a bit of the last character made
	// 'a' a '`', which is not a hex digit, once in sixteen runs.)
	forged := []byte(a.AckID)
	if forged[len(forged)-1] == '0' {
		forged[len(forged)-1] = '1'
	} else {
		forged[len(forged)-1] = '0'
	}
	if _, err := h.extend(time.Minute, string(forged)); !errors.Is(err, ErrStaleAck) {
		t.Errorf("Extend with a forged ID: %v, want ErrStaleAck", err)
	}
	// None of the refused calls moved a's deadline.
	if got := h.deadlineOf(0, 0); !got.Equal(a.AckDeadline) {
		t.Errorf("a refused Extend moved a's deadline from %v to %v", a.AckDeadline, got)
	}
	if _, err := h.m.Extend(context.Background(), "no-such-group", []string{a.AckID}, time.Minute); err == nil {
		t.Error("Extend of another group's ID succeeded")
	}
}

// deadlineOf is the ack deadline of the record at offset off of part.
func (h *harness) deadlineOf(part int32, off int64) time.Time {
	l := h.log(part)
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	r, _, _ := l.lookup(off)
	if r == nil {
		return time.Time{}
	}
	return r.deadline
}

// failExtends fails every batch that carries extensions.
type failExtends struct {
	Claims
	failing atomic.Bool
}

func (f *failExtends) Do(ctx context.Context, b dedupe.Batch) (dedupe.BatchResult, error) {
	if len(b.Extends) > 0 && f.failing.Load() {
		return dedupe.BatchResult{}, errors.New("redis: connection refused")
	}
	return f.Claims.Do(ctx, b)
}

// With dedupe, an extension Redis did not confirm is not applied: the
// deadline stands, so the record never outlives its claim's lease; and an
// extension of a claim that is no longer this delivery's is refused.
func TestWithDedupeAnUnconfirmedExtensionLeavesTheDeadline(t *testing.T) {
	fe := &failExtends{}
	h := newHarness(t, harnessOptions{dedupe: true, ordering: OrderingNone, claims: func(c Claims) Claims { fe.Claims = c; return fe }})
	h.assign(0)
	h.add(rec(0, 0, "a", "x"), rec(0, 1, "b", "y"))
	s := h.stream(10)
	a, b := h.must(s), h.must(s)
	fe.failing.Store(true)
	if _, err := h.extend(20*time.Minute, a.AckID); !errors.Is(err, ErrExtendPending) {
		t.Fatalf("Extend while Redis fails: %v, want ErrExtendPending", err)
	}
	if got := h.deadlineOf(0, 0); !got.Equal(a.AckDeadline) {
		t.Fatalf("an unconfirmed extension moved the deadline from %v to %v", a.AckDeadline, got)
	}
	fe.failing.Store(false)

	h.mr.Del("t:dedupe:g:t:b") // b's lease lapsed in Redis (or Redis lost it)
	if _, err := h.extend(20*time.Minute, b.AckID); !errors.Is(err, ErrStaleAck) {
		t.Fatalf("Extend of a claim no longer in Redis: %v, want ErrStaleAck", err)
	}
	if got := h.deadlineOf(0, 1); !got.Equal(b.AckDeadline) {
		t.Fatalf("a refused extension moved the deadline from %v to %v", b.AckDeadline, got)
	}
	if _, err := h.extend(20*time.Minute, a.AckID); err != nil {
		t.Fatalf("Extend once Redis answers again: %v", err)
	}
}
