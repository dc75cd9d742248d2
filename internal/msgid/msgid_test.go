package msgid

import (
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"
)

func decode(t testing.TB, id string) [16]byte {
	t.Helper()
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		t.Fatalf("id %q is not in canonical UUID form", id)
	}
	raw, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	var u [16]byte
	copy(u[:], raw)
	return u
}

func TestIDsAreVersion7WithEmbeddedTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 3, 4, 5, 678_000_000, time.UTC)
	g := New(func() time.Time { return at })
	u := decode(t, g.Next())
	if v := u[6] >> 4; v != 7 {
		t.Errorf("version = %d, want 7", v)
	}
	if v := u[8] >> 6; v != 0b10 {
		t.Errorf("variant bits = %b, want 10", v)
	}
	var ms int64
	for _, b := range u[:6] {
		ms = ms<<8 | int64(b)
	}
	if got := time.UnixMilli(ms).UTC(); !got.Equal(at) {
		t.Errorf("embedded time = %v, want %v", got, at)
	}
}

func TestIDsIncreaseWhenTheClockStallsOrStepsBack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		clock func(i int) time.Time
	}{
		{"stalled clock", func(int) time.Time { return time.UnixMilli(1_000) }},
		{"clock steps back", func(i int) time.Time { return time.UnixMilli(int64(10_000 - i)) }},
		{"advancing clock", func(i int) time.Time { return time.UnixMilli(int64(1_000 + i/3)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			i := 0
			g := New(func() time.Time { i++; return tc.clock(i) })
			prev := g.Next()
			// 10,000 IDs in one millisecond overflow the 12-bit counter twice.
			for range 10_000 {
				id := g.Next()
				if id <= prev {
					t.Fatalf("ID %s is not greater than its predecessor %s", id, prev)
				}
				prev = id
			}
		})
	}
}

func TestIDsAreUniqueAcrossGoroutinesAndGenerators(t *testing.T) {
	t.Parallel()
	const perGoroutine = 20_000
	gens := []*Generator{New(nil), New(nil)} // two "pods" on the same clock
	var (
		mu   sync.Mutex
		seen = make(map[string]struct{}, 8*perGoroutine)
		wg   sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			g := gens[w%len(gens)]
			ids := make([]string, perGoroutine)
			for i := range ids {
				ids[i] = g.Next()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if _, dup := seen[id]; dup {
					t.Errorf("duplicate ID %s", id)
				}
				seen[id] = struct{}{}
			}
		})
	}
	wg.Wait()
}

func BenchmarkNext(b *testing.B) {
	g := New(nil)
	for b.Loop() {
		_ = g.Next()
	}
}

// TestFillMakesTheSameIDsAsNext: IDs written in bulk are canonical UUIDv7s
// and keep the strict order with the IDs made one by one around them, also
// when many are made within one millisecond.
func TestFillMakesTheSameIDsAsNext(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)
	g := New(func() time.Time { return at })
	ids := []string{g.Next()}
	buf := make([]byte, 5000*Len+7) // the 7 bytes left over stay untouched
	g.Fill(buf)
	for i := range 5000 {
		ids = append(ids, string(buf[i*Len:(i+1)*Len]))
	}
	if tail := buf[5000*Len:]; string(tail) != "\x00\x00\x00\x00\x00\x00\x00" {
		t.Errorf("Fill wrote past the last whole ID: %q", tail)
	}
	ids = append(ids, g.Next())
	for i, id := range ids {
		u := decode(t, id)
		if u[6]>>4 != 7 || u[8]>>6 != 0b10 {
			t.Fatalf("id %d %q: not a UUIDv7", i, id)
		}
		if i > 0 && id <= ids[i-1] {
			t.Fatalf("id %d %q does not follow %q", i, id, ids[i-1])
		}
	}
}
