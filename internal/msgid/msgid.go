// Package msgid makes the message IDs that the gateway stamps on every record
// it produces: UUIDv7 strings (RFC 9562), unique across processes and ordered
// by creation time within a process.
package msgid

import (
	crand "crypto/rand"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"time"
)

// Generator makes message IDs. The zero value is not usable; call New.
//
// Layout of an ID (RFC 9562 §5.7 with the §6.2 method 3 counter):
// 48 bits of Unix milliseconds, 4 version bits, 12 bits of a counter that
// orders IDs made within the same millisecond, 2 variant bits and 62 random
// bits. When the counter overflows within one millisecond, the timestamp is
// advanced by one, so IDs stay strictly increasing even when the clock stalls
// or steps back.
type Generator struct {
	now func() time.Time

	mu      sync.Mutex
	lastMS  int64
	counter uint16 // 12 bits used
	rng     *rand.ChaCha8
}

// New returns a Generator reading the wall clock. now may be nil.
func New(now func() time.Time) *Generator {
	if now == nil {
		now = time.Now
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails on Linux (Go ≥ 1.24 crashes instead)
	return &Generator{now: now, rng: rand.NewChaCha8(seed)}
}

// Len is the length of an ID in the canonical form.
const Len = 36

// Next returns a new ID in the canonical 36-character form.
func (g *Generator) Next() string {
	var b [Len]byte
	g.Fill(b[:])
	return string(b[:])
}

// Fill writes len(dst)/Len new IDs into dst, back to back in the canonical
// form, in increasing order, reading the clock and taking the lock once.
func (g *Generator) Fill(dst []byte) {
	n := len(dst) / Len
	if n == 0 {
		return
	}
	ms := g.now().UnixMilli()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range n {
		var u [16]byte
		g.nextLocked(ms, &u)
		format((*[Len]byte)(dst[i*Len:]), &u)
	}
}

// nextLocked makes the ID after the last one, for the clock reading ms.
// g.mu is held.
func (g *Generator) nextLocked(ms int64, u *[16]byte) {
	switch {
	case ms > g.lastMS:
		g.lastMS = ms
		g.counter = 0
	case g.counter < 0xfff:
		g.counter++
	default: // counter exhausted for this millisecond: borrow the next one
		g.lastMS++
		g.counter = 0
	}
	ms, ctr := g.lastMS, g.counter
	rnd := g.rng.Uint64()

	u[0] = byte(ms >> 40)
	u[1] = byte(ms >> 32)
	u[2] = byte(ms >> 24)
	u[3] = byte(ms >> 16)
	u[4] = byte(ms >> 8)
	u[5] = byte(ms)
	u[6] = 0x70 | byte(ctr>>8)
	u[7] = byte(ctr)
	u[8] = 0x80 | byte(rnd>>56)&0x3f
	u[9] = byte(rnd >> 48)
	u[10] = byte(rnd >> 40)
	u[11] = byte(rnd >> 32)
	u[12] = byte(rnd >> 24)
	u[13] = byte(rnd >> 16)
	u[14] = byte(rnd >> 8)
	u[15] = byte(rnd)
}

// format writes u in the canonical form into b.
func format(b *[Len]byte, u *[16]byte) {
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
}
