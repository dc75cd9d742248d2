package consume

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// epochs numbers partition assignments. Seeded from the clock so that ack
// IDs issued before a gateway restart never match an assignment after it.
var epochs atomic.Uint64

func init() { epochs.Store(uint64(time.Now().UnixNano())) }

// pollBatch bounds the records taken from librdkafka per lock acquisition.
const pollBatch = 512

type tpKey struct {
	topic     string
	partition int32
}

// group is one consumer group on this gateway: one librdkafka consumer,
// polled continuously by its own goroutine, shared by every stream attached
// to the group.
type group struct {
	m        *Manager
	settings Settings
	logger   *slog.Logger
	consumer *kafka.Consumer
	declared bool      // from config: never leaves for idleness
	joinedAt time.Time // when the group started joining: "latest" means records from here on
	stats    *counters // this group's, kept by the manager across restarts

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
	timers   timerHeap
	timer    *time.Timer
	draining bool      // no new deliveries
	idleAt   time.Time // when the last stream detached (zero while attached)
	scratch  []*record
	dd       *groupDedupe // nil without dedupe
	// rateArmed: a dispatch is scheduled for a stream's next delivery token.
	rateArmed bool
}

// groupDedupe is a group's queue of dedupe work for its worker. The slices
// are guarded by group.mu.
type groupDedupe struct {
	claims   []pendingClaim
	confirms []pendingConfirm
	releases []dedupe.Key
	retained map[AckID]*retainedClaim
	wake     chan struct{}
	quit     chan struct{}
	degraded atomic.Bool
}

func newGroup(m *Manager, s Settings, declared bool) (*group, error) {
	cm := m.cfg.configMap(m.kafka, s.Group, s.StartPosition)
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create consumer for group %q: %w", s.Group, err)
	}
	g := &group{
		m:        m,
		settings: s,
		logger:   m.logger.With("group", s.Group),
		consumer: c,
		declared: declared,
		joinedAt: m.now(),
		stats:    m.countersFor(s.Group),
		done:     make(chan struct{}),
		stop:     make(chan struct{}),
		parts:    make(map[tpKey]*partitionLog),
		idleAt:   m.now(),
		resets:   make(chan *resetRequest, 8),
	}
	g.timer = time.AfterFunc(time.Hour, g.onTimer)
	g.timer.Stop()
	if m.dd != nil {
		g.dd = &groupDedupe{retained: make(map[AckID]*retainedClaim), wake: make(chan struct{}, 1), quit: make(chan struct{})}
	}
	if err := c.SubscribeTopics(s.Topics, g.onRebalance); err != nil {
		c.Close()
		return nil, fmt.Errorf("subscribe group %q: %w", s.Group, err)
	}
	g.wg.Go(func() { kafkaclient.RouteLogsFunc(g.logger.With("component", "librdkafka"), c.Logs(), g.onLog) })
	if g.dd != nil {
		for range dedupeWorkers {
			g.wg.Go(g.dedupeLoop)
		}
	}
	return g, nil
}

// run polls until shutdown begins, then drains, commits and closes.
func (g *group) run() {
	defer close(g.done)
	g.logger.Info("consumer group started", "topics", g.settings.Topics, "ordering", g.settings.Ordering.String())
	var batch []*kafka.Message
	for {
		select {
		case <-g.stop:
			g.shutdown()
			return
		default:
		}
		batch = batch[:0]
		ev := g.consumer.Poll(100)
		for ev != nil {
			switch e := ev.(type) {
			case *kafka.Message:
				batch = append(batch, e)
			case kafka.Error:
				g.onError(e)
			case kafka.OffsetsCommitted:
				g.metricsCommit(e.Error, e.Offsets)
			case *kafka.Stats:
				if g.m.onStats != nil {
					g.m.onStats(g.settings.Group, e.String())
				}
			}
			if len(batch) >= pollBatch {
				break
			}
			ev = g.consumer.Poll(0)
		}
		g.add(batch)
		g.balanceFlow()
		g.serveResets()
	}
}

func (g *group) onError(e kafka.Error) {
	switch {
	case e.IsFatal():
		g.logger.Error("consumer fatal error; the group stops", "err", e)
		g.beginShutdown()
	case e.Code() == kafka.ErrAllBrokersDown || e.Code() == kafka.ErrTransport:
		g.logger.Warn("consumer lost its brokers", "err", e)
	default:
		g.logger.Warn("consumer error", "err", e)
	}
}

// add takes fetched records into their partition logs and dispatches.
func (g *group) add(msgs []*kafka.Message) {
	if len(msgs) == 0 {
		return
	}
	header, idHeader := g.m.messageIDHeader, ""
	if g.m.dd != nil {
		idHeader = g.m.dd.IDHeader
	}
	fetched := g.m.now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	added := 0
	for _, msg := range msgs {
		tp := msg.TopicPartition
		l := g.parts[tpKey{*tp.Topic, tp.Partition}]
		if l == nil || msg.TopicPartition.Error != nil {
			continue // revoked meanwhile: the new owner fetches it
		}
		r := &record{
			offset:    int64(tp.Offset),
			key:       msg.Key,
			value:     msg.Value,
			timestamp: msg.Timestamp,
			size:      len(msg.Key) + len(msg.Value),
			fetched:   fetched,
		}
		var altID string
		for _, h := range msg.Headers {
			r.headers = append(r.headers, Header{Key: h.Key, Value: h.Value})
			r.size += len(h.Key) + len(h.Value)
			switch {
			case h.Key == header && r.messageID == "":
				r.messageID = string(h.Value)
			case h.Key == idHeader && idHeader != "" && altID == "":
				altID = string(h.Value)
			}
		}
		if r.messageID == "" {
			r.messageID = altID
		}
		if r.messageID == "" {
			r.messageID = messageIDFallback(l.topic, l.partition, r.offset)
		}
		if l.append(r) {
			g.m.buffered.Add(int64(r.size))
			added++
		}
	}
	if added > 0 {
		g.dispatchLocked()
	}
}

// balanceFlow pauses partitions holding too many unfinished records (or
// when the gateway's buffer is over its bound) and resumes them once they
// have drained to half. Polling never stops, so a slow app never makes the
// consumer miss max.poll.interval.ms.
func (g *group) balanceFlow() {
	maxRecs := g.m.cfg.MaxBufferedRecords
	overBytes := g.m.buffered.Load() > int64(g.m.cfg.MaxBufferedBytes)
	var pause, resume []kafka.TopicPartition
	g.mu.Lock()
	for _, l := range g.order {
		n := l.pendingCount()
		switch {
		case !l.paused && (n >= maxRecs || overBytes && n > 0):
			l.paused = true
			pause = append(pause, kafka.TopicPartition{Topic: &l.topic, Partition: l.partition})
		case l.paused && n <= maxRecs/2 && !overBytes:
			l.paused = false
			resume = append(resume, kafka.TopicPartition{Topic: &l.topic, Partition: l.partition})
		}
	}
	g.mu.Unlock()
	if len(pause) > 0 {
		if err := g.consumer.Pause(pause); err != nil {
			g.logger.Warn("pause partitions", "err", err)
		}
	}
	if len(resume) > 0 {
		if err := g.consumer.Resume(resume); err != nil {
			g.logger.Warn("resume partitions", "err", err)
		}
	}
}

// onRebalance runs inside Poll, on the poll goroutine.
func (g *group) onRebalance(c *kafka.Consumer, ev kafka.Event) error {
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		g.assign(e.Partitions)
		if g.settings.StartPosition == StartLatest {
			g.pinLatest(c, e.Partitions)
		}
		if err := c.IncrementalAssign(e.Partitions); err != nil {
			g.logger.Error("incremental assign", "err", err)
		}
	case kafka.RevokedPartitions:
		g.revoke(e.Partitions, c.AssignmentLost())
		if err := c.IncrementalUnassign(e.Partitions); err != nil {
			g.logger.Error("incremental unassign", "err", err)
		}
	}
	return nil
}

// latestMargin is how far before the group's join "latest" starts, to
// allow for producer clocks behind the gateway's: a few records from just
// before the join are delivered rather than any record after it lost.
const latestMargin = 10 * time.Second

// pinLatest fixes where a START_POSITION_LATEST group starts in newly
// assigned partitions that have no committed offset, and commits it at
// once. librdkafka would otherwise resolve "latest" lazily after the
// assignment (skipping records written meanwhile), and again after a crash
// before the first commit (skipping the records the group was holding).
// The start is the first record written since the group joined (minus
// latestMargin), or the end of the partition when there is none.
func (g *group) pinLatest(c *kafka.Consumer, tps []kafka.TopicPartition) {
	committed, err := c.Committed(tps, 10_000)
	if err != nil {
		g.logger.Warn("read committed offsets to pin the start position; librdkafka resolves latest itself", "err", err)
		return
	}
	var need []kafka.TopicPartition
	for _, tp := range committed {
		if tp.Offset < 0 {
			tp.Offset = kafka.Offset(g.joinedAt.Add(-latestMargin).UnixMilli())
			need = append(need, tp)
		}
	}
	if len(need) == 0 {
		return
	}
	starts, err := c.OffsetsForTimes(need, 10_000)
	if err != nil {
		g.logger.Warn("look up start offsets by time; librdkafka resolves latest itself", "err", err)
		return
	}
	pinned := make(map[tpKey]kafka.Offset, len(starts))
	for _, tp := range starts {
		off := tp.Offset
		if off < 0 { // nothing written since the join: start at the end
			_, high, err := c.QueryWatermarkOffsets(*tp.Topic, tp.Partition, 10_000)
			if err != nil {
				g.logger.Warn("query the end of a partition; librdkafka resolves latest itself", "topic", *tp.Topic, "partition", tp.Partition, "err", err)
				continue
			}
			off = kafka.Offset(high)
		}
		pinned[tpKey{*tp.Topic, tp.Partition}] = off
	}
	var commit []kafka.TopicPartition
	for i, tp := range tps {
		if off, ok := pinned[tpKey{*tp.Topic, tp.Partition}]; ok {
			tps[i].Offset = off
			commit = append(commit, tps[i])
		}
	}
	_, err = c.CommitOffsets(commit)
	g.metricsCommit(err, nil)
	if err != nil {
		g.logger.Warn("commit the pinned start offsets", "err", err)
	}
	g.logger.Info("start position pinned (latest, no committed offset)", "partitions", len(commit))
}

func (g *group) assign(tps []kafka.TopicPartition) {
	var frame Assignment
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, tp := range tps {
		k := tpKey{*tp.Topic, tp.Partition}
		if _, ok := g.parts[k]; ok {
			continue
		}
		l := newPartitionLog(k.topic, k.partition, epochs.Add(1), g.settings.Ordering == OrderingKey)
		g.parts[k] = l
		g.order = append(g.order, l)
		frame.Assigned = append(frame.Assigned, TopicPartition{Topic: k.topic, Partition: k.partition})
	}
	g.logger.Info("partitions assigned", "partitions", frame.Assigned)
	g.metricsRebalance()
	for _, s := range g.streams {
		s.pushAssignment(frame)
	}
}

// revoke stops delivering the partitions, tells the streams, waits a
// bounded grace for in-flight acks, commits the acked prefix (unless the
// assignment was lost, when another member may already own them), and
// forgets the partitions: later acks of their records fail as stale.
func (g *group) revoke(tps []kafka.TopicPartition, lost bool) {
	var frame Assignment
	g.mu.Lock()
	var logs []*partitionLog
	for _, tp := range tps {
		if l := g.parts[tpKey{*tp.Topic, tp.Partition}]; l != nil {
			l.revoking = true
			logs = append(logs, l)
			frame.Revoked = append(frame.Revoked, TopicPartition{Topic: l.topic, Partition: l.partition})
		}
	}
	for _, s := range g.streams {
		for _, d := range s.dropUnsent(logs) {
			g.undeliverLocked(s, d)
		}
		s.pushAssignment(frame)
	}
	g.mu.Unlock()

	// At shutdown the drain has waited already.
	if !lost && !g.closing.Load() {
		g.waitInflight(logs, g.m.cfg.RevokeGrace)
	}

	g.mu.Lock()
	if g.dd != nil {
		g.pruneRetainedLocked()
	}
	var commit []kafka.TopicPartition
	for _, l := range logs {
		if off := l.committable(); off >= 0 && off != l.stored {
			commit = append(commit, kafka.TopicPartition{Topic: &l.topic, Partition: l.partition, Offset: kafka.Offset(off)})
		}
		g.forgetLocked(l)
	}
	g.mu.Unlock()

	switch {
	case lost:
		g.logger.Warn("partitions lost (not committed; their new owner redelivers unacked records)", "partitions", frame.Revoked)
	case len(commit) > 0 && !g.closing.Load():
		_, err := g.consumer.CommitOffsets(commit)
		g.metricsCommit(err, nil)
		if err != nil && !isNoOffset(err) {
			g.logger.Warn("commit on revoke", "err", err)
		}
	}
	g.logger.Info("partitions revoked", "partitions", frame.Revoked, "lost", lost)
	g.metricsRebalance()
}

// undeliverLocked takes back a delivery of a revoking partition that its
// stream never sent: the record is no longer in flight (the revoke need not
// wait for its ack), and its claim is released at once, so the partition's
// new owner need not wait out the lease.
func (g *group) undeliverLocked(s *Stream, d Delivery) {
	l := g.parts[tpKey{d.Topic, d.Partition}]
	if l == nil {
		return
	}
	r, _, _ := l.lookup(d.Offset)
	if r == nil || r.state != stateInflight || r.stream != s {
		return
	}
	g.releaseLocked(l, r)
	g.releaseClaimLocked(l, r)
	r.state = stateReady // not deliverable: the partition is revoking
}

// forgetLocked drops a partition's state; its unfinished records are
// redelivered by whoever owns the partition next. With dedupe, the claims
// of records the app holds unacknowledged stay in Redis (the new owner
// must not deliver them while this app may still process them) and are
// retained here, so that their late Ack or Nack still settles them.
func (g *group) forgetLocked(l *partitionLog) {
	for _, r := range l.recs {
		if g.dd != nil && r.state == stateInflight && !r.unclaimed {
			g.retainLocked(l, r)
		}
		if (r.state == stateInflight || r.state == stateClaiming) && r.stream != nil {
			r.stream.inflight--
		}
		if r.state != stateDone {
			g.m.buffered.Add(-int64(r.size))
		}
		g.unscheduleLocked(r)
		r.state = stateDone
		r.stream = nil
	}
	l.recs = nil
	delete(g.parts, tpKey{l.topic, l.partition})
	for i, o := range g.order {
		if o == l {
			g.order = append(g.order[:i], g.order[i+1:]...)
			break
		}
	}
	g.dispatchLocked()
}

// waitInflight waits until none of logs has a record in flight, or grace
// passes. Acks arrive on other goroutines meanwhile.
func (g *group) waitInflight(logs []*partitionLog, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for {
		g.mu.Lock()
		n := 0
		for _, l := range logs {
			n += l.inflight + l.confirming
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

// storeLocked hands advanced commit points to librdkafka, which commits
// them every commit_interval.
func (g *group) storeLocked(logs []*partitionLog) {
	var tps []kafka.TopicPartition
	for _, l := range logs {
		if l == nil {
			continue // a retained claim's: not this group's partition now
		}
		if off := l.committable(); off > l.stored && !l.revoking {
			l.stored = off
			tps = append(tps, kafka.TopicPartition{Topic: &l.topic, Partition: l.partition, Offset: kafka.Offset(off)})
		}
	}
	if len(tps) == 0 {
		return
	}
	if _, err := g.consumer.StoreOffsets(tps); err != nil {
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
		credit += s.credit()
	}
	if credit == 0 {
		return
	}
	now := g.m.now()
	n := len(g.order)
	start := g.rr % n
	g.rr++
	for i := 0; i < n && credit > 0; i++ {
		l := g.order[(start+i)%n]
		g.scratch = l.deliverable(g.settings.Ordering, credit, g.scratch[:0])
		for _, r := range g.scratch {
			s := g.nextStream()
			if g.dd != nil {
				g.claimLocked(s, l, r)
			} else {
				g.deliverLocked(s, l, r, now)
			}
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
		if s.rateLimited() && s.inflight < s.maxInFlight {
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

// nextStream returns a stream with room, round robin. The caller knows one
// exists.
func (g *group) nextStream() *Stream {
	for {
		s := g.streams[g.srr%len(g.streams)]
		g.srr++
		if s.credit() > 0 {
			return s
		}
	}
}

func (g *group) deliverLocked(s *Stream, l *partitionLog, r *record, now time.Time) {
	r.state = stateInflight
	r.attempt++
	r.delivered = true
	g.metricsDelivered(r.attempt)
	r.stream = s
	r.deadline = now.Add(g.settings.AckTimeout)
	l.inflight++
	g.scheduleLocked(r, l)
	s.add(Delivery{
		AckID:       AckID{Topic: l.topic, Partition: l.partition, Offset: r.offset, Epoch: l.epoch}.String(),
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

// resolve checks ack IDs against the group and returns their records. It
// fails, applying nothing, on an ID never issued (INVALID_ARGUMENT) or one
// whose partition is no longer owned under the same assignment
// (ErrStaleAck), unless the record's claim is retained (see retainLocked):
// those IDs are listed by index in retained, with no record or log. A nil
// record with a log means "already done".
func (g *group) resolveLocked(ids []AckID) (recs []*record, logs []*partitionLog, retained []int, err error) {
	recs = make([]*record, len(ids))
	logs = make([]*partitionLog, len(ids))
	for i, id := range ids {
		l := g.parts[tpKey{id.Topic, id.Partition}]
		// A revoking partition still takes acks: that is what the revoke
		// grace waits for. Once released, its log is gone.
		if l == nil || l.epoch != id.Epoch {
			if g.retainedLocked(id) != nil {
				retained = append(retained, i)
				continue
			}
			return nil, nil, nil, fmt.Errorf("ack_ids[%d] %q: %w", i, id.String(), ErrStaleAck)
		}
		r, done, known := l.lookup(id.Offset)
		if !known || r != nil && !done && !r.delivered {
			return nil, nil, nil, invalid.Field(fmt.Sprintf("ack_ids[%d]", i), "%q was never delivered by this gateway", id.String())
		}
		recs[i], logs[i] = r, l
	}
	return recs, logs, retained, nil
}

// ack marks records done and advances the commit points. With dedupe, the
// records become confirming instead, and ack returns what to wait for:
// the done markers of every record named (a repeated Ack waits too).
func (g *group) ack(ids []AckID) ([]<-chan struct{}, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	recs, logs, retained, err := g.resolveLocked(ids)
	if err != nil {
		return nil, err
	}
	waits := g.confirmRetainedLocked(ids, retained)
	for i, r := range recs {
		if r == nil || r.state == stateDone || r.state == stateDeadLetter {
			continue
		}
		if r.state != stateConfirming {
			if g.dd != nil {
				g.confirmLocked(logs[i], r)
			} else {
				g.finishLocked(logs[i], r)
			}
		}
		if r.state == stateConfirming && r.confirmed != nil {
			waits = append(waits, r.confirmed)
		}
	}
	g.storeLocked(logs)
	g.metricsAcked(len(ids))
	g.dispatchLocked()
	return waits, nil
}

// Nack options.
type NackOptions struct {
	RetryAfter time.Duration
	DeadLetter bool
	Reason     string
}

func (g *group) nack(ids []AckID, opts NackOptions) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	recs, logs, retained, err := g.resolveLocked(ids)
	if err != nil {
		return err
	}
	for i, r := range recs {
		if slices.Contains(retained, i) {
			if g.dd.retained[ids[i]].confirmed != nil {
				return fmt.Errorf("ack_ids[%d] %q: %w", i, ids[i].String(), ErrAlreadyAcked)
			}
			continue
		}
		if r == nil || r.state == stateDone || r.state == stateConfirming {
			return fmt.Errorf("ack_ids[%d] %q: %w", i, ids[i].String(), ErrAlreadyAcked)
		}
	}
	g.releaseRetainedLocked(ids, retained)
	now := g.m.now()
	for i, r := range recs {
		l := logs[i]
		if l == nil {
			continue // retained: released above
		}
		switch {
		case r.state == stateDeadLetter || r.state == stateBackoff:
			// Already on its way: a repeated Nack changes nothing.
		case opts.DeadLetter || int(r.attempt) >= g.settings.MaxAttempts:
			reason := opts.Reason
			if reason == "" {
				reason = fmt.Sprintf("nacked on attempt %d", r.attempt)
			}
			g.deadLetterLocked(l, r, reason)
		case opts.RetryAfter > 0:
			g.releaseLocked(l, r)
			g.releaseClaimLocked(l, r)
			r.state = stateBackoff
			r.deadline = now.Add(opts.RetryAfter)
			g.scheduleLocked(r, l)
		default:
			g.releaseLocked(l, r)
			g.releaseClaimLocked(l, r)
			l.markReady(r)
		}
	}
	g.metricsNacked(len(ids))
	g.dispatchLocked()
	return nil
}

// releaseLocked takes r off its stream (if claiming or in flight) and
// drops its timer.
func (g *group) releaseLocked(l *partitionLog, r *record) {
	g.unscheduleLocked(r)
	if r.state == stateInflight || r.state == stateClaiming {
		l.inflight--
		if r.stream != nil {
			r.stream.inflight--
		}
	}
	r.stream = nil
}

func (g *group) finishLocked(l *partitionLog, r *record) {
	g.releaseLocked(l, r)
	g.m.buffered.Add(-int64(r.size))
	l.finish(r)
}

// deadLetterLocked writes r to the dead-letter topic in the background; r
// counts as done only once the write is acknowledged by the broker.
func (g *group) deadLetterLocked(l *partitionLog, r *record, reason string) {
	g.releaseLocked(l, r)
	r.state = stateDeadLetter
	rec := produce.Record{
		Key:            r.key,
		Value:          r.value,
		Partition:      produce.AnyPartition,
		Timestamp:      r.timestamp,
		IdempotencyKey: r.messageID,
	}
	for _, h := range r.headers {
		if h.Key != g.m.messageIDHeader {
			rec.Headers = append(rec.Headers, produce.Header{Key: h.Key, Value: h.Value})
		}
	}
	rec.Headers = append(rec.Headers,
		produce.Header{Key: HeaderDLQTopic, Value: []byte(l.topic)},
		produce.Header{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(l.partition), 10)},
		produce.Header{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, r.offset, 10)},
		produce.Header{Key: HeaderDLQAttempts, Value: strconv.AppendInt(nil, int64(r.attempt), 10)},
		produce.Header{Key: HeaderDLQReason, Value: []byte(truncate(reason, 1024))},
		produce.Header{Key: HeaderDLQGroup, Value: []byte(g.settings.Group)},
	)
	topic := l.topic + g.m.cfg.DeadLetterSuffix
	epoch := l.epoch
	g.wg.Go(func() {
		if err := g.m.writeDeadLetter(g.stop, topic, rec); err != nil {
			g.logger.Warn("dead-letter write abandoned; the record stays unfinished and will be redelivered", "topic", topic, "err", err)
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if cur := g.parts[tpKey{l.topic, l.partition}]; cur == l && l.epoch == epoch && r.state == stateDeadLetter {
			if g.dd != nil {
				g.confirmLocked(l, r) // done for the group: later copies are duplicates
			} else {
				g.finishLocked(l, r)
			}
			g.storeLocked([]*partitionLog{l})
			g.metricsDeadLettered()
			g.dispatchLocked()
		}
	})
}

// Dead-letter headers, added to each dead-lettered record.
const (
	HeaderDLQTopic     = "dlq-source-topic"
	HeaderDLQPartition = "dlq-source-partition"
	HeaderDLQOffset    = "dlq-source-offset"
	HeaderDLQAttempts  = "dlq-attempts"
	HeaderDLQReason    = "dlq-reason"
	HeaderDLQGroup     = "dlq-group"
)

// scheduleLocked arms (or moves) r's timer to r.deadline.
func (g *group) scheduleLocked(r *record, l *partitionLog) {
	if r.heapPos > 0 {
		g.timers[r.heapPos-1].at = r.deadline
		heap.Fix(&g.timers, r.heapPos-1)
	} else {
		heap.Push(&g.timers, timerEntry{at: r.deadline, r: r, l: l})
	}
	if g.timers[0].r == r {
		g.timer.Reset(max(0, r.deadline.Sub(g.m.now())))
	}
}

// unscheduleLocked drops r's timer, so a finished record is not kept alive
// by the heap until its old deadline.
func (g *group) unscheduleLocked(r *record) {
	if r.heapPos > 0 {
		heap.Remove(&g.timers, r.heapPos-1)
	}
}

// onTimer handles ack timeouts and retry delays that are due.
func (g *group) onTimer() {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.m.now()
	for len(g.timers) > 0 && !g.timers[0].at.After(now) {
		e := heap.Pop(&g.timers).(timerEntry)
		r, l := e.r, e.l
		if g.parts[tpKey{l.topic, l.partition}] != l {
			continue // the partition is gone
		}
		switch r.state {
		case stateInflight:
			g.metricsTimedOut()
			if int(r.attempt) >= g.settings.MaxAttempts {
				g.deadLetterLocked(l, r, fmt.Sprintf("not acknowledged within %v, %d times", g.settings.AckTimeout, r.attempt))
				continue
			}
			g.releaseLocked(l, r)
			g.releaseClaimLocked(l, r)
			l.markReady(r)
		case stateBackoff:
			l.markReady(r)
		}
	}
	if len(g.timers) > 0 {
		g.timer.Reset(max(0, g.timers[0].at.Sub(now)))
	}
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

// detach removes a stream; its in-flight records go to the other streams
// (or wait for the next one) at once. The attempt they used is not held
// against them: the app did not fail them, it went away.
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
		if l.inflight == 0 {
			continue
		}
		for _, r := range l.recs {
			switch {
			case r.state == stateClaiming && r.stream == s:
				r.stream = nil // the claim's answer puts it back
			case r.state == stateInflight && r.stream == s && g.dd != nil:
				// With dedupe, the app may still be working on it (a stream
				// can break while its app lives on): it stays in flight under
				// its claim until its ack timeout, so that no other app gets
				// it meanwhile, and a late Ack still settles it.
				r.stream = nil
			case r.state == stateInflight && r.stream == s:
				g.releaseLocked(l, r)
				r.attempt-- // redelivery reports the same attempt number again
				l.markReady(r)
			}
		}
	}
	s.inflight = 0
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

// shutdown runs on the poll goroutine: stop delivering, let in-flight acks
// arrive (bounded), commit the acked prefix synchronously, end the streams,
// then leave the group and close the consumer. The commit happens here,
// before Close, and the revoke callback skips its own (see closing).
func (g *group) shutdown() {
	g.mu.Lock()
	g.draining = true
	logs := append([]*partitionLog(nil), g.order...)
	g.mu.Unlock()

	g.waitInflight(logs, g.m.cfg.DrainTimeout)

	g.mu.Lock()
	var commit []kafka.TopicPartition
	for _, l := range logs {
		if off := l.committable(); off >= 0 {
			commit = append(commit, kafka.TopicPartition{Topic: &l.topic, Partition: l.partition, Offset: kafka.Offset(off)})
		}
	}
	for _, s := range g.streams {
		s.end()
	}
	g.timer.Stop()
	g.mu.Unlock()
	if len(commit) > 0 {
		_, err := g.consumer.CommitOffsets(commit)
		g.metricsCommit(err, nil)
		if err != nil && !isNoOffset(err) {
			g.logger.Warn("final commit", "err", err)
		}
	}
	g.closing.Store(true)
	if g.dd != nil {
		close(g.dd.quit)
	}

	// Leave: Close while the partitions are still assigned, so the close
	// path revokes them (the callback skips its commit: closing is set, and
	// the commit above is done) and sends LeaveGroup. Unsubscribing first
	// and closing once the assignment looked empty could close before the
	// leave was sent, leaving the member to expire by session timeout.
	closed := make(chan error, 1)
	go func() { closed <- g.consumer.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			g.logger.Warn("close consumer", "err", err)
		}
	case <-time.After(10 * time.Second):
		g.logger.Error("consumer close did not finish in 10s; abandoning it")
	}
	g.wg.Wait()
	g.logger.Info("consumer group left", "committed", len(commit))
}

func isNoOffset(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.Code() == kafka.ErrNoOffset
}

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

// errors of the group, mapped to gRPC codes by the adapter.
var (
	// ErrStaleAck means the record's partition is no longer owned by this
	// gateway under the assignment it was delivered in.
	ErrStaleAck = errors.New("partition no longer owned by this gateway; the record will be redelivered by its new owner")
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
	// ErrUnknownTopic means a subscribed topic does not exist.
	ErrUnknownTopic = kafkaclient.ErrUnknownTopic
)
