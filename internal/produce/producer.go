// Package produce writes records to Kafka through one long-lived, idempotent
// librdkafka producer and reports each record's fate from the broker's
// delivery report. It knows nothing of gRPC.
package produce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/msgid"
)

var (
	// ErrClosed is returned for calls made after shutdown began.
	ErrClosed = errors.New("producer is shutting down")
	// ErrQueueFull means the local queue stayed full for the whole wait.
	ErrQueueFull = errors.New("local producer queue full")
	// ErrUnknownTopic means the topic does not exist (and auto-creation is
	// off, or the broker refuses it).
	ErrUnknownTopic = kafkaclient.ErrUnknownTopic
)

// Record is one record to write.
type Record struct {
	Key   []byte
	Value []byte
	// Headers are written after the message-id header, in order.
	Headers []Header
	// Partition is the explicit partition, or AnyPartition.
	Partition int32
	// Timestamp is the record's CreateTime; zero means now.
	Timestamp time.Time
	// IdempotencyKey, when set, becomes the record's message ID.
	IdempotencyKey string
}

// AnyPartition lets the partitioner choose from the key.
const AnyPartition = kafka.PartitionAny

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Result is the fate of one record.
type Result struct {
	Partition int32
	size      int32 // Bytes; here it takes what was padding
	Offset    int64
	Timestamp time.Time
	MessageID string
	// Err is nil when the broker acknowledged the record. Otherwise it wraps
	// one of the kafkaclient error kinds, ErrQueueFull or ErrClosed.
	Err error

	batch *Batch // for the delivery report handler
}

// Batch is a group of records in flight. Its results are complete, and safe
// to read, once the batch has been sent on the channel given to Send.
type Batch struct {
	// Tag is free for the caller, for example to carry a request ID.
	Tag       any
	Results   []Result
	remaining atomic.Int32
	notify    chan<- *Batch
	start     time.Time
	obs       BatchObserver // nil: not observed
	// enqueued is how many records, from the first, Send handed to
	// librdkafka; the others failed before with unsent (queue full,
	// shutting down). Written by Send before it returns.
	enqueued int
	unsent   error
}

// Unsent returns the error that kept Send from enqueueing the batch's
// records from index Enqueued() on (ErrQueueFull when the queue stayed
// full, ErrClosed when shutdown began, ...), or nil when Send enqueued
// every record. Those records carry it in their Result and were not
// written. It may be called as soon as Send has returned.
func (b *Batch) Unsent() error { return b.unsent }

// Enqueued returns how many of the batch's records, from the first, Send
// enqueued. It may be called as soon as Send has returned.
func (b *Batch) Enqueued() int { return b.enqueued }

// finish accounts for n finished records and notifies when none remain.
func (b *Batch) finish(n int32) {
	if b.remaining.Add(-n) == 0 {
		if b.obs != nil {
			b.obs.BatchDone(b.Results, time.Since(b.start))
		}
		b.notify <- b
	}
}

// Producer writes records. Create it with New and run it with Run.
type Producer struct {
	cfg    Config
	logger *slog.Logger
	kp     *kafka.Producer
	ids    *msgid.Generator
	topics *topicCache

	idem       IdempotencyStore // nil: idempotency keys only name messages
	idemWindow time.Duration

	observer       Observer // nil: no metrics
	topicObservers sync.Map // topic → BatchObserver
	onStats        func(json string)

	// stopping is closed when shutdown begins; queue-full waits end on it.
	stopping  chan struct{}
	closeOnce sync.Once
	// reportsEnded is closed once the last delivery report was handled:
	// a batch not complete by then never will be.
	reportsEnded chan struct{}
	// settling runs the idempotency bookkeeping that outlives its call.
	settling background

	// mu orders Send against shutdown: Send holds it for reading while it
	// enqueues, shutdown takes it for writing before flushing, so nothing is
	// enqueued after the flush begins.
	mu     sync.RWMutex
	closed bool
}

// New creates the producer. It connects in the background; nothing is
// written until Run is called.
func New(kc kafkaclient.Config, cfg Config, logger *slog.Logger) (*Producer, error) {
	cm := cfg.ConfigMap(kc)
	kp, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	p := &Producer{
		cfg:          cfg,
		logger:       logger,
		kp:           kp,
		ids:          msgid.New(nil),
		stopping:     make(chan struct{}),
		reportsEnded: make(chan struct{}),
	}
	p.topics = newTopicCache(p.lookupTopic, time.Now)
	if cfg.AutoCreateTopics {
		// A record may wait that long for the broker anyway.
		p.topics.createWait = cfg.DeliveryTimeout
	}
	return p, nil
}

// Run handles delivery reports and client events until ctx is done, then
// shuts down: it stops accepting records, flushes within the configured
// timeout, fails whatever is still queued, closes the client, and waits for
// the idempotency keys of the last reports to be settled in the store. It
// returns early with an error when the producer hits a fatal error;
// shutdown runs then too.
func (p *Producer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { kafkaclient.RouteLogs(p.logger.With("component", "librdkafka"), p.kp.Logs()) })
	fatal := make(chan error, 1)
	wg.Go(func() { p.handleEvents(fatal) })

	var err error
	select {
	case <-ctx.Done():
	case err = <-fatal:
	}
	p.shutdown()
	wg.Wait()
	close(p.reportsEnded)
	p.settling.close()
	return err
}

// shutdown stops intake, flushes, purges what is left, and closes the client.
// Every record ever enqueued gets its delivery report (success or failure)
// before the client closes, so no caller waits forever.
func (p *Producer) shutdown() {
	p.closeOnce.Do(func() { close(p.stopping) })
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()

	start := time.Now()
	left := p.kp.Flush(int(p.cfg.FlushTimeout.Milliseconds()))
	if left > 0 {
		p.logger.Warn("producer flush timed out; failing the records still queued",
			"records", left, "timeout", p.cfg.FlushTimeout)
		if err := p.kp.Purge(kafka.PurgeQueue | kafka.PurgeInFlight); err != nil {
			p.logger.Error("purge producer queue", "err", err)
		}
		// The purged records' reports come through the events channel.
		p.kp.Flush(5_000)
	}
	p.kp.Close() // closes Events and Logs, ending the handler goroutines
	p.logger.Info("producer closed", "flush", time.Since(start).Round(time.Millisecond))
}

// handleEvents completes records from delivery reports. It owns nothing but
// the results it writes, and returns when the events channel closes.
func (p *Producer) handleEvents(fatal chan<- error) {
	var brokersDown bool
	for ev := range p.kp.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			r, ok := e.Opaque.(*Result)
			if !ok {
				continue
			}
			if err := e.TopicPartition.Error; err != nil {
				r.Err = kafkaclient.Classify(err)
			} else {
				r.Partition = e.TopicPartition.Partition
				r.Offset = int64(e.TopicPartition.Offset)
			}
			r.batch.finish(1)
		case *kafka.Stats:
			if p.onStats != nil {
				p.onStats(e.String())
			}
		case kafka.Error:
			switch {
			case e.IsFatal():
				p.logger.Error("producer fatal error", "err", e)
				select {
				case fatal <- fmt.Errorf("producer: %w", e):
				default:
				}
			case e.Code() == kafka.ErrAllBrokersDown:
				if !brokersDown {
					p.logger.Warn("all Kafka brokers are down", "err", e)
				}
				brokersDown = true
			default:
				p.logger.Debug("producer error event", "err", e)
			}
		default:
			if brokersDown {
				brokersDown = false
				p.logger.Info("Kafka brokers reachable again")
			}
		}
	}
}

// Produce writes records to topic and waits for every delivery report, or
// for ctx. It returns an error without results only when nothing was
// enqueued (bad input, unknown topic, shutting down) or ctx ended first.
// With idempotency enabled, a record whose idempotency key was written
// before is not written again (see produceIdempotent).
func (p *Producer) Produce(ctx context.Context, topic string, records []Record) ([]Result, error) {
	if p.Idempotent(records) {
		return p.produceIdempotent(ctx, topic, records)
	}
	return p.produce(ctx, topic, records)
}

func (p *Producer) produce(ctx context.Context, topic string, records []Record) ([]Result, error) {
	done := make(chan *Batch, 1)
	b, err := p.Send(ctx, topic, records, done, nil)
	if err != nil {
		return nil, err
	}
	select {
	case <-done:
		return b.Results, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send validates records and enqueues them in order, then returns at once.
// When every record of the batch has its result, the batch is sent on
// notify; the caller must give notify room for every batch it has in flight,
// because the delivery report handler never blocks on it. tag is stored in
// Batch.Tag.
//
// Send returns an error, and notifies nothing, when the batch is rejected as
// a whole: *invalid.Error for bad input, ErrUnknownTopic, ErrClosed, or
// kafkaclient.ErrUnavailable when the topic's metadata cannot be read.
// Records that cannot be enqueued (queue full until the wait ends) get their
// error in their Result.
func (p *Producer) Send(ctx context.Context, topic string, records []Record, notify chan<- *Batch, tag any) (*Batch, error) {
	if err := p.validate(topic, records); err != nil {
		return nil, err
	}
	partitions, err := p.topics.get(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := p.validatePartitions(topic, partitions, records); err != nil {
		return nil, err
	}

	obs := p.batchObserver(topic)

	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}

	b := &Batch{Tag: tag, Results: make([]Result, len(records)), notify: notify, obs: obs}
	if obs != nil {
		b.start = time.Now()
	}
	b.remaining.Store(int32(len(records)))
	b.enqueued = len(records) // unless a record fails below
	wait := p.queueWait(ctx)
	// librdkafka's delivery reports do not carry the timestamp through the Go
	// client, so the gateway sets CreateTime itself and reports what it set.
	received := time.Now().Truncate(time.Millisecond)
	// One Message and one header slice serve every record: librdkafka copies
	// them during Produce.
	msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic}}
	var headers []kafka.Header
	for i := range records {
		rec := &records[i]
		res := &b.Results[i]
		res.batch = b
		res.MessageID = rec.IdempotencyKey
		if res.MessageID == "" {
			res.MessageID = p.ids.Next()
		}
		headers = append(headers[:0], kafka.Header{Key: p.cfg.MessageIDHeader, Value: []byte(res.MessageID)})
		size := len(rec.Key) + len(rec.Value)
		for _, h := range rec.Headers {
			headers = append(headers, kafka.Header{Key: h.Key, Value: h.Value})
			size += len(h.Key) + len(h.Value)
		}
		res.size = int32(size)
		msg.TopicPartition.Partition = rec.Partition
		msg.Key, msg.Value, msg.Headers = rec.Key, rec.Value, headers
		msg.Timestamp = received
		if !rec.Timestamp.IsZero() {
			msg.Timestamp = rec.Timestamp.Truncate(time.Millisecond)
		}
		res.Timestamp = msg.Timestamp
		msg.Opaque = res
		if err := p.enqueue(&msg, wait); err != nil {
			b.enqueued, b.unsent = i, err
			// Fail this record and every later one: writing the later ones
			// could reorder records that share a key.
			for j := i; j < len(records); j++ {
				b.Results[j].Err = err
				if j > i {
					b.Results[j].MessageID = records[j].IdempotencyKey
					b.Results[j].size = int32(recordBytes(&records[j]))
				}
			}
			b.finish(int32(len(records) - i))
			break
		}
	}
	return b, nil
}

// enqueue hands one message to librdkafka, waiting for room while the queue
// is full until wait ends.
func (p *Producer) enqueue(msg *kafka.Message, wait *queueWait) error {
	for {
		err := p.kp.Produce(msg, nil)
		if err == nil {
			return nil
		}
		var kerr kafka.Error
		if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			return kafkaclient.Classify(err)
		}
		if err := wait.sleep(p.stopping); err != nil {
			return err
		}
	}
}

// queueWait paces retries while the local queue is full.
type queueWait struct {
	ctx      context.Context
	deadline time.Time
	backoff  time.Duration
}

func (p *Producer) queueWait(ctx context.Context) *queueWait {
	deadline := time.Now().Add(p.cfg.QueueFullWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return &queueWait{ctx: ctx, deadline: deadline, backoff: 500 * time.Microsecond}
}

// sleep waits for the next retry; it fails with ErrQueueFull once the
// deadline is reached, with ErrClosed when the producer stops.
func (w *queueWait) sleep(stopping <-chan struct{}) error {
	left := time.Until(w.deadline)
	if left <= 0 {
		return ErrQueueFull
	}
	t := time.NewTimer(min(w.backoff, left))
	defer t.Stop()
	w.backoff = min(2*w.backoff, 20*time.Millisecond)
	select {
	case <-t.C:
		return nil
	case <-w.ctx.Done():
		return fmt.Errorf("%w: %w", ErrQueueFull, w.ctx.Err())
	case <-stopping:
		return ErrClosed
	}
}

// lookupTopic asks the cluster for topic's partition count.
func (p *Producer) lookupTopic(ctx context.Context, topic string) (int32, error) {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout < time.Millisecond {
		return 0, context.DeadlineExceeded
	}
	md, err := p.kp.GetMetadata(&topic, false, int(timeout.Milliseconds()))
	if err != nil {
		return 0, fmt.Errorf("read metadata of topic %q: %w", topic, kafkaclient.Classify(err))
	}
	tm, ok := md.Topics[topic]
	if !ok {
		return 0, fmt.Errorf("topic %q: %w", topic, ErrUnknownTopic)
	}
	switch tm.Error.Code() {
	case kafka.ErrNoError:
		return int32(len(tm.Partitions)), nil
	case kafka.ErrLeaderNotAvailable:
		// Being created (auto-create) or electing a leader: let librdkafka
		// wait for it; the partition count is not known yet.
		return 0, nil
	default:
		return 0, fmt.Errorf("topic %q: %w", topic, kafkaclient.Classify(tm.Error))
	}
}
