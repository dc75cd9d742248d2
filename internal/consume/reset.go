package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// Offset resets of groups this gateway runs (the admin API's ResetOffsets;
// DESIGN.md, "Offset reset of a live group").
//
// A reset must not race the poll goroutine: a batch of records polled from
// the old position but not yet added to the partition logs would land in
// the new ones. So Reposition hands the request to the group's poll
// goroutine, which serves it between two polls, where no polled record is
// in hand, and where no rebalance callback can run. There, per partition
// this gateway owns:
//
//  1. under group.mu, mark the partition log revoking: nothing more of it
//     is delivered, and acks of it no longer store offsets;
//  2. SeekPartitions to the target (synchronous: no record fetched for the
//     old position is returned by Poll after it);
//  3. under group.mu, forget the old log like a revocation does (in-flight
//     records dropped, their dedupe claims released, unsent deliveries
//     taken out of the streams' outboxes), and start a new log under a new
//     epoch whose commit point is the target, so acks of the old records
//     fail as stale and nothing below the target is ever appended; store
//     the target, which replaces the old stored offset that the background
//     commit would otherwise send;
//  4. commit the target synchronously.
//
// Partitions the group's member does not own are committed through it
// (Kafka accepts commits from any member of the group's generation).

// PartitionOffset is a position in one partition.
type PartitionOffset struct {
	Topic     string
	Partition int32
	Offset    int64
	// Metadata is committed with the offset: the done ranges beyond it
	// (see gaps.go), or "".
	Metadata string
}

// ResetAction says how Reposition moved a partition.
type ResetAction uint8

const (
	// ResetRepositioned means this gateway consumes the partition: it was
	// repositioned live and its new offset committed.
	ResetRepositioned ResetAction = iota + 1
	// ResetCommitted means this gateway does not consume the partition: its
	// committed offset was changed through the group's member.
	ResetCommitted
)

var (
	// ErrNotRunning means the group does not run on this gateway.
	ErrNotRunning = errors.New("group does not run on this gateway")
	// ErrBusy means the group cannot be repositioned right now (it is
	// rebalancing, or its consumer has not started fetching); retrying the
	// same reset is safe.
	ErrBusy = errors.New("consumer group busy (rebalancing or starting); retry the reset")
)

const (
	resetPending int32 = iota
	resetTaken
	resetAbandoned
)

// resetRequest is one Reposition attempt, served by the poll goroutine.
type resetRequest struct {
	targets []PartitionOffset
	state   atomic.Int32
	done    chan struct{}

	// Set by the poll goroutine before done is closed.
	actions map[TopicPartition]ResetAction
	retry   []PartitionOffset // the seek was refused: not being fetched yet
	err     error
}

// running returns the group when it runs on this gateway.
func (m *Manager) running(name string) *group {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.groups[name]
}

// Owned returns the partitions this gateway consumes for group right now,
// and whether the group runs here at all.
func (m *Manager) Owned(group string) ([]TopicPartition, bool) {
	g := m.running(group)
	if g == nil {
		return nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var tps []TopicPartition
	for _, l := range g.order {
		if !l.revoking {
			tps = append(tps, TopicPartition{Topic: l.topic, Partition: l.partition})
		}
	}
	return tps, true
}

// resetAttempts bounds how often Reposition retries partitions whose seek
// librdkafka refused because their fetcher had not started yet (just after
// an assignment); resetRetryWait separates the attempts.
const (
	resetAttempts  = 50
	resetRetryWait = 100 * time.Millisecond
)

// Reposition moves a group that runs on this gateway to targets: partitions
// this gateway consumes are repositioned live (their unacknowledged records
// are dropped and acks of them fail with ErrStaleAck from then on), the
// others are committed through the group's member. Either way the targets
// are committed before it returns, and nothing from before is committed
// afterwards. It fails with ErrNotRunning when the group does not run here,
// with ErrBusy (wrapped) when the group is rebalancing, and with ErrClosed
// when it shuts down; partitions moved before a failure stay moved, and
// running the same reset again is safe.
func (m *Manager) Reposition(ctx context.Context, group string, targets []PartitionOffset) (map[TopicPartition]ResetAction, error) {
	g := m.running(group)
	if g == nil {
		return nil, fmt.Errorf("group %q: %w", group, ErrNotRunning)
	}
	actions := make(map[TopicPartition]ResetAction, len(targets))
	pending := targets
	for attempt := 1; ; attempt++ {
		req := &resetRequest{targets: pending, done: make(chan struct{})}
		if err := g.requestReset(ctx, req); err != nil {
			return actions, err
		}
		for tp, a := range req.actions {
			actions[tp] = a
		}
		switch {
		case req.err != nil:
			return actions, req.err
		case len(req.retry) == 0:
			return actions, nil
		case attempt == resetAttempts:
			return actions, fmt.Errorf("%w: partitions %v are not being fetched yet", ErrBusy, req.retry)
		}
		pending = req.retry
		select {
		case <-ctx.Done():
			return actions, ctx.Err()
		case <-time.After(resetRetryWait):
		}
	}
}

// requestReset queues req for the poll goroutine and waits for it to be
// served. A request still queued when ctx ends or the group stops is
// abandoned; one being served is waited for (it is short).
func (g *group) requestReset(ctx context.Context, req *resetRequest) error {
	select {
	case g.resets <- req:
	case <-g.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req.done:
		return nil
	case <-g.done:
		if req.state.CompareAndSwap(resetPending, resetAbandoned) {
			return ErrClosed
		}
	case <-ctx.Done():
		if req.state.CompareAndSwap(resetPending, resetAbandoned) {
			return ctx.Err()
		}
	}
	<-req.done
	return nil
}

// serveResets runs queued reset requests. Only the poll goroutine calls
// it, between polls.
func (g *group) serveResets() {
	for {
		select {
		case req := <-g.resets:
			if req.state.CompareAndSwap(resetPending, resetTaken) {
				g.reposition(req)
				close(req.done)
			}
		default:
			return
		}
	}
}

// reposition applies one request (see the sequence at the top of the file).
func (g *group) reposition(req *resetRequest) {
	req.actions = make(map[TopicPartition]ResetAction, len(req.targets))
	targets := make(map[tpKey]int64, len(req.targets))

	// 1. Stop delivering the partitions owned here.
	g.mu.Lock()
	var owned []*partitionLog
	var seek, others []PartitionOffset
	for _, t := range req.targets {
		k := tpKey{t.Topic, t.Partition}
		targets[k] = t.Offset
		if l := g.parts[k]; l != nil && !l.revoking {
			l.revoking = true
			owned = append(owned, l)
			seek = append(seek, t)
		} else {
			others = append(others, t)
		}
	}
	g.mu.Unlock()

	// 2. Seek.
	refused := map[tpKey]bool{}
	if len(seek) > 0 {
		rs, err := g.client.Seek(seek)
		if err != nil {
			g.logger.Warn("seek for an offset reset failed; retrying", "err", err)
		}
		for _, t := range rs {
			refused[tpKey{t.Topic, t.Partition}] = true
			g.logger.Debug("seek refused; retrying", "topic", t.Topic, "partition", t.Partition)
		}
	}

	// 3. Swap the logs of the partitions that moved.
	g.mu.Lock()
	var moved, unmoved, fresh []*partitionLog
	var tps []TopicPartition
	dropped := 0
	for _, l := range owned {
		k := tpKey{l.topic, l.partition}
		if refused[k] {
			l.revoking = false
			unmoved = append(unmoved, l)
			req.retry = append(req.retry, PartitionOffset{Topic: l.topic, Partition: l.partition, Offset: targets[k]})
			continue
		}
		moved = append(moved, l)
	}
	g.takeBackLocked(moved)
	for _, l := range moved {
		k := tpKey{l.topic, l.partition}
		dropped += l.pending()
		paused := l.paused
		g.forgetLocked(l, false) // the records are dropped: their claims are released
		n := newPartitionLog(l.topic, l.partition, epochs.Add(1), g.settings.Ordering == OrderingKey, g.timers, g.account())
		n.next = targets[k] // the commit point; nothing below it is appended
		n.paused = paused   // librdkafka keeps the pause; balanceFlow resumes it
		n.appendedAt = g.m.now()
		g.parts[k] = n
		g.order = append(g.order, n)
		fresh = append(fresh, n)
		tp := TopicPartition{Topic: l.topic, Partition: l.partition}
		tps = append(tps, tp)
		req.actions[tp] = ResetRepositioned
	}
	if len(tps) > 0 {
		for _, s := range g.streams {
			s.pushAssignment(Assignment{Revoked: tps})
			s.pushAssignment(Assignment{Assigned: tps})
		}
	}
	g.storeLocked(unmoved...) // what acks advanced while they were marked
	g.storeLocked(fresh...)   // replaces the old stored offsets
	g.dispatchLocked()
	g.mu.Unlock()

	// 4. Commit.
	var commit []PartitionOffset
	for _, l := range fresh {
		commit = append(commit, PartitionOffset{Topic: l.topic, Partition: l.partition, Offset: l.next})
	}
	commit = append(commit, others...)
	if len(commit) == 0 {
		return
	}
	err := g.client.Commit(commit)
	g.metricsCommit(err)
	if err != nil {
		req.err = fmt.Errorf("%w: commit the new offsets: %w", ErrBusy, kafkaclient.Classify(err))
		if len(fresh) > 0 {
			g.logger.Warn("partitions repositioned, but the commit of their new offsets failed (they are stored and committed in the background)", "partitions", tps, "err", err)
		}
	}
	for _, t := range others {
		if err == nil {
			req.actions[TopicPartition{Topic: t.Topic, Partition: t.Partition}] = ResetCommitted
		}
	}
	if len(tps) > 0 {
		slices.SortFunc(tps, func(a, b TopicPartition) int {
			return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
		})
		g.logger.Warn("partitions repositioned by an offset reset; their unacknowledged records were dropped",
			"partitions", tps, "dropped", dropped)
	}
}
