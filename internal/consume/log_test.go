package consume

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// testLog is a partition log with its own timer queue and no byte totals.
func testLog(keyed bool) *partitionLog {
	return newPartitionLog("t", 0, 1, keyed, newTimerQueue(time.Now, func() {}), byteAccount{})
}

func fill(l *partitionLog, offsets ...int64) []*record {
	var recs []*record
	for _, o := range offsets {
		r := &record{offset: o, key: fmt.Appendf(nil, "k%d", o%3), size: 1}
		l.append(r)
		recs = append(recs, r)
	}
	return recs
}

func TestCommitPointMovesOnlyOverTheDoneprefix(t *testing.T) {
	t.Parallel()
	l := testLog(false)
	if got := l.committable(); got != -1 {
		t.Fatalf("empty log committable = %d, want -1", got)
	}
	recs := fill(l, 10, 11, 12, 14, 15) // 13 is a gap (compacted away)
	steps := []struct {
		finish int // index into recs
		want   int64
	}{
		{2, 10}, // 12 done, 10 and 11 not: stays at 10
		{0, 11},
		{4, 11}, // 15 done out of order
		{1, 14}, // 10, 11, 12 done; 13 never existed
		{3, 16}, // all done: the offset after the last fetched
	}
	for _, s := range steps {
		l.finish(recs[s.finish])
		if got := l.committable(); got != s.want {
			t.Fatalf("after finishing offset %d: committable = %d, want %d", recs[s.finish].offset, got, s.want)
		}
	}
}

func TestLookupMakesAcksIdempotentAndRejectsUnknownOffsets(t *testing.T) {
	t.Parallel()
	l := testLog(false)
	recs := fill(l, 5, 6, 8)
	l.finish(recs[0])
	cases := []struct {
		offset      int64
		done, known bool
	}{
		{4, true, true},   // before everything pending: done long ago
		{5, true, true},   // finished and popped
		{6, false, true},  // pending
		{7, false, false}, // a gap: never delivered
		{9, false, false}, // beyond what was fetched
	}
	for _, c := range cases {
		_, done, known := l.lookup(c.offset)
		if done != c.done || known != c.known {
			t.Errorf("lookup(%d) = done %v known %v, want %v %v", c.offset, done, known, c.done, c.known)
		}
	}
}

func TestDeliverableHonoursEachOrdering(t *testing.T) {
	t.Parallel()
	// Keys cycle k0, k1, k2 by offset: 0:k0 1:k1 2:k2 3:k0 4:k1 5:k2.
	cases := []struct {
		name     string
		ordering Ordering
		inflight []int64 // offsets already in flight
		want     string
	}{
		{"partition, nothing in flight", OrderingPartition, nil, "[0]"},
		{"partition, head in flight", OrderingPartition, []int64{0}, "[]"},
		{"key, nothing in flight", OrderingKey, nil, "[0 1 2]"},
		{"key, k1 busy", OrderingKey, []int64{1}, "[0 2]"},
		{"none", OrderingNone, []int64{1}, "[0 2 3 4 5]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := testLog(tc.ordering == OrderingKey)
			recs := fill(l, 0, 1, 2, 3, 4, 5)
			s := &Stream{maxInFlight: 100}
			for _, o := range tc.inflight {
				l.deliver(recs[o], s, time.Now(), time.Now().Add(time.Minute))
			}
			var got []int64
			for _, r := range l.deliverable(tc.ordering, 100, nil) {
				got = append(got, r.offset)
			}
			if fmt.Sprint(got) != tc.want && !(len(got) == 0 && tc.want == "[]") {
				t.Errorf("deliverable = %v, want %s", got, tc.want)
			}
		})
	}
}

func TestKeyOrderingHandsOutTheNextRecordOfAKeyWhenTheHeadSettles(t *testing.T) {
	t.Parallel()
	l := testLog(true)
	recs := fill(l, 0, 1, 2, 3, 4, 5) // keys k0 k1 k2 k0 k1 k2
	s := &Stream{maxInFlight: 100}
	deliver := func() (got []int64) {
		for _, r := range l.deliverable(OrderingKey, 100, nil) {
			l.deliver(r, s, time.Now(), time.Now().Add(time.Minute))
			got = append(got, r.offset)
		}
		return got
	}
	if got := fmt.Sprint(deliver()); got != "[0 1 2]" {
		t.Fatalf("first round = %s, want [0 1 2]", got)
	}
	if got := deliver(); len(got) != 0 {
		t.Fatalf("with every key busy, delivered %v", got)
	}
	l.finish(recs[1]) // k1 done: offset 4 may go
	if got := fmt.Sprint(deliver()); got != "[4]" {
		t.Fatalf("after finishing offset 1 = %s, want [4]", got)
	}
	l.requeue(recs[0], time.Time{}) // k0's head given back (timeout): it goes again, 3 still waits
	if got := fmt.Sprint(deliver()); got != "[0]" {
		t.Fatalf("after giving back offset 0 = %s, want [0]", got)
	}
}

func TestAckIDRoundTripsVerifiesAndRejectsMalformedIDs(t *testing.T) {
	t.Parallel()
	signer := newAckSigner()
	id := AckID{Topic: "orders.eu-1", Partition: 7, Offset: 123456789, Epoch: 42, Delivery: 3}
	text := signer.format("g", id)
	got, mac, err := ParseAckID("ack_ids[0]", text)
	if err != nil || got != id || !signer.verify("g", got, mac) {
		t.Fatalf("round trip of %q: %+v, %v", text, got, err)
	}
	// Any field changed, or another group, or another gateway process's
	// key: the signature does not verify.
	for name, other := range map[string]AckID{
		"offset":   {Topic: id.Topic, Partition: 7, Offset: 123456788, Epoch: 42, Delivery: 3},
		"delivery": {Topic: id.Topic, Partition: 7, Offset: 123456789, Epoch: 42, Delivery: 4},
		"epoch":    {Topic: id.Topic, Partition: 7, Offset: 123456789, Epoch: 43, Delivery: 3},
		"topic":    {Topic: "orders", Partition: 7, Offset: 123456789, Epoch: 42, Delivery: 3},
	} {
		if signer.verify("g", other, mac) {
			t.Errorf("an ID with another %s verifies with the original signature", name)
		}
	}
	if signer.verify("g2", id, mac) {
		t.Error("an ID of group g verifies for group g2")
	}
	if newAckSigner().verify("g", id, mac) {
		t.Error("an ID verifies with another process's key")
	}
	for _, bad := range []string{"", "orders", "orders/1/2/3/4", "/1/2/3/4/" + strings.Repeat("0", 24), "orders/x/2/3/4/00",
		"orders/1/-2/3/4/00", "orders/1/2/0/4/00", "orders/1/2/3/0/00", "orders/1/2/3/4/", "orders/99999999999/2/3/4/00",
		"orders/1/2/3/4/" + strings.Repeat("0", 22), "orders/1/2/3/4/" + strings.Repeat("g", 24)} {
		_, _, err := ParseAckID("ack_ids[4]", bad)
		var inv *invalid.Error
		if !errors.As(err, &inv) || inv.Violations[0].Field != "ack_ids[4]" {
			t.Errorf("ParseAckID(%q) = %v, want an invalid.Error on ack_ids[4]", bad, err)
		}
	}
}

// FuzzCommitNeverPassesAnUnfinishedRecord finishes records in an arbitrary
// order (with repeats) and checks the commit rule after every step.
func FuzzCommitNeverPassesAnUnfinishedRecord(f *testing.F) {
	f.Add(uint64(1), []byte{3, 1, 2, 0, 0, 5})
	f.Add(uint64(7), []byte{9, 9, 9})
	f.Fuzz(func(t *testing.T, seed uint64, order []byte) {
		rng := rand.New(rand.NewPCG(seed, seed))
		l := testLog(false)
		var recs []*record
		off := int64(rng.IntN(1000))
		for range 1 + rng.IntN(64) {
			off += 1 + int64(rng.IntN(3)) // gaps as after compaction
			recs = append(recs, fill(l, off)...)
		}
		done := map[int64]bool{}
		for _, b := range order {
			r := recs[int(b)%len(recs)]
			l.finish(r) // repeats must be harmless
			done[r.offset] = true
			c := l.committable()
			for _, r := range recs {
				if r.offset < c && !done[r.offset] {
					t.Fatalf("committable %d passes unfinished offset %d", c, r.offset)
				}
			}
			if first := firstUnfinished(recs, done); first >= 0 && c != first {
				t.Fatalf("committable %d, want the first unfinished offset %d", c, first)
			}
		}
	})
}

func firstUnfinished(recs []*record, done map[int64]bool) int64 {
	for _, r := range recs {
		if !done[r.offset] {
			return r.offset
		}
	}
	return -1
}

func TestARecordWithoutAMessageIDIsNamedByItsPlace(t *testing.T) {
	cases := []struct {
		topic     string
		partition int32
		offset    int64
		want      string
	}{
		{"orders", 0, 0, "orders/0/0"},
		{"orders", 3, 1234567, "orders/3/1234567"},
		{"", 2147483647, 9223372036854775807, "/2147483647/9223372036854775807"},
		{"t", -1, -9223372036854775808, "t/-1/-9223372036854775808"},
		{"t", 9, 10, "t/9/10"},
	}
	for _, c := range cases {
		if got := string(AppendRecordID(nil, c.topic, c.partition, c.offset)); got != c.want {
			t.Errorf("AppendRecordID(%q, %d, %d) = %q, want %q", c.topic, c.partition, c.offset, got, c.want)
		}
		if got := RecordIDLen(c.topic, c.partition, c.offset); got != len(c.want) {
			t.Errorf("RecordIDLen(%q, %d, %d) = %d, want %d", c.topic, c.partition, c.offset, got, len(c.want))
		}
		d := Delivery{Topic: c.topic, Partition: c.partition, Offset: c.offset}
		if got := d.ID(); got != c.want {
			t.Errorf("Delivery.ID() = %q, want %q", got, c.want)
		}
		d.MessageID = "m-1"
		if got := d.ID(); got != "m-1" {
			t.Errorf("Delivery.ID() with a message ID = %q, want m-1", got)
		}
	}
}

// TestTheConsumerFetchesPromptlyUnlessToldOtherwise: the gateway's
// librdkafka defaults keep a resumed partition's wait for the fetch in
// flight short (fetch.wait.max.ms) and refetch soon after a full queue;
// consumer.properties still win over them.
func TestTheConsumerFetchesPromptlyUnlessToldOtherwise(t *testing.T) {
	kc := kafkaclient.Config{BootstrapServers: "127.0.0.1:9092"}
	cfg := DefaultConfig()
	props := cfg.properties(kc, "g", StartEarliest)
	for k, want := range map[string]string{"fetch.wait.max.ms": "100", "fetch.queue.backoff.ms": "10"} {
		if props[k] != want {
			t.Errorf("%s = %q, want %q", k, props[k], want)
		}
	}
	cfg.Properties = map[string]string{"fetch.wait.max.ms": "500"}
	if got := cfg.properties(kc, "g", StartEarliest)["fetch.wait.max.ms"]; got != "500" {
		t.Errorf("with consumer.properties fetch.wait.max.ms=500: %q", got)
	}
}
