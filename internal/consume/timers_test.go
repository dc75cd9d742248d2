package consume

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The timer queue against a map of the deadlines set: records set in
// order (ack deadlines) and out of order (retry times, extensions), moved
// and removed at random, come out earliest first, each once, and only
// while scheduled.
func TestTheTimerQueueGivesTheEarliestDeadlineFirst(t *testing.T) {
	q := newTimerQueue(time.Now, func() {})
	defer q.stop()
	l := &partitionLog{}
	base := time.Unix(1_000_000, 0)
	recs := make([]*record, 300)
	for i := range recs {
		recs[i] = &record{offset: int64(i)}
	}
	model := map[*record]time.Time{}
	rng := rand.New(rand.NewPCG(1, 2))
	clock := 0
	for step := range 20000 {
		r := recs[rng.IntN(len(recs))]
		switch op := rng.IntN(10); {
		case op < 5: // an ack deadline: the latest yet
			clock++
			r.deadline = base.Add(time.Duration(clock) * time.Millisecond)
			q.set(r, l)
			model[r] = r.deadline
		case op < 7: // a retry time or an extension: anywhere
			r.deadline = base.Add(time.Duration(rng.IntN(clock+10)) * time.Millisecond)
			q.set(r, l)
			model[r] = r.deadline
		case op < 9:
			q.remove(r)
			delete(model, r)
		default: // pop what is due at a time around the middle
			now := base.Add(time.Duration(rng.IntN(clock+1)) * time.Millisecond)
			last := time.Time{}
			for {
				e, ok := q.popDue(now)
				if !ok {
					break
				}
				want, scheduled := model[e.r]
				if !scheduled || !want.Equal(e.at) || e.at.Before(last) || e.at.After(now) || e.l != l {
					t.Fatalf("step %d: popped %v at %v (scheduled %v at %v), after %v, now %v", step, e.r.offset, e.at, scheduled, want, last, now)
				}
				last = e.at
				delete(model, e.r)
			}
			for r, at := range model {
				if !at.After(now) {
					t.Fatalf("step %d: record %d due at %v not popped at %v", step, r.offset, at, now)
				}
			}
		}
		if e, ok := q.first(); ok != (len(model) > 0) {
			t.Fatalf("step %d: first %v, %v with %d scheduled", step, e.r, ok, len(model))
		} else if ok {
			for _, at := range model {
				if at.Before(e.at) {
					t.Fatalf("step %d: first is at %v, but %v is scheduled", step, e.at, at)
				}
			}
		}
	}
}
