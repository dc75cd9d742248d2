package consume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/rdkafka"
)

// consumerClient is all a group's domain logic asks of its librdkafka
// consumer. The poll loop and the rebalance callback below drive the group
// (add, assigned, revoked); the group answers through this interface only,
// so its behaviour can be tested against a recording client as well as
// against librdkafka on an in-process broker.
type consumerClient interface {
	// Pause and Resume stop and restart fetching of partitions.
	Pause(tps []TopicPartition) error
	Resume(tps []TopicPartition) error
	// Store hands committable offsets to the background commit.
	Store(offsets []PartitionOffset) error
	// Commit commits offsets synchronously.
	Commit(offsets []PartitionOffset) error
	// Seek repositions partitions; it returns those it refused (their
	// fetcher has not started yet).
	Seek(offsets []PartitionOffset) (refused []PartitionOffset, err error)
}

// kafkaClient is consumerClient over the gateway's librdkafka consumer.
type kafkaClient struct{ c *rdkafka.Consumer }

func (k kafkaClient) Pause(tps []TopicPartition) error  { return k.c.Pause(toKafkaTPs(tps)) }
func (k kafkaClient) Resume(tps []TopicPartition) error { return k.c.Resume(toKafkaTPs(tps)) }

func (k kafkaClient) Store(offsets []PartitionOffset) error {
	_, err := k.c.StoreOffsets(toKafkaOffsets(offsets))
	return err
}

func (k kafkaClient) Commit(offsets []PartitionOffset) error {
	res, err := k.c.Commit(toKafkaOffsets(offsets))
	if err != nil {
		return err
	}
	return firstPartitionErr(res)
}

func (k kafkaClient) Seek(offsets []PartitionOffset) ([]PartitionOffset, error) {
	res, err := k.c.Seek(toKafkaOffsets(offsets), -1)
	if err != nil && len(res) != len(offsets) {
		return offsets, err
	}
	var refused []PartitionOffset
	for i, tp := range res {
		if tp.Err != rdkafka.ErrNoError {
			refused = append(refused, offsets[i])
		}
	}
	return refused, nil
}

// firstPartitionErr is the first per-partition error of a call's result.
func firstPartitionErr(res []rdkafka.TopicPartition) error {
	for _, tp := range res {
		if tp.Err != rdkafka.ErrNoError {
			return fmt.Errorf("%s/%d: %w", tp.Topic, tp.Partition, &rdkafka.Error{Code: tp.Err, Message: tp.Err.String()})
		}
	}
	return nil
}

func toKafkaTPs(tps []TopicPartition) []rdkafka.TopicPartition {
	out := make([]rdkafka.TopicPartition, len(tps))
	for i, tp := range tps {
		out[i] = rdkafka.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
	}
	return out
}

func toKafkaOffsets(offs []PartitionOffset) []rdkafka.TopicPartition {
	out := make([]rdkafka.TopicPartition, len(offs))
	for i, o := range offs {
		out[i] = rdkafka.TopicPartition{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset, Metadata: o.Metadata}
	}
	return out
}

func fromKafkaTPs(tps []rdkafka.TopicPartition) []TopicPartition {
	out := make([]TopicPartition, len(tps))
	for i, tp := range tps {
		out[i] = TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
	}
	return out
}

// pollBatch bounds the records taken from librdkafka per lock acquisition.
const pollBatch = 512

// pausedPollTimeout bounds a poll while flow control holds partitions
// paused: how late a drained partition may be resumed.
const pausedPollTimeout = 5 * time.Millisecond

// closeTimeout bounds the consumer's close at shutdown.
const closeTimeout = 10 * time.Second

// member is a group's librdkafka consumer: it polls continuously on its own
// goroutine, turns what it gets into calls on the group, and leaves the
// consumer group at shutdown.
type member struct {
	g *group
	c *rdkafka.Consumer
	// close leaves the group and frees the consumer (closeConsumer; a test
	// may hang it), within closeTimeout.
	close        func() error
	closeTimeout time.Duration
	// nextFetchCheck is when watchFetch looks again, and fetchCheck brings
	// the finding of its check still running (nil: none) (poll goroutine
	// only).
	nextFetchCheck time.Time
	fetchCheck     chan []idlePartition
	// brokersDown is whether the last client error said every broker was
	// down (poll goroutine only).
	brokersDown bool
}

// startMember creates a group's consumer, subscribes it, and starts the
// group's workers; the caller runs the returned member's run.
func startMember(m *Manager, s Settings, declared bool) (*group, *member, error) {
	c, err := rdkafka.NewConsumer(m.cfg.properties(m.kafka, s.Group, s.StartPosition))
	if err != nil {
		return nil, nil, fmt.Errorf("create consumer for group %q: %w", s.Group, err)
	}
	g := newGroup(m, s, declared)
	g.client = kafkaClient{c}
	mb := &member{g: g, c: c, closeTimeout: closeTimeout}
	mb.close = mb.closeConsumer
	if err := c.Subscribe(s.Topics); err != nil {
		c.Destroy()
		return nil, nil, fmt.Errorf("subscribe group %q: %w", s.Group, err)
	}
	g.startWorkers()
	return g, mb, nil
}

// run polls until shutdown begins, then drains, commits and closes.
func (mb *member) run() {
	g := mb.g
	defer close(g.done)
	g.logger.Info("consumer group started", "topics", g.settings.Topics, "ordering", g.settings.Ordering.String())
	idHeader := ""
	if g.m.dd != nil {
		idHeader = g.m.dd.IDHeader
	}
	var polled []rdkafka.Fetched
	var batch []fetched
	paused := false
	for {
		select {
		case <-g.stop:
			mb.shutdown()
			return
		default:
		}
		var ev *rdkafka.ConsumerEvent
		// While flow control holds partitions paused, the poll returns
		// soon, so that balanceFlow resumes them as soon as the app has
		// drained them: a paused partition sends nothing to wake the poll.
		timeout := 100 * time.Millisecond
		if paused {
			timeout = pausedPollTimeout
		}
		polled, ev = mb.c.Poll(timeout, pollBatch, polled[:0])
		if len(polled) > 0 {
			now := g.m.now().UnixNano()
			batch = batch[:0]
			for i := range polled {
				batch = append(batch, toFetched(&polled[i], g.m.messageIDHeader, idHeader, now))
			}
			clear(polled) // the records belong to the group now
			g.add(batch)
			clear(batch)
		}
		if ev != nil {
			mb.onEvent(ev)
		}
		mb.routeEvents()
		paused = g.balanceFlow()
		g.serveResets()
		g.watchStalls()
		mb.watchFetch()
	}
}

// onEvent applies a rebalance or counts a commit result.
func (mb *member) onEvent(ev *rdkafka.ConsumerEvent) {
	switch ev.Kind {
	case rdkafka.Assigned, rdkafka.Revoked:
		mb.onRebalance(ev)
	case rdkafka.Committed:
		mb.g.metricsCommitted(ev.Err, ev.Partitions)
	}
}

// routeEvents logs librdkafka's log lines and client errors, and hands on
// its statistics.
func (mb *member) routeEvents() {
	g := mb.g
	logs, stats, errs := mb.c.Events()
	for _, l := range logs {
		g.onLog(l.Facility, l.Message)
		g.logger.Log(context.Background(), kafkaclient.SyslogLevel(l.Level), l.Message, "component", "librdkafka", "facility", l.Facility)
	}
	if g.m.onStats != nil {
		for _, st := range stats {
			g.m.onStats(g.settings.Group, st)
		}
	}
	for _, e := range errs {
		mb.onError(e)
	}
}

// fetchStallAfter is how long a partition this member fetches (not paused
// by flow control) may go without a record while its log end lies beyond
// its position, before it counts as not being fetched.
const fetchStallAfter = 30 * time.Second

// fetchCheckEvery is how often watchFetch looks for idle partitions, and
// fetchQueryTimeout bounds its question to a partition's leader.
const (
	fetchCheckEvery   = 5 * time.Second
	fetchQueryTimeout = 2 * time.Second
)

// idlePartition is a partition watchFetch asks about: the group means to
// fetch it, yet no record came for fetchStallAfter; next is the offset the
// group expects from it next (-1: none yet). logEnd is what its leader
// answered.
type idlePartition struct {
	l            *partitionLog
	next, logEnd int64
}

// watchFetch checks, every few seconds, that librdkafka fetches every
// partition the group means to fetch: a partition left paused inside
// librdkafka (an application pause survives an unassign and a later assign
// to the same consumer) gets no record while its log grows, and nothing
// else would notice. The poll goroutine picks the partitions idle for
// fetchStallAfter; a goroutine of the check asks their leaders for their
// log ends (librdkafka's cached watermarks would not do: a fetch response
// of the partition is what updates them, and a paused partition gets
// none), since a broker may be slow to answer; the poll goroutine then
// resumes, logs and counts as a stall each one whose log end lies beyond
// its position and that is still idle and not paused by flow control.
func (mb *member) watchFetch() {
	g := mb.g
	if mb.fetchCheck != nil {
		select {
		case found := <-mb.fetchCheck:
			mb.fetchCheck = nil
			mb.resumeNotFetched(found)
		default:
			return // the last check still waits for a leader
		}
	}
	now := g.m.now()
	if now.Before(mb.nextFetchCheck) {
		return
	}
	mb.nextFetchCheck = now.Add(fetchCheckEvery)
	var idle []idlePartition
	g.mu.Lock()
	for _, l := range g.order {
		if l.paused || l.revoking || now.Sub(l.appendedAt) < fetchStallAfter {
			l.fetchStalled = false
			continue
		}
		idle = append(idle, idlePartition{l: l, next: l.next})
	}
	g.mu.Unlock()
	if len(idle) == 0 {
		return
	}
	found := make(chan []idlePartition, 1)
	mb.fetchCheck = found
	g.wg.Go(func() { found <- mb.notFetched(idle) })
}

// notFetched returns the partitions of idle whose leader's log end lies
// beyond their position (or their committed offset, before their first
// record). It asks for every log end at once (ListOffsets for the latest
// offset: one request per leader), off the poll goroutine; nothing once
// shutdown began.
func (mb *member) notFetched(idle []idlePartition) []idlePartition {
	select {
	case <-mb.g.stop:
		return nil
	default:
	}
	tps := make([]rdkafka.TopicPartition, len(idle))
	for i, p := range idle {
		tps[i] = rdkafka.TopicPartition{Topic: p.l.topic, Partition: p.l.partition, Offset: rdkafka.OffsetEnd}
	}
	ends, err := mb.c.OffsetsForTimes(tps, fetchQueryTimeout)
	if err != nil || len(ends) != len(idle) {
		return nil
	}
	var out []idlePartition
	for i, p := range idle {
		high := ends[i].Offset
		if ends[i].Err != rdkafka.ErrNoError || high <= 0 {
			continue
		}
		pos := p.next
		tp := tps[i : i+1 : i+1]
		if pos < 0 {
			if ps, err := mb.c.Position(tp); err == nil && len(ps) == 1 && ps[0].Offset >= 0 {
				pos = ps[0].Offset
			} else if cs, err := mb.c.CommittedOffsets(tp, fetchQueryTimeout); err == nil && len(cs) == 1 && cs[0].Offset >= 0 {
				pos = cs[0].Offset
			}
		}
		if pos < 0 || high <= pos {
			continue
		}
		p.next, p.logEnd = pos, high
		out = append(out, p)
	}
	return out
}

// resumeNotFetched resumes the partitions a check found not fetched, unless
// records came since, flow control paused them or they are going.
func (mb *member) resumeNotFetched(found []idlePartition) {
	g := mb.g
	now := g.m.now()
	for _, p := range found {
		l := p.l
		g.mu.Lock()
		still := !l.gone && !l.paused && !l.revoking && now.Sub(l.appendedAt) >= fetchStallAfter
		first := still && !l.fetchStalled
		l.fetchStalled = still
		g.mu.Unlock()
		if !still {
			continue
		}
		if first {
			g.stats.stalls.Add(1)
			g.logger.Error("partition not fetched: its log end lies beyond its position and no record came for a while; resuming it",
				"topic", l.topic, "partition", l.partition, "position", p.next, "log_end", p.logEnd, "idle", fetchStallAfter)
		}
		if err := mb.c.Resume([]rdkafka.TopicPartition{{Topic: l.topic, Partition: l.partition}}); err != nil {
			g.logger.Warn("resume a partition that is not fetched", "topic", l.topic, "partition", l.partition, "err", err)
		}
	}
}

// toFetched turns a polled record into a ready record. Its message ID is
// the gateway's message-id header, else the header idHeader names, else
// none: then it is "topic/partition/offset", spelled out only where it is
// needed (see partitionLog.messageID).
func toFetched(msg *rdkafka.Fetched, header, idHeader string, now int64) fetched {
	r := &record{
		offset:  msg.Offset,
		key:     msg.Key,
		value:   msg.Value,
		size:    int32(len(msg.Key) + len(msg.Value)),
		fetched: now,
	}
	if !msg.Timestamp.IsZero() {
		r.timestamp = msg.Timestamp
	}
	var altID string
	if len(msg.Headers) > 0 {
		r.headers = make([]Header, len(msg.Headers))
	}
	for i, h := range msg.Headers {
		r.headers[i] = Header{Key: h.Key, Value: h.Value}
		r.size += int32(len(h.Key) + len(h.Value))
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
	return fetched{topic: msg.Topic, partition: msg.Partition, r: r}
}

func (mb *member) onError(e rdkafka.ClientError) {
	g := mb.g
	switch {
	case e.Fatal:
		g.logger.Error("consumer fatal error; the group stops", "err", e.Message, "code", e.Code.String())
		g.beginShutdown()
	case e.Code == rdkafka.ErrAllBrokersDown:
		if !mb.brokersDown {
			g.logger.Warn("consumer lost its brokers", "err", e.Message)
		}
		mb.brokersDown = true
	case e.Code == rdkafka.ErrTransport:
		g.logger.Warn("consumer lost a broker connection", "err", e.Message)
	default:
		g.logger.Warn("consumer error", "err", e.Message, "code", e.Code.String())
	}
}

// onRebalance runs on the poll goroutine, before the next poll.
// Cooperative assignors add and remove partitions incrementally; eager
// ones (range, roundrobin) revoke everything and assign the whole new set,
// which librdkafka only accepts through Assign and Unassign.
func (mb *member) onRebalance(ev *rdkafka.ConsumerEvent) {
	g, c := mb.g, mb.c
	mb.brokersDown = false
	eager := c.RebalanceProtocol() == "EAGER"
	switch ev.Kind {
	case rdkafka.Assigned:
		g.assignedWith(fromKafkaTPs(ev.Partitions), mb.committedGaps(ev.Partitions))
		if g.settings.StartPosition == StartLatest {
			mb.pinLatest(ev.Partitions)
		}
		var err error
		if eager {
			err = c.Assign(ev.Partitions)
		} else {
			err = c.IncrementalAssign(ev.Partitions)
		}
		if err != nil {
			g.logger.Error("assign partitions", "err", err, "eager", eager)
		}
		// librdkafka keeps an application's pause on a partition through an
		// unassign and a later assign to this same consumer, while the
		// partition's new log starts unpaused: resume every partition given
		// to us, or one paused before a revocation would never be fetched
		// again.
		if err := c.Resume(ev.Partitions); err != nil {
			g.logger.Warn("resume assigned partitions", "err", err)
		}
	case rdkafka.Revoked:
		g.revoked(fromKafkaTPs(ev.Partitions), c.AssignmentLost())
		var err error
		if eager {
			err = c.Unassign()
		} else {
			err = c.IncrementalUnassign(ev.Partitions)
		}
		if err != nil {
			g.logger.Error("unassign partitions", "err", err, "eager", eager)
		}
	}
}

// committedGaps reads the committed offsets of newly assigned partitions
// and the done ranges their metadata names past them (see gaps.go). When
// they cannot be read, the partitions start without: their records done
// out of order before are delivered again (at least once).
func (mb *member) committedGaps(tps []rdkafka.TopicPartition) map[tpKey][]offsetRange {
	committed, err := mb.c.CommittedOffsets(tps, 10*time.Second)
	if err != nil {
		mb.g.logger.Warn("read the committed offsets' metadata; records acknowledged out of order before may be delivered again", "err", err)
		return nil
	}
	var out map[tpKey][]offsetRange
	for _, tp := range committed {
		if tp.Metadata == "" || tp.Offset < 0 {
			continue
		}
		if rs := gapsFrom(tp.Metadata, tp.Offset); len(rs) > 0 {
			if out == nil {
				out = make(map[tpKey][]offsetRange)
			}
			out[tpKey{tp.Topic, tp.Partition}] = rs
		}
	}
	return out
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
func (mb *member) pinLatest(tps []rdkafka.TopicPartition) {
	g, c := mb.g, mb.c
	committed, err := c.CommittedOffsets(tps, 10*time.Second)
	if err != nil {
		g.logger.Warn("read committed offsets to pin the start position; librdkafka resolves latest itself", "err", err)
		return
	}
	var need []rdkafka.TopicPartition
	for _, tp := range committed {
		if tp.Offset < 0 {
			tp.Offset = g.joinedAt.Add(-latestMargin).UnixMilli()
			tp.Metadata = ""
			need = append(need, tp)
		}
	}
	if len(need) == 0 {
		return
	}
	// The ends are read before the records by time: a record written
	// between the two reads is then at or after the end read, and is
	// delivered. (The other order could find no record since the join, then
	// an end beyond records written meanwhile, and skip them.)
	ends := make(map[tpKey]int64, len(need))
	for _, tp := range need {
		_, high, err := c.QueryWatermarks(tp.Topic, tp.Partition, 10*time.Second)
		if err != nil {
			g.logger.Warn("query the end of a partition; librdkafka resolves latest itself", "topic", tp.Topic, "partition", tp.Partition, "err", err)
			continue
		}
		ends[tpKey{tp.Topic, tp.Partition}] = high
	}
	starts, err := c.OffsetsForTimes(need, 10*time.Second)
	if err != nil {
		g.logger.Warn("look up start offsets by time; librdkafka resolves latest itself", "err", err)
		return
	}
	pinned := make(map[tpKey]int64, len(starts))
	for _, tp := range starts {
		k := tpKey{tp.Topic, tp.Partition}
		end, ok := ends[k]
		switch {
		case !ok:
			continue
		case tp.Offset >= 0 && tp.Offset < end:
			pinned[k] = tp.Offset
		default: // nothing written since the join, as of the end read first
			pinned[k] = end
		}
	}
	var commit []rdkafka.TopicPartition
	for i, tp := range tps {
		if off, ok := pinned[tpKey{tp.Topic, tp.Partition}]; ok {
			tps[i].Offset = off
			commit = append(commit, tps[i])
		}
	}
	res, err := c.Commit(commit)
	if err == nil {
		err = firstPartitionErr(res)
	}
	g.metricsCommit(err)
	if err != nil {
		g.logger.Warn("commit the pinned start offsets", "err", err)
	}
	g.logger.Info("start position pinned (latest, no committed offset)", "partitions", len(commit))
}

// shutdown runs on the poll goroutine: the group drains and commits, then
// the consumer closes while its partitions are still assigned, so the close
// path revokes them (the group has forgotten them and skips its commit) and
// sends LeaveGroup. Unsubscribing first and closing once the assignment
// looked empty could close before the leave was sent, leaving the member to
// expire by session timeout.
func (mb *member) shutdown() {
	g := mb.g
	committed := g.drainAndCommit()
	closed := make(chan error, 1)
	go func() { closed <- mb.close() }()
	select {
	case err := <-closed:
		if err != nil {
			g.logger.Warn("close consumer", "err", err)
		}
	case <-time.After(mb.closeTimeout):
		g.logger.Error("consumer close did not finish in time; abandoning it", "timeout", mb.closeTimeout)
	}
	g.wg.Wait()
	g.logger.Info("consumer group left", "committed", committed)
}

// closeConsumer leaves the group: it starts the close, then polls, applying
// the revocation (records fetched meanwhile are dropped: they are past the
// commit point), until librdkafka says the consumer is closed, and frees it.
func (mb *member) closeConsumer() error {
	if err := mb.c.BeginClose(); err != nil {
		mb.c.Destroy()
		return err
	}
	var discard []rdkafka.Fetched
	for !mb.c.Closed() {
		var ev *rdkafka.ConsumerEvent
		discard, ev = mb.c.Poll(100*time.Millisecond, pollBatch, discard[:0])
		clear(discard)
		if ev != nil {
			mb.onEvent(ev)
		}
		mb.routeEvents()
	}
	mb.routeEvents()
	mb.c.Destroy()
	return nil
}

func isNoOffset(err error) bool {
	var kerr *rdkafka.Error
	return errors.As(err, &kerr) && kerr.Code == rdkafka.ErrNoOffset
}
