package canary

import (
	"sync"
	"time"
)

// tracker follows one canary source's sequence numbers from send to
// receipt. Records of one source share a key, so they are written to one
// partition in send order (one at a time, idempotent producer) and read
// back in that order: when a record arrives, every record sent before it
// that has not arrived is lost, not late.
type tracker struct {
	mu       sync.Mutex
	pending  map[uint64]time.Time // sent (or being sent), not received: seq → send time
	received map[uint64]bool      // recently received, for duplicates
	highest  uint64               // highest seq received
}

// receivedWindow bounds how far back duplicates are recognised.
const receivedWindow = 10_000

// maxPending bounds the records waiting to be received (while the consume
// path is down, one more per interval): the oldest are forgotten.
const maxPending = 100_000

func newTracker() *tracker {
	return &tracker{pending: make(map[uint64]time.Time), received: make(map[uint64]bool)}
}

// sending registers seq before it is produced (its receipt may be handled
// before the produce call returns).
func (t *tracker) sending(seq uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) >= maxPending {
		oldest := seq
		for s := range t.pending {
			oldest = min(oldest, s)
		}
		delete(t.pending, oldest)
	}
	t.pending[seq] = at
}

// failed forgets seq: the producer reported it not written.
func (t *tracker) failed(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, seq)
}

// receipt is what receiving one record found.
type receipt struct {
	latency   time.Duration // from send to now, when timed
	timed     bool          // false when the send time is unknown
	lost      int           // records sent before this one that will not arrive
	duplicate bool
}

// receive accounts for seq arriving at now.
func (t *tracker) receive(seq uint64, now time.Time) receipt {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.received[seq] {
		return receipt{duplicate: true}
	}
	var r receipt
	if sent, ok := t.pending[seq]; ok {
		r.latency, r.timed = max(0, now.Sub(sent)), true
		delete(t.pending, seq)
	} else if seq <= t.highest {
		// Neither pending nor received recently: a record counted lost
		// that arrived after all (another partition after a partition
		// count change), or one older than the window. Not a duplicate.
		return r
	}
	for s := range t.pending {
		if s < seq {
			delete(t.pending, s)
			r.lost++
		}
	}
	t.received[seq] = true
	t.highest = max(t.highest, seq)
	if len(t.received) > 2*receivedWindow {
		for s := range t.received {
			if s+receivedWindow <= t.highest {
				delete(t.received, s)
			}
		}
	}
	return r
}
