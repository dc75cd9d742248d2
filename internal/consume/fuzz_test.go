package consume

import (
	"errors"
	"strings"
	"testing"

	"github.com/kafkagate/gateway/internal/invalid"
)

// FuzzParseAckID: any text either parses into an ID whose signed text form
// parses back to the same ID and verifies, or fails as bad input naming the
// field; it never panics. An ID that parses verifies only with the MAC the
// gateway made for it (for its group).
func FuzzParseAckID(f *testing.F) {
	signer := newAckSigner()
	for _, s := range []string{
		"orders/0/0/1/1/000000000000000000000000", "orders/3/12345/1732412345000000/7/0123456789abcdef01234567",
		"a.b-c_d/2147483647/9223372036854775807/18446744073709551615/4294967295/ffffffffffffffffffffffff",
		signer.format("g", AckID{Topic: "orders", Partition: 1, Offset: 2, Epoch: 3, Delivery: 4}),
		"", "/", "orders", "orders/0/0", "orders/0/0/1", "orders/0/0/1/1", "orders/0/0/0/1/00", "/0/0/1/1/00",
		"orders/-1/0/1/1/00", "orders/0/-1/1/1/00", "orders/x/0/1/1/00", "or/ders/1/2/3/4/00", "orders/2147483648/0/1/1/00",
		"orders/0/0/18446744073709551616/1/00", "//0/0/1/1/57a5f511ebd59acea1aa7d50", "a/b/0/0/1/1/57a5f511ebd59acea1aa7d50", "../0/0/1/1/57a5f511ebd59acea1aa7d50", "orders/+1/0/1/1/00", "orders/0/0/1/4294967296/00", "orders/0/0/1/1/zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, mac, err := ParseAckID("ack_ids[0]", s)
		if err != nil {
			var inv *invalid.Error
			if !errors.As(err, &inv) || inv.Violations[0].Field != "ack_ids[0]" {
				t.Fatalf("ParseAckID(%q) = %v, want an invalid-argument error naming ack_ids[0]", s, err)
			}
			return
		}
		if id.Topic == "" || id.Partition < 0 || id.Offset < 0 || id.Epoch == 0 || id.Delivery == 0 || len(mac) != macBytes {
			t.Fatalf("ParseAckID(%q) accepted %+v", s, id)
		}
		text := signer.format("g", id)
		again, mac2, err := ParseAckID("x", text)
		if err != nil || again != id {
			t.Fatalf("ParseAckID(%q) = %+v, whose text %q parses to %+v, %v", s, id, text, again, err)
		}
		if !signer.verify("g", again, mac2) {
			t.Fatalf("the gateway's own ID %q does not verify", text)
		}
		if signer.verify("other-group", again, mac2) {
			t.Fatalf("ID %q of group g verifies for another group", text)
		}
		if s != text && signer.verify("g", id, mac) {
			t.Fatalf("%q verifies although the gateway made %q for it", s, text)
		}
		if strings.Count(text, "/") != ackIDParts-1 {
			t.Fatalf("text form %q does not have %d slashes", text, ackIDParts-1)
		}
	})
}

// FuzzPartitionLogCommitRule drives a partition log with fetched offsets
// (with gaps) and acks in any order, repeated acks and acks of offsets never
// fetched, all taken from the fuzz input. After every step the committable
// offset never passes a record that is not done, never moves back, and
// repeated or unknown acks change nothing.
func FuzzPartitionLogCommitRule(f *testing.F) {
	f.Add([]byte{1, 1, 1, 1}, []byte{0, 2, 1, 3})
	f.Add([]byte{1, 3, 1, 7, 1}, []byte{4, 4, 0, 200, 1, 2, 3, 3})
	f.Add([]byte{}, []byte{5})
	f.Add([]byte{2, 0, 0, 5}, []byte{3, 2, 1, 0, 9, 1})
	f.Fuzz(func(t *testing.T, gaps, acks []byte) {
		if len(gaps) > 512 || len(acks) > 1024 {
			return
		}
		l := testLog(len(gaps)%2 == 0)
		var recs []*record
		fetched := map[int64]*record{}
		off := int64(100)
		for i, g := range gaps {
			off += int64(g % 4) // 0: the same offset again (a re-fetch), ignored
			r := &record{offset: off, key: []byte{byte(i % 3)}, size: 1}
			if l.append(r) {
				recs = append(recs, r)
				fetched[off] = r
			}
		}
		done := map[int64]bool{}
		prev := l.committable()
		check := func(step string) {
			c := l.committable()
			if c < prev {
				t.Fatalf("%s: committable moved back from %d to %d", step, prev, c)
			}
			prev = c
			for _, r := range recs {
				if r.offset < c && !done[r.offset] {
					t.Fatalf("%s: committable %d passes offset %d, which is not done", step, c, r.offset)
				}
			}
			if len(recs) > 0 && len(done) == len(recs) && c != recs[len(recs)-1].offset+1 {
				t.Fatalf("%s: every record done, committable %d, want %d", step, c, recs[len(recs)-1].offset+1)
			}
		}
		check("start")
		for _, a := range acks {
			target := int64(100) + int64(a)
			r, isDone, known := l.lookup(target)
			switch {
			case fetched[target] == nil:
				if known && !isDone {
					t.Fatalf("offset %d was never fetched, lookup says known and pending", target)
				}
				if r != nil {
					t.Fatalf("offset %d was never fetched, lookup found a record", target)
				}
				check("unknown ack")
				continue
			case !known:
				t.Fatalf("offset %d was fetched, lookup says unknown", target)
			case isDone != done[target]:
				t.Fatalf("offset %d: lookup done=%v, want %v", target, isDone, done[target])
			}
			if r != nil {
				l.finish(r)
			}
			done[target] = true
			check("ack")
			if r != nil {
				l.finish(r) // a repeated ack
				check("repeated ack")
			}
			if l.pending() != len(recs)-len(done) {
				t.Fatalf("pending %d, want %d", l.pending(), len(recs)-len(done))
			}
		}
	})
}
