package consume

import (
	"container/heap"
	"time"
)

// timerQueue is a group's one timer over the deadlines of its records (ack
// deadlines and retry times). Records know their place in it, so a record
// that leaves a timed state is removed at once instead of lingering until
// its old deadline. Guarded by the group's mutex.
//
// Most deadlines come in order: deliveries of one group share its ack
// timeout, so each new ack deadline is the latest yet. Those go to the
// tail of a list, kept in deadline order, where adding and removing cost
// O(1); any other deadline (a retry time, an extension, an ack deadline
// earlier than the list's last) goes to a heap. The earliest deadline is
// the earlier of the list's head and the heap's top.
type timerQueue struct {
	h          timerHeap
	head, tail *record     // the in-order list, linked through the records
	timer      *time.Timer // fires the group's onTimer
	now        func() time.Time
}

func newTimerQueue(now func() time.Time, fire func()) *timerQueue {
	q := &timerQueue{now: now, timer: time.AfterFunc(time.Hour, fire)}
	q.timer.Stop()
	return q
}

// set schedules r (of log l) at r.deadline, or moves it there.
func (q *timerQueue) set(r *record, l *partitionLog) {
	q.remove(r)
	r.timerLog = l
	if q.tail == nil || !r.deadline.Before(q.tail.deadline) {
		r.inTimerList = true
		r.timerPrev = q.tail
		if q.tail != nil {
			q.tail.timerNext = r
		} else {
			q.head = r
		}
		q.tail = r
	} else {
		heap.Push(&q.h, timerEntry{at: r.deadline, r: r, l: l})
	}
	if e, ok := q.first(); ok && e.r == r {
		q.timer.Reset(max(0, r.deadline.Sub(q.now())))
	}
}

// remove unschedules r.
func (q *timerQueue) remove(r *record) {
	switch {
	case r.inTimerList:
		if r.timerPrev != nil {
			r.timerPrev.timerNext = r.timerNext
		} else {
			q.head = r.timerNext
		}
		if r.timerNext != nil {
			r.timerNext.timerPrev = r.timerPrev
		} else {
			q.tail = r.timerPrev
		}
		r.timerPrev, r.timerNext, r.inTimerList = nil, nil, false
	case r.heapPos > 0:
		heap.Remove(&q.h, int(r.heapPos)-1)
	}
}

// first returns the earliest entry.
func (q *timerQueue) first() (timerEntry, bool) {
	switch {
	case q.head != nil && (len(q.h) == 0 || !q.h[0].at.Before(q.head.deadline)):
		return timerEntry{at: q.head.deadline, r: q.head, l: q.head.timerLog}, true
	case len(q.h) > 0:
		return q.h[0], true
	}
	return timerEntry{}, false
}

// popDue removes and returns the earliest entry due at now, if any.
func (q *timerQueue) popDue(now time.Time) (timerEntry, bool) {
	e, ok := q.first()
	if !ok || e.at.After(now) {
		return timerEntry{}, false
	}
	q.remove(e.r)
	return e, true
}

// rearm sets the timer for the earliest entry left.
func (q *timerQueue) rearm(now time.Time) {
	if e, ok := q.first(); ok {
		q.timer.Reset(max(0, e.at.Sub(now)))
	}
}

func (q *timerQueue) stop() { q.timer.Stop() }

// timerEntry is the deadline of one record.
type timerEntry struct {
	at time.Time
	r  *record
	l  *partitionLog
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].r.heapPos, h[j].r.heapPos = int32(i+1), int32(j+1)
}
func (h *timerHeap) Push(x any) {
	e := x.(timerEntry)
	e.r.heapPos = int32(len(*h) + 1)
	*h = append(*h, e)
}
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = timerEntry{}
	*h = old[:len(old)-1]
	e.r.heapPos = 0
	return e
}
