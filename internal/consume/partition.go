package consume

import (
	"sort"
	"time"
)

// recState is where a fetched record stands.
type recState uint8

const (
	stateReady      recState = iota // waiting to be delivered (first time or again)
	stateClaiming                   // chosen for a stream; its dedupe claim is being taken
	stateInflight                   // delivered, waiting for Ack or Nack
	stateBackoff                    // nacked with retry_after, or held; ready again at deadline
	stateDeadLetter                 // being written to the dead-letter topic
	stateConfirming                 // processed; its dedupe done marker is being written
	stateDone                       // acknowledged, dead-lettered or dropped: counts for the commit rule
)

// record is one fetched record and its delivery state. Guarded by the
// group's mutex.
type record struct {
	offset    int64
	seq       uint64 // position in the partition log, for index arithmetic
	key       []byte
	value     []byte
	headers   []Header
	timestamp time.Time
	messageID string
	size      int
	fetched   int64 // unix nanoseconds, when the poll returned it

	state   recState
	attempt int32   // deliveries so far
	stream  *Stream // holder while stateClaiming or stateInflight
	// unclaimed marks a delivery made without a dedupe claim (Redis down,
	// on_redis_failure: deliver): its done marker is written best effort.
	unclaimed bool
	// delivered is set on the first delivery and stays set when a closing
	// stream gives the attempt back, so acks of the record stay valid.
	delivered bool
	deadline  time.Time // ack deadline (inflight) or retry time (backoff)
	heapPos   int       // 1 + index in the group's timer heap; 0 when not scheduled
	settled   bool      // left its key queue (done or confirming)
	dedupeID  string    // "topic/partition/offset", built on first need
	// confirmed is closed when the record's done marker is written
	// (dedupe); Acks wait on it.
	confirmed chan struct{}
}

// partitionLog holds the records of one owned partition that are fetched
// but not yet done, in offset order, and applies the commit rule: the
// committable offset is the offset of the first record that is not done, or
// the offset after the last fetched record when all are done. Records
// become done in any order; the committable offset moves only over the
// contiguous done prefix, so it never passes a record that is not done.
type partitionLog struct {
	topic     string
	partition int32
	epoch     uint64

	recs    []*record // pending records, offset order; recs[0] is the oldest not yet popped
	nextSeq uint64
	scan    int   // index from which ready records may exist (below it none are ready)
	next    int64 // offset after the last appended record; -1 until the first record
	stored  int64 // last committable offset handed to the commit machinery; -1 none

	inflight   int // records in stateClaiming or stateInflight
	confirming int // records in stateConfirming
	bytes      int // sizes of pending records not yet done
	revoking   bool
	paused     bool

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

func newPartitionLog(topic string, partition int32, epoch uint64, keyed bool) *partitionLog {
	l := &partitionLog{topic: topic, partition: partition, epoch: epoch, next: -1, stored: -1, keyed: keyed}
	if keyed {
		l.keys = make(map[string]*keyQueue)
	}
	return l
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
	for i, o := range q.recs {
		if o == r {
			q.recs = append(q.recs[:i], q.recs[i+1:]...)
			break
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

// append adds a fetched record. Offsets must increase; a record at or below
// the last one (a re-fetch after a seek) is ignored and reported false.
func (l *partitionLog) append(r *record) bool {
	if l.next >= 0 && r.offset < l.next {
		return false
	}
	r.seq = l.nextSeq
	l.nextSeq++
	l.recs = append(l.recs, r)
	l.next = r.offset + 1
	l.bytes += r.size
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

// index returns r's index in recs.
func (l *partitionLog) index(r *record) int { return int(r.seq - l.recs[0].seq) }

// lookup finds the record at offset. It reports done=true for an offset
// already behind the commit point (or skipped inside the fetched range), so
// acks are idempotent; known=false for an offset never fetched here.
func (l *partitionLog) lookup(offset int64) (r *record, done, known bool) {
	if l.next < 0 || offset >= l.next {
		return nil, false, false
	}
	i := sort.Search(len(l.recs), func(i int) bool { return l.recs[i].offset >= offset })
	if i < len(l.recs) && l.recs[i].offset == offset {
		return l.recs[i], l.recs[i].state == stateDone, true
	}
	if len(l.recs) == 0 || offset < l.recs[0].offset {
		return nil, true, true // before the oldest pending record: done long ago
	}
	return nil, false, false // a gap (compaction, transaction marker): never delivered
}

// markReady makes r deliverable again.
func (l *partitionLog) markReady(r *record) {
	r.state = stateReady
	r.stream = nil
	if i := l.index(r); i < l.scan {
		l.scan = i
	}
	if l.keyed && l.headOf(r) {
		l.readyHeads = append(l.readyHeads, r)
	}
}

// finish marks r done, releases its payload, and pops the done prefix.
func (l *partitionLog) finish(r *record) {
	if r.state == stateDone {
		return
	}
	l.settle(r)
	r.state = stateDone
	r.stream = nil
	r.key, r.value, r.headers = nil, nil, nil
	l.bytes -= r.size
	n := 0
	for n < len(l.recs) && l.recs[n].state == stateDone {
		n++
	}
	if n == 0 {
		return
	}
	clear(l.recs[:n])
	l.recs = l.recs[n:]
	l.scan = max(0, l.scan-n)
	if len(l.recs) == 0 && cap(l.recs) > 1024 {
		l.recs = nil // let a burst's backing array go
	}
}

// committable returns the offset to commit, or -1 when nothing was fetched.
func (l *partitionLog) committable() int64 {
	if len(l.recs) > 0 {
		return l.recs[0].offset
	}
	return l.next
}

// pendingCount is the number of records fetched and not done.
func (l *partitionLog) pendingCount() int { return len(l.recs) }

// deliverable appends to out up to limit records that may be delivered now
// under ordering; the caller delivers all of them.
func (l *partitionLog) deliverable(ordering Ordering, limit int, out []*record) []*record {
	if limit <= 0 || l.revoking {
		return out
	}
	switch ordering {
	case OrderingPartition:
		if l.inflight > 0 {
			break
		}
		for _, r := range l.recs {
			if r.state == stateConfirming {
				continue // processed: only its done marker is pending
			}
			if r.state == stateReady {
				out = append(out, r)
			}
			break
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
