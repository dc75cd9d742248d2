package consume

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// epochs numbers partition assignments on this gateway.
var epochs atomic.Uint64

func init() { epochs.Store(uint64(time.Now().UnixNano())) }

type tpKey struct {
	topic     string
	partition int32
}

// group is one consumer group on this gateway: the domain side (partition
// logs, streams, acks, rebalances, flow control) of one librdkafka
// consumer, which it reaches only through client. The consumer's poll loop
// and rebalance callback (kafka.go) call into it.
type group struct {
	m        *Manager
	settings Settings
	logger   *slog.Logger
	client   consumerClient
	declared bool      // from config: never leaves for idleness
	starter  string    // the identity whose Subscribe started it ("" when declared)
	joinedAt time.Time // when the group started joining: "latest" means records from here on
	stats    *counters // this group's, kept by the manager across restarts
	settle   settlement
	dlq      *deadLetters

	bytes atomic.Int64 // buffered bytes of this group's records not done

	done     chan struct{} // closed when the group has shut down
	stopOnce sync.Once
	stop     chan struct{} // closed to begin shutdown
	wg       sync.WaitGroup

	// closing is set once shutdown has committed; the revoke callback then
	// skips its own commit (a commit inside the callback during Close can
	// hang librdkafka).
	closing atomic.Bool

	resets chan *resetRequest // offset resets for the poll goroutine (reset.go)

	// mu guards everything below, and the records and streams reachable
	// from it. Lock order: Manager.mu before group.mu; never the reverse.
	mu       sync.Mutex
	parts    map[tpKey]*partitionLog
	order    []*partitionLog // parts in a stable order for fair dispatch
	rr       int             // dispatch starts at order[rr]
	streams  []*Stream
	srr      int // next stream to fill
	timers   *timerQueue
	draining bool      // no new deliveries
	idleAt   time.Time // when the last stream detached (zero while attached)
	scratch  []*record
	// rateArmed: a dispatch is scheduled for a stream's next delivery token.
	rateArmed bool
	// nextStallCheck is when watchStalls looks again.
	nextStallCheck time.Time
}

// newGroup makes the domain side of a group; the caller attaches its client.
func newGroup(m *Manager, s Settings, declared bool) *group {
	g := &group{
		m:        m,
		settings: s,
		logger:   m.logger.With("group", s.Group),
		declared: declared,
		joinedAt: m.now(),
		stats:    m.countersFor(s.Group),
		done:     make(chan struct{}),
		stop:     make(chan struct{}),
		parts:    make(map[tpKey]*partitionLog),
		idleAt:   m.now(),
		resets:   make(chan *resetRequest, 8),
	}
	g.timers = newTimerQueue(m.now, g.onTimer)
	if m.dd != nil {
		g.settle = newDedupeSettlement(g, m.dd)
	} else {
		g.settle = directSettlement{g}
	}
	g.dlq = newDeadLetters(g)
	return g
}

// startWorkers starts the goroutines the group owns besides its poll loop.
func (g *group) startWorkers() {
	g.settle.start()
	g.dlq.start()
}

func (g *group) account() byteAccount {
	return byteAccount{group: &g.bytes, gateway: &g.m.buffered}
}

// fetched is one record returned by the consumer, for add.
type fetched struct {
	topic     string
	partition int32
	r         *record
}

// add takes fetched records into their partition logs and dispatches.
func (g *group) add(batch []fetched) {
	if len(batch) == 0 {
		return
	}
	now := g.m.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	added := 0
	var skipped []*partitionLog
	for _, f := range batch {
		l := g.parts[tpKey{f.topic, f.partition}]
		if l == nil {
			continue // revoked meanwhile: the new owner fetches it
		}
		if l.append(f.r) {
			l.appendedAt = now
			added++
			if len(l.skip) > 0 && l.skipDone(f.r.offset) {
				// Acknowledged before the partition came here.
				l.finish(f.r)
				g.stats.skippedDone.Add(1)
				skipped = append(skipped, l)
			}
		}
	}
	g.storeLocked(skipped...)
	if added > 0 {
		g.dispatchLocked()
	}
}

// assigned starts new partition logs for partitions given to this member.
func (g *group) assigned(tps []TopicPartition) { g.assignedWith(tps, nil) }

// assignedWith is assigned with, per partition, the ranges of offsets done
// before (from its committed metadata): their records are done as they are
// fetched.
func (g *group) assignedWith(tps []TopicPartition, done map[tpKey][]offsetRange) {
	var frame Assignment
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, tp := range tps {
		k := tpKey{tp.Topic, tp.Partition}
		if _, ok := g.parts[k]; ok {
			continue
		}
		l := newPartitionLog(k.topic, k.partition, epochs.Add(1), g.settings.Ordering == OrderingKey, g.timers, g.account())
		l.appendedAt = g.m.now()
		l.skip = done[k]
		g.parts[k] = l
		g.order = append(g.order, l)
		frame.Assigned = append(frame.Assigned, tp)
	}
	g.logger.Info("partitions assigned", "partitions", frame.Assigned)
	g.metricsRebalance()
	for _, s := range g.streams {
		s.pushAssignment(frame)
	}
}

// revoked gives partitions up: it stops delivering them, tells the streams,
// waits a bounded grace for the records the apps hold (unless the
// assignment was lost, when another member may own them already), stores
// and commits the acked prefix, and forgets them: later acks of their
// records fail as stale, except, with dedupe, those of records whose claims
// are retained (see dedupeSettlement). The caller then unassigns them.
//
// The final offsets are stored (not only committed) while the partitions
// are still assigned: librdkafka commits the stored offset of every
// partition it unassigns, after any commit made here, and a stored offset
// older than the commit would move the group's committed offset back.
func (g *group) revoked(tps []TopicPartition, lost bool) {
	var frame Assignment
	g.mu.Lock()
	var logs []*partitionLog
	for _, tp := range tps {
		if l := g.parts[tpKey{tp.Topic, tp.Partition}]; l != nil {
			l.revoking = true
			logs = append(logs, l)
			frame.Revoked = append(frame.Revoked, tp)
		}
	}
	g.takeBackLocked(logs)
	for _, s := range g.streams {
		s.pushAssignment(frame)
	}
	g.mu.Unlock()

	// At shutdown the drain has waited already.
	if !lost && !g.closing.Load() {
		g.waitSettled(logs, g.m.cfg.RevokeGrace)
	}

	g.mu.Lock()
	var commit []PartitionOffset
	for _, l := range logs {
		if off := l.committable(); off >= 0 && !lost {
			commit = append(commit, l.commitPoint())
		}
		g.forgetLocked(l, true)
	}
	if len(commit) > 0 && !g.closing.Load() {
		if err := g.client.Store(commit); err != nil {
			g.logger.Warn("store the final offsets of revoked partitions", "err", err)
		}
	}
	g.dispatchLocked()
	g.mu.Unlock()

	switch {
	case lost:
		g.logger.Warn("partitions lost (not committed; their new owner redelivers unacked records)", "partitions", frame.Revoked)
	case len(commit) > 0 && !g.closing.Load():
		err := g.client.Commit(commit)
		g.metricsCommit(err)
		if err != nil && !isNoOffset(err) {
			g.logger.Warn("commit on revoke", "err", err)
		}
	}
	g.logger.Info("partitions revoked", "partitions", frame.Revoked, "lost", lost)
	g.metricsRebalance()
}

// takeBackLocked takes the deliveries of logs that streams have not sent
// yet out of their outboxes: their apps never saw them, so they are not in
// flight any more (a revoke need not wait for their acks), and with dedupe
// their claims are released at once, so that the partitions' next owner
// need not wait out the lease.
func (g *group) takeBackLocked(logs []*partitionLog) {
	for _, s := range g.streams {
		for _, d := range s.dropUnsent(logs) {
			l := g.parts[tpKey{d.Topic, d.Partition}]
			if l == nil {
				continue
			}
			r, _, _ := l.lookup(d.Offset)
			if r == nil || r.state != stateInflight || r.stream != s {
				continue
			}
			g.settle.abandoned(l, r)
			l.requeue(r, time.Time{}) // not deliverable: the partition is revoking
			if s.credited {           // never sent: its credit goes back
				s.creditRecords++
				s.creditBytes += int64(r.size)
			}
		}
	}
}

// forgetLocked drops a partition's state; its unfinished records are
// redelivered by whoever owns the partition next. retain keeps, with
// dedupe, the claims of the records an app holds (see dedupeSettlement);
// otherwise they are released.
func (g *group) forgetLocked(l *partitionLog, retain bool) {
	l.discard(func(r *record) { g.settle.forgetting(l, r, retain) })
	delete(g.parts, tpKey{l.topic, l.partition})
	for i, o := range g.order {
		if o == l {
			g.order = append(g.order[:i], g.order[i+1:]...)
			break
		}
	}
}

// waitSettled waits until none of logs has a record being worked on
// (delivered, or on its way to done), or grace passes. Acks arrive on other
// goroutines meanwhile.
func (g *group) waitSettled(logs []*partitionLog, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for {
		g.mu.Lock()
		n := 0
		for _, l := range logs {
			n += l.busy()
		}
		g.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			if n > 0 {
				g.logger.Warn("unacknowledged records left behind; they will be redelivered", "records", n)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storeLocked hands advanced commit points to the background commit. A
// revoking partition is still assigned, so its acks during the revoke grace
// are stored too.
func (g *group) storeLocked(logs ...*partitionLog) {
	var offs []PartitionOffset
	for _, l := range logs {
		if l == nil || l.gone {
			continue
		}
		if off := l.committable(); off > l.stored {
			l.stored = off
			offs = append(offs, l.commitPoint())
		}
	}
	if len(offs) == 0 {
		return
	}
	if err := g.client.Store(offs); err != nil {
		g.logger.Debug("store offsets", "err", err) // a partition revoked meanwhile
	}
}

// dispatchLocked hands deliverable records to streams with room.
func (g *group) dispatchLocked() {
	defer g.armRateLocked()
	if g.draining || len(g.streams) == 0 || len(g.order) == 0 {
		return
	}
	credit := 0
	for _, s := range g.streams {
		s.limited = s.rateLimited()
		credit += s.credit()
	}
	if credit == 0 {
		return
	}
	n := len(g.order)
	start := g.rr % n
	g.rr++
	for i := 0; i < n && credit > 0; i++ {
		l := g.order[(start+i)%n]
		g.scratch = l.deliverable(g.settings.Ordering, credit, g.scratch[:0])
		for j, r := range g.scratch {
			s := g.nextStream()
			if s == nil { // byte credit ran out before record credit
				for _, r := range g.scratch[j:] {
					l.unpick(r)
				}
				credit = 0
				break
			}
			g.settle.dispatch(s, l, r)
			credit--
		}
	}
	clear(g.scratch)
	for _, s := range g.streams {
		s.flush()
	}
}

// armRateLocked schedules a dispatch for when a stream held back by its
// delivery rate (with room under max_in_flight) has a token again.
func (g *group) armRateLocked() {
	if g.rateArmed {
		return
	}
	wait := time.Duration(-1)
	for _, s := range g.streams {
		if s.rateLimited() && s.holding < s.maxInFlight {
			if d := s.untilToken(); d > 0 && (wait < 0 || d < wait) {
				wait = d
			}
		}
	}
	if wait < 0 {
		return
	}
	g.rateArmed = true
	time.AfterFunc(wait, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.rateArmed = false
		g.dispatchLocked()
	})
}

// nextStream returns a stream with room, round robin, or nil when none
// has any left.
func (g *group) nextStream() *Stream {
	for range g.streams {
		s := g.streams[g.srr%len(g.streams)]
		g.srr++
		if s.credit() > 0 {
			return s
		}
	}
	return nil
}

// deliverLocked makes a delivery of r to s: a ready record's new delivery,
// or a claiming record's whose claim won.
func (g *group) deliverLocked(s *Stream, l *partitionLog, r *record) {
	now := g.m.now()
	l.deliver(r, s, now, now.Add(g.settings.AckTimeout))
	g.metricsDelivered(r.attempt)
	id := AckID{Topic: l.topic, Partition: l.partition, Offset: r.offset, Epoch: l.epoch, Delivery: r.delivery}
	var ackID string
	token := s.issue(r, id)
	if token == 0 {
		ackID = g.m.signer.format(g.settings.Group, id)
	}
	s.add(Delivery{
		Token:       token,
		AckID:       ackID,
		Topic:       l.topic,
		Partition:   l.partition,
		Offset:      r.offset,
		Key:         r.key,
		Value:       r.value,
		Headers:     r.headers,
		Timestamp:   r.timestamp,
		MessageID:   r.messageID,
		Attempt:     r.attempt,
		AckDeadline: r.deadline,
	})
}

// target is what one ack ID names: a record of a live log, or a claim
// retained for a forgotten one, or nothing left to do (done long ago).
type target struct {
	l        *partitionLog
	r        *record
	retained *retainedClaim
	id       AckID
}

// resolveLocked checks verified ack IDs against the group, and returns
// what each names. It fails, applying nothing, with ErrStaleAck when an ID
// names a partition not owned under the same assignment (and no retained
// claim), or a delivery that is not the record's latest.
func (g *group) resolveLocked(ids []AckID) ([]target, error) {
	out := make([]target, len(ids))
	for i, id := range ids {
		t, why := g.resolveOneLocked(id)
		if why != "" {
			return nil, fmt.Errorf("ack_ids[%d]: %s: %w", i, why, ErrStaleAck)
		}
		out[i] = t
	}
	return out, nil
}

// resolveOneLocked is resolveLocked for one ID; a stale one is refused
// with the reason.
func (g *group) resolveOneLocked(id AckID) (t target, stale string) {
	t.id = id
	l := g.parts[tpKey{id.Topic, id.Partition}]
	// A revoking partition still takes acks: that is what the revoke
	// grace waits for. Once forgotten, its log is gone.
	if l == nil || l.epoch != id.Epoch {
		if rc := g.settle.retained(id); rc != nil {
			t.retained = rc
			return t, ""
		}
		return t, "its partition is no longer owned by this gateway under the assignment it was delivered in"
	}
	r, done, known := l.lookup(id.Offset)
	switch {
	case !known:
		return t, "never delivered by this gateway"
	case r == nil && done:
		// Done and popped from the log: nothing to apply. Only the
		// delivery that settled it may hear so.
		if by, ok := l.settledVia(id.Offset); !ok || by != id.Delivery {
			return t, "the record was settled by another delivery"
		}
		return t, ""
	case r.delivery != id.Delivery:
		return t, fmt.Sprintf("superseded: the record was delivered again (delivery %d, not %d)", r.delivery, id.Delivery)
	}
	t.l, t.r = l, r
	return t, ""
}

// ack applies Acks and returns the confirmations to wait for (with dedupe:
// the done markers of every record named, a repeated Ack included). It
// fails with ErrStaleAck, applying nothing, when a record was redelivered,
// revoked, or is being dead-lettered.
func (g *group) ack(ids []AckID) ([]*confirmation, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ts, err := g.resolveLocked(ids)
	if err != nil {
		return nil, err
	}
	for i, t := range ts {
		if err := ackable(t); err != nil {
			return nil, fmt.Errorf("ack_ids[%d]: %w", i, err)
		}
	}
	var waits []*confirmation
	var touched []*partitionLog
	for _, t := range ts {
		if c := g.ackLocked(t, &touched); c != nil {
			waits = append(waits, c)
		}
	}
	g.storeLocked(touched...)
	g.metricsAcked(len(ids))
	g.dispatchLocked()
	return waits, nil
}

// ackable reports why an Ack of t cannot be applied, or nil.
func ackable(t target) error {
	switch r := t.r; {
	case r == nil:
	case r.state == stateDeadLetter:
		return fmt.Errorf("being dead-lettered: %w", ErrStaleAck)
	case r.state == stateConfirming || r.state == stateDone:
		if r.ackedBy != t.id.Delivery {
			return fmt.Errorf("the record was settled by another delivery: %w", ErrStaleAck)
		}
	}
	return nil
}

// ackLocked applies an Ack of t (ackable) and returns the confirmation to
// wait for, if any; a log whose committable offset may have moved is added
// to touched.
func (g *group) ackLocked(t target, touched *[]*partitionLog) *confirmation {
	switch {
	case t.retained != nil:
		return g.settle.ackRetained(t.id, t.retained)
	case t.r == nil:
	case t.r.state == stateConfirming:
		return t.r.confirm // a repeated Ack waits too
	case t.r.state == stateDone:
	default: // in flight, or ready or backing off after a timeout or Nack of this very delivery
		t.r.ackedBy = t.id.Delivery
		if n := len(*touched); n == 0 || (*touched)[n-1] != t.l {
			*touched = append(*touched, t.l)
		}
		return g.settle.processed(t.l, t.r)
	}
	return nil
}

// extend moves the ack deadlines of in-flight deliveries out to now+by,
// each at most consumer.max_lease after its delivery began, and returns
// the deadline each will have and the confirmations to wait for (with
// dedupe: the claims' leases, moved in Redis before the deadlines). A
// deadline already later stays. It fails, applying nothing, with
// ErrStaleAck when a delivery is not the latest of its record or no longer
// in flight (its deadline passed, it was nacked or is being dead-lettered,
// its partition was revoked), and with ErrAlreadyAcked for a record
// already acknowledged.
func (g *group) extend(ids []AckID, by time.Duration) ([]time.Time, []*confirmation, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ts, err := g.resolveLocked(ids)
	if err != nil {
		return nil, nil, err
	}
	for i, t := range ts {
		if err := extendable(t); err != nil {
			return nil, nil, fmt.Errorf("ack_ids[%d]: %w", i, err)
		}
	}
	deadlines := make([]time.Time, len(ts))
	var waits []*confirmation
	for i, t := range ts {
		var c *confirmation
		deadlines[i], c = g.extendLocked(t, by)
		if c != nil {
			waits = append(waits, c)
		}
	}
	g.stats.extended.Add(int64(len(ids)))
	return deadlines, waits, nil
}

// extendable reports why an Extend of t cannot be applied, or nil.
func extendable(t target) error {
	switch {
	case t.retained != nil:
		return fmt.Errorf("its partition was revoked; it can still be acknowledged until its ack deadline: %w", ErrStaleAck)
	case t.r == nil || t.r.state == stateConfirming || t.r.state == stateDone:
		return ErrAlreadyAcked
	case t.r.state == stateDeadLetter:
		return fmt.Errorf("being dead-lettered: %w", ErrStaleAck)
	case t.r.state != stateInflight:
		return fmt.Errorf("no longer in flight (its ack deadline passed, or it was nacked): %w", ErrStaleAck)
	}
	return nil
}

// extendLocked applies an Extend of t (extendable) and returns the
// deadline it will have and the confirmation to wait for, if any.
func (g *group) extendLocked(t target, by time.Duration) (time.Time, *confirmation) {
	r := t.r
	to := g.m.now().Add(by)
	if limit := r.delivered.Add(g.m.cfg.MaxLease); to.After(limit) {
		to = limit
	}
	if !to.After(r.deadline) {
		return r.deadline, nil
	}
	return to, g.settle.extend(t.l, r, to)
}

// NackOptions say what to do with nacked records.
type NackOptions struct {
	RetryAfter time.Duration
	DeadLetter bool
	Reason     string
}

func (g *group) nack(ids []AckID, opts NackOptions) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	ts, err := g.resolveLocked(ids)
	if err != nil {
		return err
	}
	for i, t := range ts {
		if err := nackable(t); err != nil {
			return fmt.Errorf("ack_ids[%d]: %w", i, err)
		}
	}
	now := g.m.now()
	for _, t := range ts {
		g.nackLocked(t, opts, now)
	}
	g.metricsNacked(len(ids))
	g.dispatchLocked()
	return nil
}

// nackable reports why a Nack of t cannot be applied, or nil.
func nackable(t target) error {
	switch {
	case t.retained != nil && t.retained.confirm != nil,
		t.retained == nil && t.r == nil, // done long ago
		t.r != nil && (t.r.state == stateConfirming || t.r.state == stateDone):
		return ErrAlreadyAcked
	}
	return nil
}

// nackLocked applies a Nack of t (nackable).
func (g *group) nackLocked(t target, opts NackOptions, now time.Time) {
	if t.retained != nil {
		g.settle.nackRetained(t.id, t.retained)
		return
	}
	l, r := t.l, t.r
	switch {
	case r.state != stateInflight:
		// Already back (a timeout or an earlier Nack of this delivery),
		// or being dead-lettered: a repeated Nack changes nothing.
	case opts.DeadLetter || int(r.attempt) >= g.settings.MaxAttempts:
		reason := opts.Reason
		if reason == "" {
			reason = fmt.Sprintf("nacked on attempt %d", r.attempt)
		}
		g.dlq.add(l, r, reason)
	default:
		g.settle.abandoned(l, r)
		var at time.Time
		if opts.RetryAfter > 0 {
			at = now.Add(opts.RetryAfter)
		}
		l.requeue(r, at)
	}
}

// onTimer handles ack deadlines and retry times that are due.
func (g *group) onTimer() {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.m.now()
	for {
		e, ok := g.timers.popDue(now)
		if !ok {
			break
		}
		r, l := e.r, e.l
		if l.gone {
			continue
		}
		switch r.state {
		case stateInflight:
			g.metricsTimedOut()
			if int(r.attempt) >= g.settings.MaxAttempts {
				g.dlq.add(l, r, fmt.Sprintf("not acknowledged within %v, %d times", g.settings.AckTimeout, r.attempt))
				continue
			}
			g.settle.abandoned(l, r)
			l.requeue(r, time.Time{})
		case stateBackoff:
			l.set(r, stateReady)
		}
	}
	g.timers.rearm(now)
	g.dispatchLocked()
}

// attach adds a stream and sends it the current assignment.
func (g *group) attach(s *Stream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var frame Assignment
	for _, l := range g.order {
		if !l.revoking {
			frame.Assigned = append(frame.Assigned, TopicPartition{Topic: l.topic, Partition: l.partition})
		}
	}
	g.streams = append(g.streams, s)
	g.idleAt = time.Time{}
	s.pushAssignment(frame)
	g.dispatchLocked()
}

// detach removes a stream. What happens to the records it holds is the
// settlement's choice: without dedupe they go to the other streams (or wait
// for the next one) at once; with dedupe they stay in flight under their
// claims until their ack deadlines, since the app behind the stream may
// still be working on them.
func (g *group) detach(s *Stream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, o := range g.streams {
		if o == s {
			g.streams = append(g.streams[:i], g.streams[i+1:]...)
			break
		}
	}
	for _, l := range g.order {
		if l.inFlight() == 0 {
			continue
		}
		for _, r := range l.recs {
			if r.stream == s && r.state.holds() {
				g.settle.streamGone(l, r)
			}
		}
	}
	if len(g.streams) == 0 {
		g.idleAt = g.m.now()
	}
	g.dispatchLocked()
}

// idleSince reports since when no stream is attached (zero when one is).
func (g *group) idleSince() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.idleAt
}

func (g *group) beginShutdown() { g.stopOnce.Do(func() { close(g.stop) }) }

// drainAndCommit is the first half of shutdown, on the poll goroutine: stop
// delivering, let in-flight acks arrive (bounded), store and commit the
// acked prefix synchronously, end the streams, and forget every partition,
// so that the consumer's close (which revokes them) changes nothing. With
// dedupe, claims of records no app holds are released, and the settlement's
// queue is flushed before its workers stop.
func (g *group) drainAndCommit() int {
	g.mu.Lock()
	g.draining = true
	logs := append([]*partitionLog(nil), g.order...)
	g.mu.Unlock()

	g.waitSettled(logs, g.m.cfg.DrainTimeout)

	g.mu.Lock()
	var commit []PartitionOffset
	for _, l := range logs {
		if off := l.committable(); off >= 0 {
			commit = append(commit, l.commitPoint())
		}
	}
	if len(commit) > 0 {
		if err := g.client.Store(commit); err != nil {
			g.logger.Debug("store the final offsets", "err", err)
		}
	}
	for _, s := range g.streams {
		s.end()
	}
	g.takeBackLocked(logs)
	for _, l := range logs {
		l.revoking = true
		g.forgetLocked(l, true)
	}
	g.timers.stop()
	g.mu.Unlock()
	if len(commit) > 0 {
		err := g.client.Commit(commit)
		g.metricsCommit(err)
		if err != nil && !isNoOffset(err) {
			g.logger.Warn("final commit", "err", err)
		}
	}
	g.closing.Store(true)
	g.dlq.stop()
	g.settle.stop()
	return len(commit)
}

// errors of the group, mapped to gRPC codes by the adapter.
var (
	// ErrStaleAck means the ack ID names no delivery this gateway can
	// settle now: its partition is no longer owned under the assignment it
	// was delivered in, the record was delivered again since, its dedupe
	// claim was taken by another delivery, or the ID is not one of this
	// gateway process's. Nothing was applied; the record is (or was)
	// redelivered.
	ErrStaleAck = errors.New("not a live delivery on this gateway; the record is redelivered by its owner")
	// ErrAlreadyAcked means a Nack named a record that is already done.
	ErrAlreadyAcked = errors.New("record already acknowledged")
	// ErrClosed means the group or the gateway is shutting down.
	ErrClosed = errors.New("consumer shutting down")
	// ErrConflict means a Subscribe asked for settings other than those
	// the group runs with on this gateway.
	ErrConflict = errors.New("group runs with other settings on this gateway")
	// ErrConfirmPending means an Ack was applied but its dedupe done markers
	// could not be written yet (Redis slow or down); repeat the Ack.
	ErrConfirmPending = errors.New("ack applied, but the dedupe store has not confirmed it yet; repeat the ack")
	// ErrExtendPending: the dedupe store did not move a claim's lease, so
	// the record's ack deadline stands as it was; the Extend may be repeated.
	ErrExtendPending = errors.New("the dedupe store did not confirm the extension; the ack deadline stands; repeat the extension")
	// ErrTooManyGroups means a Subscribe would start a group beyond
	// consumer.max_groups or consumer.max_groups_per_identity.
	ErrTooManyGroups = errors.New("too many consumer groups")
	// ErrUnknownTopic means a subscribed topic does not exist.
	ErrUnknownTopic = kafkaclient.ErrUnknownTopic
)
