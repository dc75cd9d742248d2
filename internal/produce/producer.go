// Package produce writes records to Kafka through one long-lived, idempotent
// librdkafka producer and reports each record's fate from the broker's
// delivery report. It knows nothing of gRPC.
//
// The producer runs on its own librdkafka handle through the gateway's
// binding (package rdkafka): a batch goes into librdkafka in one cgo call,
// concurrent calls' batches coalesced (enqueuer), each record carrying an
// integer opaque (slotTable); delivery reports come back in bulk to one
// poller goroutine, which also routes librdkafka's logs, statistics and
// error events.
package produce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/msgid"
	"github.com/kafkagate/gateway/internal/rdkafka"
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
	// Key and Value nil are null (a null value is a tombstone on a
	// compacted topic); non-nil and empty are empty.
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
const AnyPartition = rdkafka.PartitionAny

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
	// unwritten is set, with Err, when librdkafka knows the record is not
	// in the topic (its status "not persisted": never sent, or refused by
	// the broker). A failed record without it may have been written.
	unwritten bool
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
	slot     uint32 // in the producer's slot table, while reports are due
	slots    *slotTable
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
		if b.slots != nil {
			b.slots.release(b.slot)
		}
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
	eng    engine
	ids    *msgid.Generator
	topics *topicCache
	slots  slotTable
	enq    enqueuer
	// pool recycles the message slices of Send.
	pool sync.Pool

	idem       IdempotencyStore // nil: idempotency keys only name messages
	idemWindow time.Duration
	// finder looks for the records of idempotency keys whose writers
	// vanished; settleMargin is the time reservations allow beyond the
	// producer's own timeouts (tests shorten it).
	finder       recordFinder
	settleMargin time.Duration
	// javaKeys: the partitioner maps a key as the Java client does, so a
	// keyed record's partition is known before it is written.
	javaKeys bool

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
	props := cfg.LibrdkafkaProperties(kc)
	eng, err := rdkafka.NewProducer(props)
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	p := newProducer(eng, cfg, logger)
	p.finder = &kafkaFinder{kafka: kc, header: cfg.MessageIDHeader, partitions: p.lookupTopic, logger: logger, maxBytes: findMaxBytes}
	switch props["partitioner"] {
	case "murmur2", "murmur2_random":
		p.javaKeys = true
	}
	return p, nil
}

// newProducer makes a producer on eng (a fake one in tests).
func newProducer(eng engine, cfg Config, logger *slog.Logger) *Producer {
	p := &Producer{
		cfg:          cfg,
		logger:       logger,
		eng:          eng,
		ids:          msgid.New(nil),
		stopping:     make(chan struct{}),
		reportsEnded: make(chan struct{}),
		settleMargin: 10 * time.Second,
	}
	p.enq = enqueuer{eng: eng, stopping: p.stopping}
	p.topics = newTopicCache(p.lookupTopic, time.Now)
	if cfg.AutoCreateTopics {
		// A record may wait that long for the broker anyway.
		p.topics.createWait = cfg.DeliveryTimeout
	}
	return p
}

// Run handles delivery reports and client events until ctx is done, then
// shuts down: it stops accepting records, flushes within the configured
// timeout, fails whatever is still queued, closes the client, and waits for
// the idempotency keys of the last reports to be settled in the store. It
// returns early with an error when the producer hits a fatal error;
// shutdown runs then too.
func (p *Producer) Run(ctx context.Context) error {
	fatal := make(chan error, 1)
	stopPolling := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		p.poll(stopPolling, fatal)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-fatal:
	}
	p.shutdown()
	close(stopPolling)
	<-polled
	p.eng.Close()
	close(p.reportsEnded)
	p.settling.close()
	return err
}

// pollWait is how long one poll of librdkafka waits for something to
// happen; it returns at once when reports are already waiting.
const pollWait = 100 * time.Millisecond

// poll is the one goroutine that polls librdkafka: it completes records
// from their delivery reports, in bulk, and routes logs, statistics and
// error events, until stop closes; then it drains what is left. It owns
// nothing but the results it writes.
func (p *Producer) poll(stop <-chan struct{}, fatal chan<- error) {
	logger := p.logger.With("component", "librdkafka")
	var reports []rdkafka.Report
	var batches []*Batch
	brokersDown := false
	for {
		var stopping bool
		select {
		case <-stop:
			stopping = true
		default:
		}
		wait := pollWait
		if stopping {
			wait = 0
		}
		reports = p.eng.Poll(wait, reports[:0])
		if len(reports) > 0 {
			batches = p.slots.lookup(func(i int) uint64 { return reports[i].Opaque }, len(reports), batches[:0])
			// Reports of one batch mostly come together: each run of them
			// finishes its batch's count once.
			var run *Batch
			var n int32
			for i := range reports {
				b := batches[i]
				if b != run {
					if run != nil {
						run.finish(n)
					}
					run, n = b, 0
				}
				fill(b, &reports[i])
				n++
			}
			run.finish(n)
			clear(batches)
			if brokersDown && reports[len(reports)-1].Err == 0 {
				brokersDown = false
				logger.Info("Kafka brokers reachable again")
			}
		}
		logs, stats, errs := p.eng.Events()
		for _, l := range logs {
			logger.Log(context.Background(), kafkaclient.SyslogLevel(l.Level), l.Message, "facility", l.Facility)
		}
		if p.onStats != nil {
			for _, st := range stats {
				p.onStats(st)
			}
		}
		for _, e := range errs {
			switch {
			case e.Fatal:
				p.logger.Error("producer fatal error", "err", e.Message, "code", e.Code.String())
				select {
				case fatal <- fmt.Errorf("producer: fatal error %s: %s", e.Code, e.Message):
				default:
				}
			case e.Code == rdkafka.ErrAllBrokersDown:
				if !brokersDown {
					p.logger.Warn("all Kafka brokers are down", "err", e.Message)
				}
				brokersDown = true
			default:
				p.logger.Debug("producer error event", "err", e.Message, "code", e.Code.String())
			}
		}
		if stopping && len(reports) == 0 {
			return
		}
	}
}

// fill writes one record's result from its delivery report.
func fill(b *Batch, r *rdkafka.Report) {
	res := &b.Results[uint32(r.Opaque)]
	if r.Err != 0 {
		res.Err = classifyReport(r)
		res.unwritten = r.Status == rdkafka.NotPersisted
	} else {
		res.Partition = r.Partition
		res.Offset = r.Offset
	}
}

// shutdown stops intake, flushes, and purges what is left. Every record
// ever enqueued gets its delivery report (success or failure) before the
// poller stops, so no caller waits forever.
func (p *Producer) shutdown() {
	p.closeOnce.Do(func() { close(p.stopping) })
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()

	start := time.Now()
	left := p.eng.Flush(p.cfg.FlushTimeout)
	if left > 0 {
		p.logger.Warn("producer flush timed out; failing the records still queued",
			"records", left, "timeout", p.cfg.FlushTimeout)
		if err := p.eng.Purge(true); err != nil {
			p.logger.Error("purge producer queue", "err", err)
		}
		// The purged records' reports come through the poller.
		p.eng.Flush(5 * time.Second)
	}
	p.logger.Info("producer closed", "flush", time.Since(start).Round(time.Millisecond))
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

	b := &Batch{Tag: tag, Results: make([]Result, len(records)), notify: notify, obs: obs, slots: &p.slots}
	if obs != nil {
		b.start = time.Now()
	}
	b.remaining.Store(int32(len(records)))
	b.enqueued = len(records) // unless a record fails below
	b.slot = p.slots.take(b)
	// The gateway sets CreateTime itself and reports what it set.
	received := time.Now().Truncate(time.Millisecond)
	msgs := p.messages(len(records))
	// One header slice holds every record's headers: the message ID first,
	// then the record's own. The message IDs are made in bulk into one
	// arena, with the idempotency keys after them, so a batch allocates
	// them twice (the bytes, and the one string the results slice), not
	// per record.
	nh, fresh, keyBytes := len(records), 0, 0
	for i := range records {
		nh += len(records[i].Headers)
		if k := records[i].IdempotencyKey; k == "" {
			fresh++
		} else {
			keyBytes += len(k)
		}
	}
	arena := make([]byte, fresh*msgid.Len, fresh*msgid.Len+keyBytes)
	p.ids.Fill(arena)
	for i := range records {
		arena = append(arena, records[i].IdempotencyKey...)
	}
	ids := string(arena[:fresh*msgid.Len])
	headers := make([]rdkafka.Header, 0, nh)
	nextID, nextKey := 0, fresh*msgid.Len
	for i := range records {
		rec := &records[i]
		res := &b.Results[i]
		var id []byte
		if k := rec.IdempotencyKey; k != "" {
			res.MessageID = k
			id = arena[nextKey : nextKey+len(k) : nextKey+len(k)]
			nextKey += len(k)
		} else {
			res.MessageID = ids[nextID : nextID+msgid.Len]
			id = arena[nextID : nextID+msgid.Len : nextID+msgid.Len]
			nextID += msgid.Len
		}
		first := len(headers)
		headers = append(headers, rdkafka.Header{Key: p.cfg.MessageIDHeader, Value: id})
		size := len(rec.Key) + len(rec.Value)
		for _, h := range rec.Headers {
			headers = append(headers, rdkafka.Header{Key: h.Key, Value: h.Value})
			size += len(h.Key) + len(h.Value)
		}
		res.size = int32(size)
		ts := received
		if !rec.Timestamp.IsZero() {
			ts = rec.Timestamp.Truncate(time.Millisecond)
		}
		res.Timestamp = ts
		msgs[i] = rdkafka.Message{
			Partition: rec.Partition,
			Key:       rec.Key,
			Value:     rec.Value,
			Headers:   headers[first:len(headers):len(headers)],
			Timestamp: ts.UnixMilli(),
			Opaque:    opaqueOf(b.slot, i),
		}
	}
	s := &send{topic: topic, msgs: msgs, wait: p.queueWait(ctx)}
	p.enq.enqueue(s)
	p.recycle(msgs)
	if s.err != nil {
		b.enqueued, b.unsent = s.n, s.err
		// This record failed, and every later one was not tried: writing
		// them could reorder records that share a key.
		for j := s.n; j < len(records); j++ {
			b.Results[j].Err = s.err
		}
		b.finish(int32(len(records) - s.n))
	}
	return b, nil
}

// messages returns a message slice of length n, recycled when it can be.
func (p *Producer) messages(n int) []rdkafka.Message {
	if m, ok := p.pool.Get().(*[]rdkafka.Message); ok && cap(*m) >= n {
		return (*m)[:n]
	}
	return make([]rdkafka.Message, n)
}

// recycle gives a message slice back once librdkafka has copied it.
func (p *Producer) recycle(msgs []rdkafka.Message) {
	clear(msgs)
	p.pool.Put(&msgs)
}

// queueWait paces retries while the local queue is full.
type queueWait struct {
	ctx      context.Context
	deadline time.Time
	backoff  time.Duration
}

func (p *Producer) queueWait(ctx context.Context) queueWait {
	deadline := time.Now().Add(p.cfg.QueueFullWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return queueWait{ctx: ctx, deadline: deadline, backoff: 500 * time.Microsecond}
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
	n, err := p.eng.Partitions(topic, timeout)
	var rerr *rdkafka.Error
	switch {
	case err == nil:
		return n, nil
	case errors.As(err, &rerr) && rerr.Code == rdkafka.ErrLeaderNotAvailable:
		// Being created (auto-create) or electing a leader: let librdkafka
		// wait for it; the partition count is not known yet.
		return 0, nil
	case errors.As(err, &rerr) && (rerr.Code == rdkafka.ErrUnknownTopicOrPart || rerr.Code == rdkafka.ErrUnknownTopic):
		return 0, fmt.Errorf("topic %q: %w", topic, ErrUnknownTopic)
	default:
		return 0, fmt.Errorf("read metadata of topic %q: %w", topic, classifyProduce(err))
	}
}
