package produce

import "sync"

// slotTable maps the integer opaque of an enqueued record back to its batch:
// the opaque librdkafka carries to the delivery report is
// slot<<32 | index, never a pointer (no Go pointer is kept by C). A slot is
// taken when a batch is enqueued and given back when its last report has
// been handled.
type slotTable struct {
	mu    sync.Mutex
	slots []*Batch
	free  []uint32
}

func (t *slotTable) take(b *Batch) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.free); n > 0 {
		s := t.free[n-1]
		t.free = t.free[:n-1]
		t.slots[s] = b
		return s
	}
	t.slots = append(t.slots, b)
	return uint32(len(t.slots) - 1)
}

func (t *slotTable) release(s uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slots[s] = nil
	t.free = append(t.free, s)
}

// lookup fills out[i] with the batch of opaques[i]'s slot, under one lock.
// A slot cannot be released while a report of its batch is still to come,
// so the batches stay valid after the lock is released.
func (t *slotTable) lookup(opaques func(i int) uint64, n int, out []*Batch) []*Batch {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range n {
		out = append(out, t.slots[opaques(i)>>32])
	}
	return out
}

func opaqueOf(slot uint32, index int) uint64 { return uint64(slot)<<32 | uint64(uint32(index)) }
