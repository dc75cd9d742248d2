package consume

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGapMetadataRoundTripsAndStaysBounded(t *testing.T) {
	ranges := []offsetRange{{12, 15}, {20, 21}, {1000, 5000}}
	meta := encodeGaps(10, ranges)
	if meta != "kg1:10:2.3,5.1,979.4000" {
		t.Fatalf("encoded %q", meta)
	}
	base, got, ok := decodeGaps(meta)
	if !ok || base != 10 || !slices.Equal(got, ranges) {
		t.Fatalf("decoded %d %v %v", base, got, ok)
	}
	if encodeGaps(10, nil) != "" {
		t.Fatal("no ranges, some metadata")
	}
	var many []offsetRange
	for i := range int64(1000) {
		many = append(many, offsetRange{100 + 3*i, 101 + 3*i})
	}
	meta = encodeGaps(99, many)
	if len(meta) > maxGapMetadata {
		t.Fatalf("%d bytes of metadata", len(meta))
	}
	_, got, ok = decodeGaps(meta)
	if !ok || len(got) == 0 || !slices.Equal(got, many[:len(got)]) {
		t.Fatalf("a truncated encoding decodes to %d ranges, not a prefix of the ranges", len(got))
	}
	for _, bad := range []string{"", "kg1:", "kg1:5", "kg1:5:", "kg1:x:1.1", "kg1:5:1.0", "kg1:5:-1.2", "kg1:5:1.2,0.3", "kg2:5:1.1",
		"something else", "kg1:5:1.2,", "kg1:-5:1.1", "kg1:5:9223372036854775807.1", "kg1:5:" + strings.Repeat("1.1,", 300) + "1.1"} {
		if _, _, ok := decodeGaps(bad); ok {
			t.Errorf("%q decoded", bad)
		}
	}
}

// FuzzGapMetadata: any metadata either decodes to sorted, separate,
// non-empty ranges past its base, which encode to metadata that decodes to
// the same, or is refused; it never panics.
func FuzzGapMetadata(f *testing.F) {
	for _, s := range []string{"kg1:10:2.3,5.1,979.4000", "kg1:0:0.1", "kg1:5:1.2,0.3", "kg1:1:1.1,1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		base, ranges, ok := decodeGaps(s)
		if !ok {
			return
		}
		prev := base
		for i, r := range ranges {
			if r.start < prev || r.end <= r.start || (i > 0 && r.start == prev) {
				t.Fatalf("%q: range %d %v after %d", s, i, r, prev)
			}
			prev = r.end
		}
		again := encodeGaps(base, ranges)
		if base2, ranges2, ok := decodeGaps(again); !ok || base2 != base || !slices.Equal(ranges2, ranges) {
			t.Fatalf("%q encodes back as %q, which decodes to %d %v %v", s, again, base2, ranges2, ok)
		}
	})
}

// Records acknowledged beyond the first unacknowledged one are named in the
// metadata of the commit at a revoke; the partition's next owner skips them
// as they are fetched, and its commit passes them without delivering them.
func TestRecordsAckedOutOfOrderAreNotDeliveredAgainAfterAHandOver(t *testing.T) {
	h := newHarness(t, harnessOptions{ordering: OrderingNone, cfg: func(c *Config) { c.RevokeGrace = 100 * time.Millisecond }})
	h.assign(0)
	for i := range 10 {
		h.add(rec(0, int64(i), string(rune('a'+i)), "v"))
	}
	s := h.stream(10)
	ds := map[int64]*Delivery{}
	for range 10 {
		d := h.must(s)
		ds[d.Offset] = d
	}
	for _, off := range []int64{0, 1, 4, 5, 6, 8} { // 2, 3, 7 and 9 stay unacked
		if err := h.ack(ds[off].AckID); err != nil {
			t.Fatal(err)
		}
	}
	h.revoke(false, 0) // the grace passes with 2, 3, 7, 9 unacked
	h.client.mu.Lock()
	off, meta := h.client.committed[tpKey{"t", 0}], h.client.metadata[tpKey{"t", 0}]
	h.client.mu.Unlock()
	if off != 2 || meta != "kg1:2:2.3,1.1" {
		t.Fatalf("committed %d with metadata %q, want 2 with the ranges 4-6 and 8", off, meta)
	}

	// The next owner: another group member, from the committed offset.
	h2 := newHarness(t, harnessOptions{ordering: OrderingNone, group: "g2"})
	h2.g.assignedWith(tps(0), map[tpKey][]offsetRange{{"t", 0}: gapsFrom(meta, off)})
	for i := 2; i < 12; i++ {
		h2.add(rec(0, int64(i), string(rune('a'+i)), "v"))
	}
	s2 := h2.stream(20)
	var got []int64
	for {
		d := next(s2, 200*time.Millisecond)
		if d == nil {
			break
		}
		got = append(got, d.Offset)
		if err := h2.ack(d.AckID); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	if want := []int64{2, 3, 7, 9, 10, 11}; !slices.Equal(got, want) {
		t.Fatalf("the next owner delivered %v, want %v", got, want)
	}
	eventually(t, "the commit past every record", func() bool { return h2.committable(0) == 12 })
	if n := h2.g.stats.skippedDone.Load(); n != 4 {
		t.Fatalf("%d records counted as skipped, want 4", n)
	}
}
