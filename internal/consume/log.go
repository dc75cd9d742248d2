package consume

import (
	"errors"
	"slices"
	"sort"
	"sync/atomic"
	"time"
)

// recState is where a fetched record stands. The states and the transitions
// between them are the record state machine of DESIGN.md ("The record state
// machine"); a record changes state only through the partitionLog methods
// below, which keep every count derived from the states.
type recState uint8

const (
	// stateReady: waiting to be delivered (the first time or again).
	stateReady recState = iota
	// stateClaiming: picked for a stream; its dedupe claim is being taken.
	// It holds the stream's credit and its ordering slot.
	stateClaiming
	// stateInflight: delivered; its ack deadline runs.
	stateInflight
	// stateBackoff: waiting until its deadline to be ready again (a Nack's
	// retry_after, a claim held elsewhere, Redis failing).
	stateBackoff
	// stateDeadLetter: being written to the dead-letter topic.
	stateDeadLetter
	// stateConfirming: processed; its dedupe done marker is being written.
	// It no longer blocks its key or partition, but the commit waits.
	stateConfirming
	// stateDone: acknowledged, dead-lettered or dropped as a duplicate. Only
	// done records count for the commit rule.
	stateDone
	numStates
)

var stateNames = [numStates]string{"ready", "claiming", "in flight", "backoff", "dead-lettering", "confirming", "done"}

func (s recState) String() string { return stateNames[s] }

// holds reports whether a record in s holds its stream's credit.
func (s recState) holds() bool { return s == stateClaiming || s == stateInflight }

// timed reports whether a record in s has a deadline in the timer queue.
func (s recState) timed() bool { return s == stateInflight || s == stateBackoff }

// busy reports whether a record in s is being worked on: delivered, or on
// its way to done. A partition with ready records and none busy is waiting
// for dispatch alone.
func (s recState) busy() bool {
	return s == stateClaiming || s == stateInflight || s == stateDeadLetter || s == stateConfirming
}

// record is one fetched record and its delivery state. Guarded by the
// group's mutex.
type record struct {
	offset    int64
	seq       uint64 // position in the partition log, for index arithmetic
	key       []byte
	value     []byte
	headers   []Header
	timestamp time.Time
	messageID string // "" when the record carries none: see partitionLog.messageID
	fetched   int64  // unix nanoseconds, when the poll returned it

	// The small fields sit together, so that a record takes 256 bytes.
	state recState
	// unclaimed marks a delivery made without a dedupe claim (Redis down,
	// on_redis_failure: deliver): its done marker is written best effort.
	unclaimed   bool
	inTimerList bool // in the timer queue's in-order list (see timerQueue)
	settled     bool // left its key queue (confirming or done)
	// attempt counts the deliveries that count against max_attempts (a
	// delivery whose stream ended without dedupe does not): it is reported
	// as Delivery.attempt.
	attempt int32
	// delivery numbers the deliveries begun in this assignment (picked for a
	// stream), never reused: an ack ID names one, and only the latest may be
	// acknowledged.
	delivery uint32
	// ackedBy is the delivery whose Ack made the record confirming or done
	// (0: none), so that a repeated Ack of it succeeds and an Ack of any
	// other delivery does not.
	ackedBy uint32
	size    int32 // key, value and headers (Kafka bounds a record below 2 GiB)
	heapPos int32 // 1 + index in the timer queue's heap; 0 when not there

	// stream holds the record while its state holds credit; nil when its
	// stream ended and dedupe keeps it in flight under its claim.
	stream *Stream
	// token names the delivery on a Consume stream (0: none): the key of
	// its entry in the stream's tokens while the stream holds it.
	token    uint64
	deadline time.Time // ack deadline (in flight) or retry time (backoff)
	// delivered is when the latest delivery began: an extension never
	// moves the ack deadline past it plus consumer.max_lease.
	delivered time.Time
	// The timer queue's in-order list (see timerQueue): the neighbours
	// and the record's log.
	timerPrev, timerNext *record
	timerLog             *partitionLog
	// confirm is what Acks of the record wait for while it is confirming.
	confirm *confirmation
}

// confirmation is the outcome of a done marker that Acks wait for: done is
// closed once err is set (nil: written).
type confirmation struct {
	done chan struct{}
	err  error
}

func newConfirmation() *confirmation { return &confirmation{done: make(chan struct{})} }

func (c *confirmation) settle(err error) {
	c.err = err
	close(c.done)
}

// ready returns the confirmation's outcome if it is settled, or 0.
func (c *confirmation) ready() Outcome {
	select {
	case <-c.done:
	default:
		return 0
	}
	switch {
	case c.err == nil:
		return Applied
	case errors.Is(c.err, ErrStaleAck):
		return Stale
	}
	return Pending
}

// byteAccount adds a partition's buffered bytes to its group's total and to
// the gateway's.
// recordOverhead is what a buffered record costs in memory beyond its key,
// value and headers: the record itself (256 bytes), its message ID, the
// headers' slice and the allocations' rounding. The byte bound counts it,
// so that consumer.max_buffered_bytes bounds the memory of small records
// too (a 100-byte record takes about 600 bytes while buffered).
const recordOverhead = 512

type byteAccount struct {
	group, gateway *atomic.Int64
}

func (a byteAccount) add(n int) {
	if a.group != nil {
		a.group.Add(int64(n))
	}
	if a.gateway != nil {
		a.gateway.Add(int64(n))
	}
}

// partitionLog holds the records of one owned partition that are fetched
// but not yet done, in offset order. It is the one owner of their state:
// every transition goes through its methods, which keep the counts per
// state, the buffered bytes, the streams' credit, the timers and the
// ordering indexes. It applies the commit rule: the committable offset is
// the offset of the first record that is not done, or the offset after the
// last fetched record when all are done. Records become done in any order;
// the committable offset moves only over the contiguous done prefix, so it
// never passes a record that is not done.
type partitionLog struct {
	topic     string
	partition int32
	epoch     uint64

	recs    []*record // pending records, offset order; recs[0] is the oldest not yet popped
	nextSeq uint64
	scan    int   // index from which ready records may exist (below it none are ready)
	next    int64 // offset after the last appended record; -1 until the first record
	stored  int64 // last committable offset handed to the commit machinery; -1 none

	count [numStates]int // records per state (done ones until popped)
	bytes int            // sizes of the records not done

	// settledBy remembers, for records popped from the log, the delivery
	// whose Ack settled them where it is not the first (0: dead-lettered
	// or dropped as a duplicate), so that a late ack of another delivery
	// of a record long done is refused, and a repeated ack of the one that
	// settled it succeeds. Bounded: the oldest entries are forgotten, and
	// acks of records below forgotBelow are refused (none can be vouched
	// for).
	settledBy   map[int64]uint32
	settledFIFO []int64
	forgotBelow int64

	// skip are the ranges of offsets past the committed one that were done
	// before the partition came to this log (the commit's metadata): their
	// records are done as they are fetched, never delivered.
	skip []offsetRange

	revoking bool // no more deliveries: being revoked or repositioned
	paused   bool // fetching paused by flow control
	gone     bool // forgotten: every later change is ignored

	// waitingSince is when the partition started to have a deliverable
	// record, credit to deliver it and nothing busy (zero otherwise): the
	// stall detector's clock.
	waitingSince time.Time
	stalled      bool
	// appendedAt is when a record was last appended (or the partition
	// assigned), and fetchStalled whether the fetch watcher found the
	// partition not fetched: see member.watchFetch.
	appendedAt   time.Time
	fetchStalled bool

	timers *timerQueue // the group's
	acct   byteAccount

	// For KEY ordering (keyed): the unsettled records of each key in offset
	// order, and the key heads that may be ready. A record may be delivered
	// when it heads its key's queue and is ready, so dispatch visits only
	// candidate heads instead of the whole log.
	keyed      bool
	keys       map[string]*keyQueue
	readyHeads []*record
}

// keyQueue is the unsettled records of one key, oldest first.
type keyQueue struct{ recs []*record }

func newPartitionLog(topic string, partition int32, epoch uint64, keyed bool, timers *timerQueue, acct byteAccount) *partitionLog {
	l := &partitionLog{topic: topic, partition: partition, epoch: epoch, next: -1, stored: -1, keyed: keyed, timers: timers, acct: acct}
	if keyed {
		l.keys = make(map[string]*keyQueue)
	}
	return l
}

// append adds a fetched record, ready. Offsets must increase; a record at or
// below the last one (a re-fetch after a seek) is ignored and reported
// false.
func (l *partitionLog) append(r *record) bool {
	if l.gone || l.next >= 0 && r.offset < l.next {
		return false
	}
	r.seq = l.nextSeq
	r.state = stateReady
	l.nextSeq++
	l.recs = append(l.recs, r)
	l.next = r.offset + 1
	l.count[stateReady]++
	l.bytes += int(r.size)
	l.acct.add(int(r.size) + recordOverhead)
	if l.keyed {
		q := l.keys[string(r.key)]
		if q == nil {
			q = &keyQueue{}
			l.keys[string(r.key)] = q
		}
		q.recs = append(q.recs, r)
		if len(q.recs) == 1 {
			l.readyHeads = append(l.readyHeads, r)
		}
	}
	return true
}

// set is the one place where a record's state changes: every count, the
// stream's credit, the timer, the bytes and the ordering indexes follow it.
func (l *partitionLog) set(r *record, to recState) {
	from := r.state
	if l.gone || from == stateDone {
		return
	}
	if from == to {
		if to.timed() {
			l.timers.set(r, l) // a new deadline
		}
		return
	}
	l.count[from]--
	l.count[to]++
	r.state = to
	if from.holds() && !to.holds() && r.stream != nil {
		r.stream.letGo(r, from == stateClaiming)
	}
	switch {
	case to.timed():
		l.timers.set(r, l)
	case from.timed():
		l.timers.remove(r)
	}
	switch to {
	case stateReady:
		if i := l.index(r); i < l.scan {
			l.scan = i
		}
		if l.keyed && !r.settled && l.headOf(r) {
			l.readyHeads = append(l.readyHeads, r)
		}
	case stateConfirming:
		l.settle(r)
	case stateDone:
		l.settle(r)
		r.key, r.value, r.headers = nil, nil, nil
		l.bytes -= int(r.size)
		l.acct.add(-int(r.size) - recordOverhead)
		l.popDone()
	}
}

// take makes s the holder of r (r's state must be about to hold credit).
func take(r *record, s *Stream) {
	r.stream = s
	s.holding++
	if s.credited {
		s.creditRecords--
		s.creditBytes -= int64(r.size)
	}
}

// The named transitions. Each names what happened; set does the rest.

// pick: ready → claiming for s, beginning a new delivery (dedupe).
func (l *partitionLog) pick(r *record, s *Stream) {
	take(r, s)
	r.delivery++
	l.set(r, stateClaiming)
}

// deliver: ready (beginning a new delivery to s) or claiming (its claim
// won) → in flight, delivered at at, until deadline.
func (l *partitionLog) deliver(r *record, s *Stream, at, deadline time.Time) {
	if r.state == stateReady {
		take(r, s)
		r.delivery++
	}
	r.attempt++
	r.delivered = at
	r.deadline = deadline
	l.set(r, stateInflight)
}

// extend: in flight, its ack deadline moved out to deadline (an Extend of
// its latest delivery); a deadline that is not later changes nothing.
func (l *partitionLog) extend(r *record, deadline time.Time) {
	if r.state != stateInflight || !deadline.After(r.deadline) {
		return
	}
	r.deadline = deadline
	l.set(r, stateInflight)
}

// requeue: the delivery (or its claim) ended without the record being
// processed: ready at once when at is zero, else backoff until at.
func (l *partitionLog) requeue(r *record, at time.Time) {
	if at.IsZero() {
		l.set(r, stateReady)
		return
	}
	r.deadline = at
	l.set(r, stateBackoff)
}

// giveBack: in flight → ready because its stream ended (no dedupe): the app
// did not fail the record, so the attempt does not count.
func (l *partitionLog) giveBack(r *record) {
	r.attempt--
	l.set(r, stateReady)
}

// orphan: the stream of an in-flight record ended, and dedupe keeps the
// record in flight under its claim until its deadline (the app may still be
// working on it). Its stream's credit is given back.
func (l *partitionLog) orphan(r *record) {
	if r.stream != nil {
		r.stream.letGo(r, false)
	}
}

// deadLetter: → being written to the dead-letter topic.
func (l *partitionLog) deadLetter(r *record) { l.set(r, stateDeadLetter) }

// confirming: processed; the done marker is being written. Acks wait for the
// returned confirmation.
func (l *partitionLog) confirming(r *record) *confirmation {
	r.confirm = newConfirmation()
	l.set(r, stateConfirming)
	return r.confirm
}

// finish: → done.
func (l *partitionLog) finish(r *record) { l.set(r, stateDone) }

// discard forgets every record not done when the partition is given up
// (revoked, lost, repositioned, shut down): stream credit, timers and bytes
// are given back, and the log takes no change from then on. visit, when not
// nil, sees each record first, in its last state.
func (l *partitionLog) discard(visit func(*record)) {
	for _, r := range l.recs {
		if r.state == stateDone {
			continue
		}
		if visit != nil {
			visit(r)
		}
		if r.state.holds() && r.stream != nil {
			r.stream.letGo(r, r.state == stateClaiming)
		}
		if r.state.timed() {
			l.timers.remove(r)
		}
		l.acct.add(-int(r.size) - recordOverhead)
		r.state = stateDone
	}
	l.recs, l.readyHeads, l.keys = nil, nil, nil
	l.count = [numStates]int{}
	l.bytes = 0
	l.gone = true
}

// headOf reports whether r heads its key's queue.
func (l *partitionLog) headOf(r *record) bool {
	q := l.keys[string(r.key)]
	return q != nil && len(q.recs) > 0 && q.recs[0] == r
}

// settle takes r out of its key's queue once it no longer blocks its key
// (done, or processed and confirming); the next record of the key becomes
// a candidate.
func (l *partitionLog) settle(r *record) {
	if !l.keyed || r.settled {
		return
	}
	r.settled = true
	q := l.keys[string(r.key)]
	if q == nil {
		return
	}
	if q.recs[0] == r {
		// The common case, in key order: the head settles. Reslicing
		// costs nothing; append reallocates once the front's space is
		// used up, copying only the live records.
		q.recs[0] = nil
		q.recs = q.recs[1:]
	} else {
		for i, o := range q.recs {
			if o == r {
				q.recs = slices.Delete(q.recs, i, i+1)
				break
			}
		}
	}
	if len(q.recs) == 0 {
		delete(l.keys, string(r.key))
		return
	}
	if q.recs[0].state == stateReady {
		l.readyHeads = append(l.readyHeads, q.recs[0])
	}
}

// popDone pops the done prefix.
func (l *partitionLog) popDone() {
	n := 0
	for n < len(l.recs) && l.recs[n].state == stateDone {
		if r := l.recs[n]; r.ackedBy != 1 {
			l.rememberSettled(r.offset, r.ackedBy)
		}
		n++
	}
	if n == 0 {
		return
	}
	l.count[stateDone] -= n
	clear(l.recs[:n])
	l.recs = l.recs[n:]
	l.scan = max(0, l.scan-n)
	if len(l.recs) == 0 && cap(l.recs) > 1024 {
		l.recs = nil // let a burst's backing array go
	}
}

// maxSettledMemory bounds settledBy per partition.
const maxSettledMemory = 1 << 16

func (l *partitionLog) rememberSettled(offset int64, by uint32) {
	if l.settledBy == nil {
		l.settledBy = make(map[int64]uint32)
	}
	if len(l.settledFIFO) >= maxSettledMemory {
		old := l.settledFIFO[0]
		l.settledFIFO = l.settledFIFO[1:]
		delete(l.settledBy, old)
		l.forgotBelow = max(l.forgotBelow, old+1)
	}
	l.settledBy[offset] = by
	l.settledFIFO = append(l.settledFIFO, offset)
}

// settledVia reports which delivery settled a record popped from the log
// (0: none, dead-lettered or a duplicate), and whether that is known.
func (l *partitionLog) settledVia(offset int64) (uint32, bool) {
	if offset < l.forgotBelow {
		return 0, false
	}
	if by, ok := l.settledBy[offset]; ok {
		return by, true
	}
	return 1, true
}

// messageID is r's message ID: the one it carries, else
// "topic/partition/offset".
func (l *partitionLog) messageID(r *record) string {
	if r.messageID != "" {
		return r.messageID
	}
	return recordID(l.topic, l.partition, r.offset)
}

// index returns r's index in recs.
func (l *partitionLog) index(r *record) int { return int(r.seq - l.recs[0].seq) }

// lookup finds the record at offset. It reports done=true for an offset
// already behind the commit point (or skipped inside the fetched range), so
// acks are idempotent; known=false for an offset never fetched here.
func (l *partitionLog) lookup(offset int64) (r *record, done, known bool) {
	if l.next < 0 || offset >= l.next {
		return nil, false, false
	}
	// Offsets are consecutive unless the log has gaps (compaction,
	// transaction markers), so the record is usually at its distance from
	// the first.
	i := 0
	if len(l.recs) > 0 && offset >= l.recs[0].offset {
		if d := offset - l.recs[0].offset; d < int64(len(l.recs)) && l.recs[d].offset == offset {
			i = int(d)
		} else {
			i = sort.Search(len(l.recs), func(i int) bool { return l.recs[i].offset >= offset })
		}
	}
	if i < len(l.recs) && l.recs[i].offset == offset {
		return l.recs[i], l.recs[i].state == stateDone, true
	}
	if len(l.recs) == 0 || offset < l.recs[0].offset {
		return nil, true, true // before the oldest pending record: done long ago
	}
	return nil, false, false // a gap (compaction, transaction marker): never delivered
}

// committable returns the offset to commit, or -1 when nothing was fetched.
func (l *partitionLog) committable() int64 {
	if len(l.recs) > 0 {
		return l.recs[0].offset
	}
	return l.next
}

// pending is the number of records fetched and not done.
func (l *partitionLog) pending() int { return len(l.recs) - l.count[stateDone] }

// inFlight is the number of records holding credit.
func (l *partitionLog) inFlight() int { return l.count[stateClaiming] + l.count[stateInflight] }

// busy is the number of records being worked on (see recState.busy).
func (l *partitionLog) busy() int {
	return l.count[stateClaiming] + l.count[stateInflight] + l.count[stateDeadLetter] + l.count[stateConfirming]
}

// deliverable appends to out up to limit records that may be delivered now
// under ordering; the caller delivers all of them.
func (l *partitionLog) deliverable(ordering Ordering, limit int, out []*record) []*record {
	if limit <= 0 || l.revoking || l.gone || l.count[stateReady] == 0 {
		return out
	}
	switch ordering {
	case OrderingPartition:
		if l.inFlight() > 0 {
			break
		}
		if r := l.partitionHead(); r != nil && r.state == stateReady {
			out = append(out, r)
		}
	case OrderingKey:
		// Candidates are key heads; stale entries (no longer head, or no
		// longer ready) are dropped as they are met.
		taken, kept := 0, l.readyHeads[:0]
		for i, r := range l.readyHeads {
			if taken == limit {
				kept = append(kept, l.readyHeads[i:]...)
				break
			}
			if r.state == stateReady && !r.settled && l.headOf(r) {
				out = append(out, r)
				taken++
			}
		}
		clear(l.readyHeads[len(kept):])
		l.readyHeads = kept
	default: // OrderingNone
		taken := 0
		i := l.scan
		for ; i < len(l.recs) && taken < limit; i++ {
			if r := l.recs[i]; r.state == stateReady {
				out = append(out, r)
				taken++
			}
		}
		// Everything before i is not ready once the caller delivers out.
		l.scan = i
	}
	return out
}

// unpick undoes what deliverable did for a candidate r that was not handed
// to a stream after all: r stays ready and findable.
func (l *partitionLog) unpick(r *record) {
	if i := l.index(r); i < l.scan {
		l.scan = i
	}
	if l.keyed && !r.settled && l.headOf(r) {
		l.readyHeads = append(l.readyHeads, r)
	}
}

// partitionHead returns the first record that blocks PARTITION ordering:
// the first one not done and not confirming (processed records no longer
// block), or nil.
func (l *partitionLog) partitionHead() *record {
	for _, r := range l.recs {
		if r.state != stateConfirming && r.state != stateDone {
			return r
		}
	}
	return nil
}

// firstDeliverable reports, from the records themselves and not from the
// dispatch indexes, the first record that ordering allows to be delivered
// now, or nil. The stall detector compares it with what dispatch does: a
// record that stays deliverable while streams have credit means the indexes
// lost it. It is O(pending); call it rarely.
func (l *partitionLog) firstDeliverable(ordering Ordering) *record {
	if l.revoking || l.gone || l.count[stateReady] == 0 {
		return nil
	}
	switch ordering {
	case OrderingPartition:
		if l.inFlight() > 0 {
			return nil
		}
		if r := l.partitionHead(); r != nil && r.state == stateReady {
			return r
		}
		return nil
	case OrderingKey:
		blocked := map[string]bool{}
		for _, r := range l.recs {
			if r.state == stateDone || r.state == stateConfirming {
				continue
			}
			if r.state == stateReady && !blocked[string(r.key)] {
				return r
			}
			blocked[string(r.key)] = true
		}
		return nil
	default:
		for _, r := range l.recs {
			if r.state == stateReady {
				return r
			}
		}
		return nil
	}
}

// reindex rebuilds the dispatch indexes (scan position, key heads) from the
// records: the stall detector's repair.
func (l *partitionLog) reindex() {
	l.scan = 0
	if !l.keyed {
		return
	}
	l.readyHeads = l.readyHeads[:0]
	for _, q := range l.keys {
		if len(q.recs) > 0 && q.recs[0].state == stateReady {
			l.readyHeads = append(l.readyHeads, q.recs[0])
		}
	}
}
