package consume

import (
	"container/heap"
	"time"
)

// timerQueue is a group's one timer over the deadlines of its records (ack
// deadlines and retry times). Records know their position in it, so a
// record that leaves a timed state is removed at once instead of lingering
// until its old deadline. Guarded by the group's mutex.
type timerQueue struct {
	h     timerHeap
	timer *time.Timer // fires the group's onTimer
	now   func() time.Time
}

func newTimerQueue(now func() time.Time, fire func()) *timerQueue {
	q := &timerQueue{now: now, timer: time.AfterFunc(time.Hour, fire)}
	q.timer.Stop()
	return q
}

// set schedules r at r.deadline, or moves it there.
func (q *timerQueue) set(r *record, l *partitionLog) {
	if r.heapPos > 0 {
		q.h[r.heapPos-1].at = r.deadline
		heap.Fix(&q.h, r.heapPos-1)
	} else {
		heap.Push(&q.h, timerEntry{at: r.deadline, r: r, l: l})
	}
	if q.h[0].r == r {
		q.timer.Reset(max(0, r.deadline.Sub(q.now())))
	}
}

// remove unschedules r.
func (q *timerQueue) remove(r *record) {
	if r.heapPos > 0 {
		heap.Remove(&q.h, r.heapPos-1)
	}
}

// popDue removes and returns the earliest entry due at now, if any.
func (q *timerQueue) popDue(now time.Time) (timerEntry, bool) {
	if len(q.h) == 0 || q.h[0].at.After(now) {
		return timerEntry{}, false
	}
	return heap.Pop(&q.h).(timerEntry), true
}

// rearm sets the timer for the earliest entry left.
func (q *timerQueue) rearm(now time.Time) {
	if len(q.h) > 0 {
		q.timer.Reset(max(0, q.h[0].at.Sub(now)))
	}
}

func (q *timerQueue) stop() { q.timer.Stop() }

// timerEntry is the deadline of one record; the record knows its position.
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
	h[i].r.heapPos, h[j].r.heapPos = i+1, j+1
}
func (h *timerHeap) Push(x any) {
	e := x.(timerEntry)
	e.r.heapPos = len(*h) + 1
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
