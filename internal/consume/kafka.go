package consume

import (
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/kafkaclient"
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

// kafkaClient is consumerClient over a librdkafka consumer.
type kafkaClient struct{ c *kafka.Consumer }

func (k kafkaClient) Pause(tps []TopicPartition) error  { return k.c.Pause(toKafkaTPs(tps)) }
func (k kafkaClient) Resume(tps []TopicPartition) error { return k.c.Resume(toKafkaTPs(tps)) }

func (k kafkaClient) Store(offsets []PartitionOffset) error {
	_, err := k.c.StoreOffsets(toKafkaOffsets(offsets))
	return err
}

func (k kafkaClient) Commit(offsets []PartitionOffset) error {
	res, err := k.c.CommitOffsets(toKafkaOffsets(offsets))
	if err != nil {
		return err
	}
	for _, tp := range res {
		if tp.Error != nil {
			return fmt.Errorf("%s/%d: %w", *tp.Topic, tp.Partition, tp.Error)
		}
	}
	return nil
}

func (k kafkaClient) Seek(offsets []PartitionOffset) ([]PartitionOffset, error) {
	res, err := k.c.SeekPartitions(toKafkaOffsets(offsets))
	if err != nil {
		return offsets, err
	}
	var refused []PartitionOffset
	for i, tp := range res {
		if tp.Error != nil {
			refused = append(refused, offsets[i])
		}
	}
	return refused, nil
}

func toKafkaTPs(tps []TopicPartition) []kafka.TopicPartition {
	out := make([]kafka.TopicPartition, len(tps))
	for i := range tps {
		out[i] = kafka.TopicPartition{Topic: &tps[i].Topic, Partition: tps[i].Partition}
	}
	return out
}

func toKafkaOffsets(offs []PartitionOffset) []kafka.TopicPartition {
	out := make([]kafka.TopicPartition, len(offs))
	for i := range offs {
		out[i] = kafka.TopicPartition{Topic: &offs[i].Topic, Partition: offs[i].Partition, Offset: kafka.Offset(offs[i].Offset)}
		if offs[i].Metadata != "" {
			out[i].Metadata = &offs[i].Metadata
		}
	}
	return out
}

func fromKafkaTPs(tps []kafka.TopicPartition) []TopicPartition {
	out := make([]TopicPartition, len(tps))
	for i, tp := range tps {
		out[i] = TopicPartition{Topic: *tp.Topic, Partition: tp.Partition}
	}
	return out
}

// pollBatch bounds the records taken from librdkafka per lock acquisition.
const pollBatch = 512

// closeTimeout bounds the consumer's close at shutdown.
const closeTimeout = 10 * time.Second

// member is a group's librdkafka consumer: it polls continuously on its own
// goroutine, turns what it gets into calls on the group, and leaves the
// consumer group at shutdown.
type member struct {
	g *group
	c *kafka.Consumer
	// close closes the consumer (c.Close; a test may hang it), within
	// closeTimeout.
	close        func() error
	closeTimeout time.Duration
	// logsDone is closed when the log router has seen the end of the
	// consumer's logs channel, which happens only at the very end of
	// Close: so it is waited for only once Close has returned, never by
	// the group's wait group, or a hung Close would hang the shutdown.
	logsDone chan struct{}
	// nextFetchCheck is when watchFetch looks again (poll goroutine only).
	nextFetchCheck time.Time
}

// startMember creates a group's consumer, subscribes it, and starts the
// group's workers; the caller runs the returned member's run.
func startMember(m *Manager, s Settings, declared bool) (*group, *member, error) {
	cm := m.cfg.configMap(m.kafka, s.Group, s.StartPosition)
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, nil, fmt.Errorf("create consumer for group %q: %w", s.Group, err)
	}
	g := newGroup(m, s, declared)
	g.client = kafkaClient{c}
	mb := &member{g: g, c: c, close: c.Close, closeTimeout: closeTimeout, logsDone: make(chan struct{})}
	if err := c.SubscribeTopics(s.Topics, mb.onRebalance); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("subscribe group %q: %w", s.Group, err)
	}
	go func() {
		defer close(mb.logsDone)
		kafkaclient.RouteLogsFunc(g.logger.With("component", "librdkafka"), c.Logs(), g.onLog)
	}()
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
	var batch []fetched
	for {
		select {
		case <-g.stop:
			mb.shutdown()
			return
		default:
		}
		batch = batch[:0]
		ev := mb.c.Poll(100)
		now := g.m.now().UnixNano()
		for ev != nil {
			switch e := ev.(type) {
			case *kafka.Message:
				if e.TopicPartition.Error == nil {
					batch = append(batch, toFetched(e, g.m.messageIDHeader, idHeader, now))
				}
			case kafka.Error:
				mb.onError(e)
			case kafka.OffsetsCommitted:
				g.metricsCommitted(e.Error, e.Offsets)
			case *kafka.Stats:
				if g.m.onStats != nil {
					g.m.onStats(g.settings.Group, e.String())
				}
			}
			if len(batch) >= pollBatch {
				break
			}
			ev = mb.c.Poll(0)
		}
		g.add(batch)
		g.balanceFlow()
		g.serveResets()
		g.watchStalls()
		mb.watchFetch()
	}
}

// fetchStallAfter is how long a partition this member fetches (not paused
// by flow control) may go without a record while its log end lies beyond
// its position, before it counts as not being fetched.
const fetchStallAfter = 30 * time.Second

// watchFetch checks, every few seconds, that librdkafka fetches every
// partition the group means to fetch: a partition left paused inside
// librdkafka (an application pause survives an unassign and a later assign
// to the same consumer) gets no record while its log grows, and nothing
// else would notice. Such a partition is logged at error level, counted as
// a stall, and resumed. It reads only librdkafka's cached watermarks and
// positions, and the committed offset of a partition that has no position.
func (mb *member) watchFetch() {
	g := mb.g
	now := g.m.now()
	if now.Before(mb.nextFetchCheck) {
		return
	}
	mb.nextFetchCheck = now.Add(5 * time.Second)
	type candidate struct {
		l    *partitionLog
		next int64
	}
	var cands []candidate
	g.mu.Lock()
	for _, l := range g.order {
		if l.paused || l.revoking || now.Sub(l.appendedAt) < fetchStallAfter {
			l.fetchStalled = false
			continue
		}
		cands = append(cands, candidate{l, l.next})
	}
	g.mu.Unlock()
	for _, c := range cands {
		topic, part := c.l.topic, c.l.partition
		_, high, err := mb.c.GetWatermarkOffsets(topic, part)
		if err != nil || high <= 0 {
			continue
		}
		pos := c.next
		tp := []kafka.TopicPartition{{Topic: &topic, Partition: part}}
		if pos < 0 {
			if ps, err := mb.c.Position(tp); err == nil && len(ps) == 1 && ps[0].Offset >= 0 {
				pos = int64(ps[0].Offset)
			} else if cs, err := mb.c.Committed(tp, 5_000); err == nil && len(cs) == 1 && cs[0].Offset >= 0 {
				pos = int64(cs[0].Offset)
			}
		}
		if pos < 0 || high <= pos {
			continue
		}
		g.mu.Lock()
		first := !c.l.fetchStalled && !c.l.gone
		c.l.fetchStalled = !c.l.gone
		g.mu.Unlock()
		if first {
			g.stats.stalls.Add(1)
			g.logger.Error("partition not fetched: its log end lies beyond its position and no record came for a while; resuming it",
				"topic", topic, "partition", part, "position", pos, "log_end", high, "idle", fetchStallAfter)
		}
		if err := mb.c.Resume(tp); err != nil {
			g.logger.Warn("resume a partition that is not fetched", "topic", topic, "partition", part, "err", err)
		}
	}
}

// toFetched turns a polled message into a ready record. Its message ID is
// the gateway's message-id header, else the header idHeader names, else
// "topic/partition/offset".
func toFetched(msg *kafka.Message, header, idHeader string, now int64) fetched {
	tp := msg.TopicPartition
	r := &record{
		offset:    int64(tp.Offset),
		key:       msg.Key,
		value:     msg.Value,
		timestamp: msg.Timestamp,
		size:      len(msg.Key) + len(msg.Value),
		fetched:   now,
	}
	var altID string
	if len(msg.Headers) > 0 {
		r.headers = make([]Header, len(msg.Headers))
	}
	for i, h := range msg.Headers {
		r.headers[i] = Header{Key: h.Key, Value: h.Value}
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
		r.messageID = recordID(*tp.Topic, tp.Partition, r.offset)
	}
	return fetched{topic: *tp.Topic, partition: tp.Partition, r: r}
}

func (mb *member) onError(e kafka.Error) {
	g := mb.g
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

// onRebalance runs inside Poll, on the poll goroutine. Cooperative
// assignors add and remove partitions incrementally; eager ones (range,
// roundrobin) revoke everything and assign the whole new set, which
// librdkafka only accepts through Assign and Unassign.
func (mb *member) onRebalance(c *kafka.Consumer, ev kafka.Event) error {
	g := mb.g
	eager := c.GetRebalanceProtocol() == "EAGER"
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		g.assignedWith(fromKafkaTPs(e.Partitions), mb.committedGaps(e.Partitions))
		if g.settings.StartPosition == StartLatest {
			mb.pinLatest(e.Partitions)
		}
		var err error
		if eager {
			err = c.Assign(e.Partitions)
		} else {
			err = c.IncrementalAssign(e.Partitions)
		}
		if err != nil {
			g.logger.Error("assign partitions", "err", err, "eager", eager)
		}
		// librdkafka keeps an application's pause on a partition through an
		// unassign and a later assign to this same consumer, while the
		// partition's new log starts unpaused: resume every partition given
		// to us, or one paused before a revocation would never be fetched
		// again.
		if err := c.Resume(e.Partitions); err != nil {
			g.logger.Warn("resume assigned partitions", "err", err)
		}
	case kafka.RevokedPartitions:
		g.revoked(fromKafkaTPs(e.Partitions), c.AssignmentLost())
		var err error
		if eager {
			err = c.Unassign()
		} else {
			err = c.IncrementalUnassign(e.Partitions)
		}
		if err != nil {
			g.logger.Error("unassign partitions", "err", err, "eager", eager)
		}
	}
	return nil
}

// committedGaps reads the committed offsets of newly assigned partitions
// and the done ranges their metadata names past them (see gaps.go). When
// they cannot be read, the partitions start without: their records done
// out of order before are delivered again (at least once).
func (mb *member) committedGaps(tps []kafka.TopicPartition) map[tpKey][]offsetRange {
	committed, err := mb.c.Committed(tps, 10_000)
	if err != nil {
		mb.g.logger.Warn("read the committed offsets' metadata; records acknowledged out of order before may be delivered again", "err", err)
		return nil
	}
	var out map[tpKey][]offsetRange
	for _, tp := range committed {
		if tp.Metadata == nil || tp.Offset < 0 {
			continue
		}
		if rs := gapsFrom(*tp.Metadata, int64(tp.Offset)); len(rs) > 0 {
			if out == nil {
				out = make(map[tpKey][]offsetRange)
			}
			out[tpKey{*tp.Topic, tp.Partition}] = rs
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
func (mb *member) pinLatest(tps []kafka.TopicPartition) {
	g, c := mb.g, mb.c
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
	// The ends are read before the records by time: a record written
	// between the two reads is then at or after the end read, and is
	// delivered. (The other order could find no record since the join, then
	// an end beyond records written meanwhile, and skip them.)
	ends := make(map[tpKey]int64, len(need))
	for _, tp := range need {
		_, high, err := c.QueryWatermarkOffsets(*tp.Topic, tp.Partition, 10_000)
		if err != nil {
			g.logger.Warn("query the end of a partition; librdkafka resolves latest itself", "topic", *tp.Topic, "partition", tp.Partition, "err", err)
			continue
		}
		ends[tpKey{*tp.Topic, tp.Partition}] = high
	}
	starts, err := c.OffsetsForTimes(need, 10_000)
	if err != nil {
		g.logger.Warn("look up start offsets by time; librdkafka resolves latest itself", "err", err)
		return
	}
	pinned := make(map[tpKey]kafka.Offset, len(starts))
	for _, tp := range starts {
		k := tpKey{*tp.Topic, tp.Partition}
		end, ok := ends[k]
		switch {
		case !ok:
			continue
		case tp.Offset >= 0 && int64(tp.Offset) < end:
			pinned[k] = tp.Offset
		default: // nothing written since the join, as of the end read first
			pinned[k] = kafka.Offset(end)
		}
	}
	var commit []kafka.TopicPartition
	for i, tp := range tps {
		if off, ok := pinned[tpKey{*tp.Topic, tp.Partition}]; ok {
			tps[i].Offset = off
			commit = append(commit, tps[i])
		}
	}
	_, err = c.CommitOffsets(commit)
	g.metricsCommit(err)
	if err != nil {
		g.logger.Warn("commit the pinned start offsets", "err", err)
	}
	g.logger.Info("start position pinned (latest, no committed offset)", "partitions", len(commit))
}

// shutdown runs on the poll goroutine: the group drains and commits, then
// the consumer closes while its partitions are still assigned, so the close
// path revokes them (the callback changes nothing: the group has forgotten
// them and skips its commit) and sends LeaveGroup. Unsubscribing first and
// closing once the assignment looked empty could close before the leave
// was sent, leaving the member to expire by session timeout.
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
		<-mb.logsDone
	case <-time.After(mb.closeTimeout):
		g.logger.Error("consumer close did not finish in time; abandoning it", "timeout", mb.closeTimeout)
	}
	g.wg.Wait()
	g.logger.Info("consumer group left", "committed", committed)
}

func isNoOffset(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.Code() == kafka.ErrNoOffset
}
