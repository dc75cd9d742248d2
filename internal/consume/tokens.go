package consume

import (
	crand "crypto/rand"
	"encoding/binary"
)

// tokenTable names the deliveries a Consume stream holds. A token is a
// slot of the table (24 bits) and the slot's generation (29 bits, counted up
// each time the slot is reused), masked with a random key of the stream: no
// two tokens the stream issues are equal while a slot's generation does not
// wrap (2^29 reuses of one slot), so a token from before names nothing; and
// a token is meaningful in its own stream only, whose app alone can send
// it. Tokens fit in 53 bits, so that a client in any language (JavaScript's
// numbers included) holds them exactly. Lookup, issue and drop are a slice
// access each: the table is on the path of every record.
const (
	tokenSlotBits = 24
	tokenGenBits  = 29
	tokenMask     = 1<<(tokenSlotBits+tokenGenBits) - 1
	// maxTokenSlots bounds the deliveries a Consume stream may hold.
	maxTokenSlots = 1<<tokenSlotBits - 1
)

type tokenTable struct {
	key   uint64
	ids   []AckID  // by slot
	gen   []uint32 // by slot: the generation of its current (or last) token
	live  []bool   // by slot
	free  []uint32
	count int
}

func newTokenTable() *tokenTable {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return &tokenTable{key: binary.LittleEndian.Uint64(b[:]) & tokenMask}
}

// issue names id with a new token.
func (t *tokenTable) issue(id AckID) uint64 {
	var i uint32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
	} else {
		i = uint32(len(t.ids))
		t.ids, t.gen, t.live = append(t.ids, AckID{}), append(t.gen, 0), append(t.live, false)
	}
	for {
		t.gen[i] = (t.gen[i] + 1) & (1<<tokenGenBits - 1)
		if tok := t.token(i); tok != 0 {
			t.ids[i], t.live[i] = id, true
			t.count++
			return tok
		}
	}
}

func (t *tokenTable) token(i uint32) uint64 {
	return (uint64(t.gen[i])<<tokenSlotBits | uint64(i)) ^ t.key
}

// slot returns the live slot tok names.
func (t *tokenTable) slot(tok uint64) (uint32, bool) {
	if tok > tokenMask {
		return 0, false
	}
	v := tok ^ t.key
	i := uint32(v & maxTokenSlots)
	if int(i) >= len(t.ids) || !t.live[i] || uint32(v>>tokenSlotBits) != t.gen[i] {
		return 0, false
	}
	return i, true
}

// lookup returns the delivery tok names, if it is live.
func (t *tokenTable) lookup(tok uint64) (AckID, bool) {
	i, ok := t.slot(tok)
	if !ok {
		return AckID{}, false
	}
	return t.ids[i], true
}

// drop forgets tok.
func (t *tokenTable) drop(tok uint64) {
	if i, ok := t.slot(tok); ok {
		t.live[i], t.ids[i] = false, AckID{}
		t.free = append(t.free, i)
		t.count--
	}
}
