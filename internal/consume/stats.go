package consume

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/rdkafka"
)

// Stats are counters of the consumer side, for tests and metrics. They
// count from the gateway's start, across restarts of a group's consumer.
type Stats struct {
	// Rebalances counts assignment changes: each assigned and each revoked
	// callback.
	Rebalances int64
	// Delivered counts records handed to app streams; Redelivered those of
	// them delivered after a nack or an ack timeout (attempt > 1).
	Delivered, Redelivered int64
	// Acked, Nacked and Extended count the ack IDs named by successful Ack,
	// Nack and Extend calls.
	Acked, Nacked, Extended int64
	// TimedOut counts deliveries not acknowledged within the ack timeout.
	TimedOut int64
	// DeadLettered counts records written to a dead-letter topic;
	// DeadLetteredCompact those of them written as compact dead letters
	// (the full one could not be written); DeadLettersDropped records whose
	// dead letter could not be written at all (settled without one).
	DeadLettered, DeadLetteredCompact, DeadLettersDropped int64
	// Stalls counts partitions found stalled: records waiting for delivery
	// with nothing in flight while streams had credit, or a partition not
	// fetched although its log grew (see DESIGN.md, "Stall detection").
	Stalls int64
	// Commits and CommitFailures count offset commits: librdkafka's periodic
	// ones and the gateway's own at revoke and shutdown. A commit with
	// nothing to commit counts as neither.
	Commits, CommitFailures int64
	// OffsetResets counts positions librdkafka reset by auto.offset.reset
	// because they were not available on the broker.
	OffsetResets int64
	// Dedupe: deliveries claimed, duplicates dropped without delivery,
	// holds because another owner had the claim, failed Redis batches, and
	// done markers that found another owner's claim (a lapsed lease).
	Claims, Duplicates, Held, RedisErrors, LostClaims int64
	// SkippedDone counts records fetched that the committed metadata named
	// done (acknowledged out of order before a hand-over): never delivered.
	SkippedDone int64
}

func (s *Stats) add(o Stats) {
	s.Rebalances += o.Rebalances
	s.Delivered += o.Delivered
	s.Redelivered += o.Redelivered
	s.Acked += o.Acked
	s.Nacked += o.Nacked
	s.Extended += o.Extended
	s.TimedOut += o.TimedOut
	s.DeadLettered += o.DeadLettered
	s.DeadLetteredCompact += o.DeadLetteredCompact
	s.DeadLettersDropped += o.DeadLettersDropped
	s.Stalls += o.Stalls
	s.Commits += o.Commits
	s.CommitFailures += o.CommitFailures
	s.OffsetResets += o.OffsetResets
	s.Claims += o.Claims
	s.Duplicates += o.Duplicates
	s.Held += o.Held
	s.RedisErrors += o.RedisErrors
	s.LostClaims += o.LostClaims
	s.SkippedDone += o.SkippedDone
}

// counters are one group's Stats, updated without locks.
type counters struct {
	rebalances, delivered, redelivered, acked, nacked, extended, timedOut atomic.Int64
	deadLettered                                                          atomic.Int64
	deadLetteredCompact, deadLettersDropped, stalls                       atomic.Int64
	commits, commitFailures, offsetResets                                 atomic.Int64
	claims, duplicates, held, redisErrors, lostClaims, skippedDone        atomic.Int64
	stopped                                                               time.Time // when the group last stopped; guarded by Manager.mu
}

func (c *counters) load() Stats {
	return Stats{
		Rebalances:          c.rebalances.Load(),
		Delivered:           c.delivered.Load(),
		Redelivered:         c.redelivered.Load(),
		Acked:               c.acked.Load(),
		Nacked:              c.nacked.Load(),
		Extended:            c.extended.Load(),
		TimedOut:            c.timedOut.Load(),
		DeadLettered:        c.deadLettered.Load(),
		DeadLetteredCompact: c.deadLetteredCompact.Load(),
		DeadLettersDropped:  c.deadLettersDropped.Load(),
		Stalls:              c.stalls.Load(),
		Commits:             c.commits.Load(),
		CommitFailures:      c.commitFailures.Load(),
		OffsetResets:        c.offsetResets.Load(),
		Claims:              c.claims.Load(),
		Duplicates:          c.duplicates.Load(),
		Held:                c.held.Load(),
		RedisErrors:         c.redisErrors.Load(),
		LostClaims:          c.lostClaims.Load(),
		SkippedDone:         c.skippedDone.Load(),
	}
}

// GroupStats are one consumer group's counters and current state on this
// gateway.
type GroupStats struct {
	Group string
	Stats
	// Running is true while the group's consumer runs on this gateway; the
	// fields below are zero otherwise.
	Running bool
	// Partitions are the partitions assigned (not being revoked); Streams
	// the app streams attached.
	Partitions, Streams int
	// InFlight are records delivered (or being claimed) and not settled;
	// Buffered are records fetched and not done.
	InFlight, Buffered int
	// OldestUnacked is the age, since it was fetched, of the oldest record
	// not done (acked, dead-lettered or dropped as a duplicate): the record
	// holding a commit point back. Zero when none is pending.
	OldestUnacked time.Duration
	// Degraded is true while the group's dedupe cannot reach Redis.
	Degraded bool
	// Stalled are the partitions stalled now (see Stats.Stalls).
	Stalled int
}

// Stats returns the counters of every group together.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s Stats
	for _, c := range m.counters {
		s.add(c.load())
	}
	return s
}

// Groups returns every group this gateway has run since it started, sorted
// by name, with the state of those running now. It takes each running
// group's lock briefly; call it at scrape time, not per record.
func (m *Manager) Groups() []GroupStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]GroupStats, 0, len(m.counters))
	now := m.now()
	for name, c := range m.counters {
		gs := GroupStats{Group: name, Stats: c.load()}
		if g := m.groups[name]; g != nil {
			g.snapshot(&gs, now)
		}
		out = append(out, gs)
	}
	slices.SortFunc(out, func(a, b GroupStats) int { return strings.Compare(a.Group, b.Group) })
	return out
}

// SetStatsHandler makes every group's consumer emit librdkafka statistics
// (when statistics.interval.ms is set in its properties) and hands each
// JSON document to h, on the group's poll goroutine. Call it before Run.
func (m *Manager) SetStatsHandler(h func(group, json string)) { m.onStats = h }

// maxRememberedGroups bounds the groups whose counters outlive them (and
// so the metric series labelled with group names): beyond it, the counters
// of the groups that stopped longest ago are forgotten.
func (m *Manager) maxRememberedGroups() int { return 2 * m.cfg.MaxGroups }

// forgetCountersLocked drops the counters of stopped groups beyond
// maxRememberedGroups, oldest stop first. Callers hold m.mu.
func (m *Manager) forgetCountersLocked() {
	for len(m.counters) > m.maxRememberedGroups() {
		oldest, at := "", time.Time{}
		for name, c := range m.counters {
			if _, running := m.groups[name]; running {
				continue
			}
			if oldest == "" || c.stopped.Before(at) {
				oldest, at = name, c.stopped
			}
		}
		if oldest == "" {
			return
		}
		delete(m.counters, oldest)
	}
}

// GroupsRefused is how many Subscribes the group bounds refused.
func (m *Manager) GroupsRefused() int64 { return m.groupsRefused.Load() }

// countersFor returns the counters of the named group, creating them.
// Callers hold m.mu.
func (m *Manager) countersFor(group string) *counters {
	c := m.counters[group]
	if c == nil {
		c = &counters{}
		m.counters[group] = c
	}
	return c
}

func (g *group) snapshot(gs *GroupStats, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gs.Running = true
	gs.Streams = len(g.streams)
	var oldest int64
	for _, l := range g.order {
		if !l.revoking {
			gs.Partitions++
		}
		gs.InFlight += l.inFlight()
		gs.Buffered += l.pending()
		if l.stalled || l.fetchStalled {
			gs.Stalled++
		}
		if len(l.recs) > 0 && (oldest == 0 || l.recs[0].fetched < oldest) {
			oldest = l.recs[0].fetched
		}
	}
	if oldest != 0 {
		gs.OldestUnacked = max(0, now.Sub(time.Unix(0, oldest)))
	}
	gs.Degraded = g.settle.degraded()
}

func (g *group) metricsRebalance()   { g.stats.rebalances.Add(1) }
func (g *group) metricsAcked(n int)  { g.stats.acked.Add(int64(n)) }
func (g *group) metricsNacked(n int) { g.stats.nacked.Add(int64(n)) }
func (g *group) metricsTimedOut()    { g.stats.timedOut.Add(1) }

func (g *group) metricsDelivered(attempt int32) {
	g.stats.delivered.Add(1)
	if attempt > 1 {
		g.stats.redelivered.Add(1)
	}
}

// onLog sees every librdkafka log line of the group's consumer.
func (g *group) onLog(facility, message string) {
	if kafkaclient.IsOffsetReset(facility, message) {
		g.stats.offsetResets.Add(1)
	}
}

// metricsCommit counts the result of one of the gateway's own commits.
func (g *group) metricsCommit(err error) { g.metricsCommitted(err, nil) }

// metricsCommitted counts the result of an offset commit: err is the
// commit's error, offsets its per-partition results (if any).
func (g *group) metricsCommitted(err error, offsets []rdkafka.TopicPartition) {
	switch {
	case err != nil && isNoOffset(err):
		return // nothing to commit
	case err != nil:
		g.stats.commitFailures.Add(1)
		return
	}
	for _, tp := range offsets {
		if tp.Err != rdkafka.ErrNoError {
			g.stats.commitFailures.Add(1)
			return
		}
	}
	g.stats.commits.Add(1)
}
