// Package consume runs the gateway's consumer groups: long-lived librdkafka
// consumers that push records to app streams, take explicit acks, commit
// only the contiguous acked prefix of each partition, redeliver what is not
// acked in time, and dead-letter what keeps failing. It knows nothing of
// gRPC.
package consume

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"golang.org/x/time/rate"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// Producer writes dead-lettered records.
type Producer interface {
	Produce(ctx context.Context, topic string, records []produce.Record) ([]produce.Result, error)
}

// SubscribeRequest asks to attach a stream to a group. Zero values take the
// configured defaults.
type SubscribeRequest struct {
	Group         string
	Topics        []string
	Ordering      Ordering
	MaxInFlight   int
	AckTimeout    time.Duration
	StartPosition StartPosition
	MaxAttempts   int
	// DeliveryRate bounds the records per second pushed to the stream
	// (nil or an infinite rate: no bound). Its rate may change while the
	// stream runs.
	DeliveryRate *rate.Limiter
	// Identity is the caller's: a group it starts here counts against
	// consumer.max_groups_per_identity.
	Identity string
	// Credited makes a Consume stream: records are sent only within the
	// credit granted with Stream.Grant (none at first), and deliveries are
	// named by tokens for Stream.Settle.
	Credited bool
}

// Manager owns every consumer group of this gateway.
type Manager struct {
	cfg             Config
	kafka           kafkaclient.Config
	logger          *slog.Logger
	producer        Producer
	messageIDHeader string
	admin           *kafka.AdminClient
	dd              *Dedupe // nil: no dedupe
	now             func() time.Time
	signer          *ackSigner

	buffered      atomic.Int64 // bytes of fetched, unfinished records, all groups
	groupsRefused atomic.Int64 // Subscribes refused for the group bounds
	active        atomic.Int32 // groups whose consumer runs, for the fair byte share
	onStats       func(group, json string)

	mu       sync.Mutex
	groups   map[string]*group
	counters map[string]*counters // every group run since start, by name
	closed   bool
	wg       sync.WaitGroup // group goroutines
}

// New creates the manager. messageIDHeader names the header holding a
// record's message ID; producer writes dead letters; dd, when not nil, turns
// on consumer-side dedupe.
func New(kc kafkaclient.Config, cfg Config, producer Producer, messageIDHeader string, dd *Dedupe, logger *slog.Logger) (*Manager, error) {
	cm := kc.ConfigMap(nil, nil)
	// An admin client cannot route its logs into slog (the Go client has no
	// logs channel for it) and would print them to stderr, breaking JSON
	// logs; its connection errors are the producer's and consumers' too,
	// which are routed, and admin calls return their own errors.
	cm["log_level"] = 0
	admin, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return nil, fmt.Errorf("create admin client: %w", err)
	}
	return &Manager{
		cfg:             cfg,
		kafka:           kc,
		logger:          logger,
		producer:        producer,
		messageIDHeader: messageIDHeader,
		admin:           admin,
		dd:              dd,
		now:             time.Now,
		signer:          newAckSigner(),
		groups:          make(map[string]*group),
		counters:        make(map[string]*counters),
	}, nil
}

// Run starts the subscriptions declared in config and serves until ctx is
// done; then every group drains (in-flight acks, bounded by drain_timeout),
// commits, ends its streams, and leaves. Groups started by Subscribe that
// stay without a stream for idle_timeout leave meanwhile.
func (m *Manager) Run(ctx context.Context) error {
	defer m.admin.Close()
	for i, sc := range m.cfg.Subscriptions {
		s, err := m.cfg.settings(fmt.Sprintf("consumer.subscriptions[%d]", i), sc.Group, sc.Topics, sc.Ordering, sc.StartPosition, sc.AckTimeout, sc.MaxAttempts)
		if err == nil {
			_, err = m.group(s, true, "")
		}
		if err != nil {
			m.shutdownAll()
			return err
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdownAll()
			return nil
		case <-tick.C:
			m.reapIdle()
		}
	}
}

func (m *Manager) shutdownAll() {
	m.mu.Lock()
	m.closed = true
	for _, g := range m.groups {
		g.beginShutdown()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *Manager) reapIdle() {
	if m.cfg.IdleTimeout <= 0 {
		return
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, g := range m.groups {
		if idle := g.idleSince(); !g.declared && !idle.IsZero() && now.Sub(idle) >= m.cfg.IdleTimeout {
			g.logger.Info("no stream attached for the idle timeout; leaving the group", "idle_timeout", m.cfg.IdleTimeout)
			delete(m.groups, name)
			g.beginShutdown()
		}
	}
}

// group returns the running group for s, starting it if needed. It fails
// with ErrConflict when the group runs with other settings.
func (m *Manager) group(s Settings, declared bool, starter string) (*group, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if g, ok := m.groups[s.Group]; ok {
		if diff, same := g.settings.sameAs(s); !same {
			return nil, fmt.Errorf("group %q runs with %s: %w", s.Group, diff, ErrConflict)
		}
		return g, nil
	}
	if !declared {
		mine := 0
		for _, g := range m.groups {
			if !g.declared && g.starter == starter {
				mine++
			}
		}
		switch {
		case len(m.groups) >= m.cfg.MaxGroups:
			m.groupsRefused.Add(1)
			return nil, fmt.Errorf("%w: this gateway runs consumer.max_groups (%d) groups already", ErrTooManyGroups, m.cfg.MaxGroups)
		case mine >= m.cfg.MaxGroupsPerIdentity:
			m.groupsRefused.Add(1)
			return nil, fmt.Errorf("%w: identity %q started consumer.max_groups_per_identity (%d) groups on this gateway already", ErrTooManyGroups, starter, m.cfg.MaxGroupsPerIdentity)
		}
	}
	g, mb, err := startMember(m, s, declared)
	if err != nil {
		return nil, err
	}
	g.starter = starter
	m.groups[s.Group] = g
	m.forgetCountersLocked()
	m.active.Add(1)
	m.wg.Go(func() {
		mb.run()
		m.active.Add(-1)
		m.mu.Lock()
		if m.groups[s.Group] == g {
			delete(m.groups, s.Group)
		}
		g.stats.stopped = m.now()
		m.forgetCountersLocked()
		m.mu.Unlock()
	})
	return g, nil
}

// Subscribe attaches a new stream to a group, starting the group's consumer
// if this gateway does not run it yet. Close the stream when done.
func (m *Manager) Subscribe(ctx context.Context, req SubscribeRequest) (*Stream, error) {
	if req.MaxInFlight < 0 {
		return nil, invalid.Field("max_in_flight", "must not be negative")
	}
	if req.MaxInFlight == 0 {
		req.MaxInFlight = m.cfg.MaxInFlight
	}
	// A setting left unspecified takes the group's, when the group runs
	// here already; else the configured default.
	m.mu.Lock()
	if g, ok := m.groups[req.Group]; ok {
		run := g.settings
		if req.Ordering == 0 {
			req.Ordering = run.Ordering
		}
		if req.StartPosition == 0 {
			req.StartPosition = run.StartPosition
		}
		if req.AckTimeout == 0 {
			req.AckTimeout = run.AckTimeout
		}
		if req.MaxAttempts == 0 {
			req.MaxAttempts = run.MaxAttempts
		}
	}
	m.mu.Unlock()
	var ordering, start string
	if req.Ordering != 0 {
		ordering = req.Ordering.String()
	}
	if req.StartPosition != 0 {
		start = req.StartPosition.String()
	}
	s, err := m.cfg.settings("", req.Group, req.Topics, ordering, start, req.AckTimeout, req.MaxAttempts)
	if err != nil {
		return nil, err
	}
	if err := m.checkTopics(ctx, s.Topics); err != nil {
		return nil, err
	}
	g, err := m.group(s, false, req.Identity)
	if err != nil {
		return nil, err
	}
	st := newStream(g, req.MaxInFlight, req.DeliveryRate, req.Credited)
	g.attach(st)
	return st, nil
}

// checkTopics fails with ErrUnknownTopic naming the first missing topic.
func (m *Manager) checkTopics(ctx context.Context, topics []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := m.admin.DescribeTopics(ctx, kafka.NewTopicCollectionOfTopicNames(topics))
	if err != nil {
		return fmt.Errorf("describe topics: %w", kafkaclient.Classify(err))
	}
	for i, d := range res.TopicDescriptions {
		if code := d.Error.Code(); code != kafka.ErrNoError {
			return fmt.Errorf("topics[%d] %q: %w", i, d.Name, kafkaclient.Classify(d.Error))
		}
	}
	return nil
}

// lookup returns the group named name, or an INVALID_ARGUMENT error.
func (m *Manager) lookup(name string) (*group, error) {
	if name == "" {
		return nil, invalid.Field("group", "must not be empty")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.groups[name]
	if !ok {
		if m.closed {
			return nil, ErrClosed
		}
		// Not a bad request: this gateway may have restarted since it
		// delivered the records (their ack IDs carry an epoch of before),
		// or the group stopped here. Like any ack of a partition this
		// gateway no longer owns, it moves nothing, and the records are
		// redelivered by their owner.
		return nil, fmt.Errorf("group %q does not run on this gateway: %w", name, ErrStaleAck)
	}
	return g, nil
}

// ackIDs parses and verifies the ack IDs of a group: malformed text is
// INVALID_ARGUMENT naming the field; an ID whose signature does not verify
// (altered, guessed, of another group, or of an earlier run of this
// gateway) is ErrStaleAck, like an ID of a partition no longer owned, so the
// answer tells nothing more.
func (m *Manager) ackIDs(group string, ids []string) ([]AckID, error) {
	if len(ids) == 0 {
		return nil, invalid.Field("ack_ids", "must not be empty")
	}
	out := make([]AckID, len(ids))
	for i, s := range ids {
		id, mac, err := ParseAckID(fmt.Sprintf("ack_ids[%d]", i), s)
		if err != nil {
			return nil, err
		}
		if !m.signer.verify(group, id, mac) {
			return nil, fmt.Errorf("ack_ids[%d]: not issued by this gateway process for group %q: %w", i, group, ErrStaleAck)
		}
		out[i] = id
	}
	return out, nil
}

// confirmWait bounds how long an Ack waits for its done markers.
const confirmWait = 10 * time.Second

// Ack acknowledges deliveries of a group. It applies all IDs or none: it
// fails with ErrStaleAck, applying nothing, when an ID names a delivery
// that is not the latest of its record on this gateway. With dedupe it
// returns once the records' done markers are in Redis, so an acknowledged
// message is never delivered again, even if this gateway dies right after;
// if the markers are not written within ctx (or 10 s), it fails with
// ErrConfirmPending: the ack stays applied, and repeating it is safe (it
// waits again). A done marker that finds another delivery's claim (this
// delivery's lease had lapsed) fails the Ack with ErrStaleAck: that record
// was not settled by it.
func (m *Manager) Ack(ctx context.Context, group string, ackIDs []string) error {
	ids, err := m.ackIDs(group, ackIDs)
	if err != nil {
		return err
	}
	g, err := m.lookup(group)
	if err != nil {
		return err
	}
	waits, err := g.ack(ids)
	if err != nil || len(waits) == 0 {
		return err
	}
	timeout := time.NewTimer(confirmWait)
	defer timeout.Stop()
	for _, c := range waits {
		select {
		case <-c.done:
			if c.err != nil {
				return c.err
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrConfirmPending, ctx.Err())
		case <-timeout.C:
			return ErrConfirmPending
		}
	}
	return nil
}

// Extend moves the ack deadlines of deliveries of a group out to by from
// now (at most consumer.max_lease after each delivery began; a deadline
// already later stays) and returns each delivery's ack deadline. It
// applies all IDs or none: ErrStaleAck when a delivery is not live (not
// the latest of its record, its deadline passed, nacked, revoked),
// ErrAlreadyAcked for a record acknowledged. With dedupe each claim's lease
// in Redis moves first, so that no other gateway claims the message while
// the app works on it; when Redis does not confirm that within ctx (or
// 10 s), it fails with ErrExtendPending and the deadlines not confirmed
// stand as they were.
func (m *Manager) Extend(ctx context.Context, group string, ackIDs []string, by time.Duration) ([]time.Time, error) {
	if by <= 0 || by > m.cfg.MaxAckTimeout {
		return nil, invalid.Field("extension", "is %v; it must be positive and at most consumer.max_ack_timeout (%v)", by, m.cfg.MaxAckTimeout)
	}
	ids, err := m.ackIDs(group, ackIDs)
	if err != nil {
		return nil, err
	}
	g, err := m.lookup(group)
	if err != nil {
		return nil, err
	}
	deadlines, waits, err := g.extend(ids, by)
	if err != nil {
		return nil, err
	}
	timeout := time.NewTimer(confirmWait)
	defer timeout.Stop()
	for _, c := range waits {
		select {
		case <-c.done:
			if c.err != nil {
				return nil, c.err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrExtendPending, ctx.Err())
		case <-timeout.C:
			return nil, ErrExtendPending
		}
	}
	return deadlines, nil
}

// Nack rejects records of a group. It applies all IDs or none.
func (m *Manager) Nack(group string, ackIDs []string, opts NackOptions) error {
	ids, err := m.ackIDs(group, ackIDs)
	if err != nil {
		return err
	}
	if opts.RetryAfter < 0 {
		return invalid.Field("retry_after", "must not be negative")
	}
	if opts.RetryAfter > m.cfg.MaxRetryAfter {
		return invalid.Field("retry_after", "is %v; at most consumer.max_retry_after (%v) is allowed", opts.RetryAfter, m.cfg.MaxRetryAfter)
	}
	g, err := m.lookup(group)
	if err != nil {
		return err
	}
	if len(opts.Reason) > 1024 {
		return invalid.Field("reason", "is %d bytes long; at most 1024 are allowed", len(opts.Reason))
	}
	return g.nack(ids, opts)
}

// Degraded reports whether some group cannot reach Redis for dedupe.
func (m *Manager) Degraded() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.groups {
		if g.settle.degraded() {
			return true
		}
	}
	return false
}

// createTopic creates a missing dead-letter topic: one partition, the
// broker's default replication.
func (m *Manager) createTopic(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := m.admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: -1}})
	if err != nil {
		return fmt.Errorf("create dead-letter topic %q: %w", topic, err)
	}
	if code := res[0].Error.Code(); code != kafka.ErrNoError && code != kafka.ErrTopicAlreadyExists {
		return fmt.Errorf("create dead-letter topic %q: %w", topic, res[0].Error)
	}
	m.logger.Info("created dead-letter topic", "topic", topic)
	// The producer remembers "unknown" for a second; give metadata time.
	time.Sleep(time.Second)
	return nil
}
