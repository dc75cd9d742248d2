package consume

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"strconv"
	"sync"
	"time"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// Dead-letter headers, added to each dead letter.
const (
	HeaderDLQTopic     = "dlq-source-topic"
	HeaderDLQPartition = "dlq-source-partition"
	HeaderDLQOffset    = "dlq-source-offset"
	HeaderDLQAttempts  = "dlq-attempts"
	HeaderDLQReason    = "dlq-reason"
	HeaderDLQGroup     = "dlq-group"
	// HeaderDLQMessageID carries the source record's message ID (the dead
	// letter's own message ID is its idempotency key: see deadLetterKey).
	HeaderDLQMessageID = "dlq-message-id"
	// HeaderDLQPayloadOmitted marks a compact dead letter: the full one
	// could not be written, so this one carries no key, value or source
	// headers; its value is the size in bytes of what was left out (the
	// record stays readable at its source coordinates until retention).
	HeaderDLQPayloadOmitted = "dlq-payload-omitted"
)

// maxDLQMessageID bounds the dlq-message-id header; longer IDs are cut.
const maxDLQMessageID = 256

// dlqBatch bounds the dead letters one worker round writes.
const dlqBatch = 64

// dlqMaxCreateFailures is how often a dead letter may find its topic
// missing (and try to create it) before the topic counts as unwritable.
const dlqMaxCreateFailures = 5

// deadLetters is a group's dead-letter writer: one worker goroutine that
// writes queued dead letters in batches through the gateway's producer. A
// record being dead-lettered is done only once its dead letter is written.
// Failures are classified:
//
//   - transient (Kafka unavailable, queue full, timeouts): retried with
//     backoff (200 ms doubling to 30 s) for as long as the group runs;
//   - permanent (the record is invalid or too large for the producer or the
//     broker, the gateway is not authorized, the topic does not exist and
//     cannot be created): the full dead letter is replaced by a compact one
//     (HeaderDLQPayloadOmitted: the source coordinates, reason and message
//     ID, without key, value or source headers); if that fails permanently
//     too, the record is dropped: counted (DeadLettersDropped), logged at
//     error level with its coordinates, and done for the commit rule, so
//     its partition never wedges.
type deadLetters struct {
	g        *group
	wake     chan struct{}
	quit     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	queue []*dlqJob // guarded by g.mu
}

type dlqJob struct {
	l        *partitionLog
	r        *record
	delivery uint32
	topic    string
	rec      produce.Record
	size     int // of the source record
	reason   string
	compact  bool
	retries  int
	creates  int // failed creations of the topic
	due      time.Time
}

func newDeadLetters(g *group) *deadLetters {
	return &deadLetters{g: g, wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

// start starts the worker, owned by the group's wait group.
func (d *deadLetters) start() {
	d.wg.Add(1)
	d.g.wg.Go(func() {
		defer d.wg.Done()
		d.loop()
	})
}

// add starts dead-lettering r (under the group's mutex). Its dedupe claim,
// if any, is kept: no other app gets the record meanwhile.
func (d *deadLetters) add(l *partitionLog, r *record, reason string) {
	g := d.g
	l.deadLetter(r)
	j := &dlqJob{l: l, r: r, delivery: r.delivery, topic: l.topic + g.m.cfg.DeadLetterSuffix, size: int(r.size), reason: truncate(reason, 1024)}
	j.rec = d.full(j)
	d.queue = append(d.queue, j)
	d.kick()
}

// deadLetterKey is a dead letter's idempotency key (and so its message
// ID): the same for every copy of one message dead-lettered by one group
// from one topic, and different across groups and topics, so that two
// groups dead-lettering one message write two dead letters, and a retry of
// one writes it once (where Redis is configured).
func deadLetterKey(group, topic, messageID string) string {
	h := sha256.New()
	for _, s := range []string{group, topic, messageID} {
		h.Write(strconv.AppendInt(nil, int64(len(s)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return "dlq-" + hex.EncodeToString(h.Sum(nil)[:20])
}

func (d *deadLetters) headers(j *dlqJob) []produce.Header {
	l, r := j.l, j.r
	return []produce.Header{
		{Key: HeaderDLQTopic, Value: []byte(l.topic)},
		{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(l.partition), 10)},
		{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, r.offset, 10)},
		{Key: HeaderDLQAttempts, Value: strconv.AppendInt(nil, int64(r.attempt), 10)},
		{Key: HeaderDLQReason, Value: []byte(j.reason)},
		{Key: HeaderDLQGroup, Value: []byte(d.g.settings.Group)},
		{Key: HeaderDLQMessageID, Value: []byte(truncate(l.messageID(r), maxDLQMessageID))},
	}
}

// full is the dead letter with the source record's key, value and headers.
func (d *deadLetters) full(j *dlqJob) produce.Record {
	r := j.r
	rec := produce.Record{
		Key:            r.key,
		Value:          r.value,
		Partition:      produce.AnyPartition,
		Timestamp:      r.timestamp,
		IdempotencyKey: deadLetterKey(d.g.settings.Group, j.l.topic, j.l.messageID(r)),
	}
	for _, h := range r.headers {
		if h.Key != d.g.m.messageIDHeader {
			rec.Headers = append(rec.Headers, produce.Header{Key: h.Key, Value: h.Value})
		}
	}
	rec.Headers = append(rec.Headers, d.headers(j)...)
	return rec
}

// compact is the dead letter without the source record's payload.
func (d *deadLetters) compact(j *dlqJob, why error) produce.Record {
	j.reason = truncate(j.reason+"; payload omitted: "+why.Error(), 1024)
	hs := append(d.headers(j), produce.Header{Key: HeaderDLQPayloadOmitted, Value: strconv.AppendInt(nil, int64(j.size), 10)})
	return produce.Record{Partition: produce.AnyPartition, Timestamp: j.r.timestamp, IdempotencyKey: j.rec.IdempotencyKey, Headers: hs}
}

func (d *deadLetters) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// stop ends the worker; dead letters not yet written stay unfinished (their
// records are redelivered by the partitions' next owner).
func (d *deadLetters) stop() {
	d.stopOnce.Do(func() { close(d.quit) })
	d.wg.Wait()
}

func (d *deadLetters) loop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-d.quit
		cancel()
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		jobs, next := d.take()
		if len(jobs) == 0 {
			wait := time.Hour
			if !next.IsZero() {
				wait = max(0, time.Until(next))
			}
			timer.Reset(wait)
			select {
			case <-d.quit:
				return
			case <-d.wake:
			case <-timer.C:
			}
			continue
		}
		d.write(ctx, jobs)
		if ctx.Err() != nil {
			return
		}
	}
}

// take removes up to dlqBatch due jobs from the queue; next is when the
// earliest job left becomes due.
func (d *deadLetters) take() (jobs []*dlqJob, next time.Time) {
	g := d.g
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	kept := d.queue[:0]
	for _, j := range d.queue {
		switch {
		case j.l.gone || j.r.state != stateDeadLetter || j.r.delivery != j.delivery:
			// Forgotten (revoked, repositioned): its next owner delivers it.
		case len(jobs) < dlqBatch && !j.due.After(now):
			jobs = append(jobs, j)
		default:
			kept = append(kept, j)
			if next.IsZero() || j.due.Before(next) {
				next = j.due
			}
		}
	}
	clear(d.queue[len(kept):])
	d.queue = kept
	return jobs, next
}

// write writes jobs, one Produce call per topic, and applies the results.
// A call refused as a whole for bad input is split into one call per
// record, to tell which record is at fault.
func (d *deadLetters) write(ctx context.Context, jobs []*dlqJob) {
	byTopic := map[string][]*dlqJob{}
	var topics []string
	for _, j := range jobs {
		if byTopic[j.topic] == nil {
			topics = append(topics, j.topic)
		}
		byTopic[j.topic] = append(byTopic[j.topic], j)
	}
	for _, topic := range topics {
		js := byTopic[topic]
		errs := d.produce(ctx, topic, js)
		var bad *invalid.Error
		if len(js) > 1 && errs[0] != nil && errors.As(errs[0], &bad) {
			for i := range js {
				errs[i] = d.produce(ctx, topic, js[i:i+1])[0]
			}
		}
		for i, j := range js {
			d.settle(j, errs[i])
		}
	}
}

// produce writes js to topic and returns each one's error.
func (d *deadLetters) produce(ctx context.Context, topic string, js []*dlqJob) []error {
	recs := make([]produce.Record, len(js))
	for i, j := range js {
		recs[i] = j.rec
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	results, err := d.g.m.producer.Produce(cctx, topic, recs)
	cancel()
	errs := make([]error, len(js))
	for i := range js {
		switch {
		case err != nil:
			errs[i] = err
		default:
			errs[i] = results[i].Err
		}
	}
	return errs
}

// settle applies one job's result.
func (d *deadLetters) settle(j *dlqJob, err error) {
	g := d.g
	if err != nil && errors.Is(err, kafkaclient.ErrUnknownTopic) && g.m.cfg.DeadLetterAutoCreate && j.creates < dlqMaxCreateFailures {
		j.creates++
		if cerr := g.m.createTopic(j.topic); cerr != nil {
			g.logger.Warn("create dead-letter topic", "topic", j.topic, "err", cerr)
		}
		d.retry(j, err)
		return
	}
	switch {
	case err == nil:
		// Counted before the record is settled, so that whoever sees it
		// settled sees it counted.
		if j.compact {
			g.stats.deadLetteredCompact.Add(1)
		}
		g.stats.deadLettered.Add(1)
		g.mu.Lock()
		g.settle.deadLettered(j.l, j.r, j.delivery)
		g.storeLocked(j.l)
		g.dispatchLocked()
		g.mu.Unlock()
	case !permanent(err):
		d.retry(j, err)
	case !j.compact:
		g.logger.Warn("dead letter cannot be written; writing a compact one without the payload",
			"topic", j.topic, "source_topic", j.l.topic, "partition", j.l.partition, "offset", j.r.offset, "err", err)
		g.mu.Lock()
		j.compact = true
		j.rec = d.compact(j, err)
		j.retries = 0
		d.queue = append(d.queue, j)
		g.mu.Unlock()
		d.kick()
	case tooLarge(err) && j.retries < dlqCompactSizeRetries:
		// A compact dead letter is a few hundred bytes: the broker refused
		// the record batch it shared with larger records (full dead
		// letters of the same record from other groups, say), which
		// max.message.bytes applies to as a whole. Alone it fits.
		d.retry(j, err)
	default:
		g.logger.Error("dead letter dropped: neither it nor a compact one can be written; the record is settled and stays readable at its source coordinates until retention",
			"topic", j.topic, "source_topic", j.l.topic, "partition", j.l.partition, "offset", j.r.offset, "reason", j.reason, "err", err)
		g.stats.deadLettersDropped.Add(1)
		g.mu.Lock()
		g.settle.deadLettered(j.l, j.r, j.delivery)
		g.storeLocked(j.l)
		g.dispatchLocked()
		g.mu.Unlock()
	}
}

// retry queues j again after a backoff.
func (d *deadLetters) retry(j *dlqJob, err error) {
	g := d.g
	wait := min(200*time.Millisecond<<min(j.retries, 8), 30*time.Second)
	j.retries++
	if j.retries == 1 || j.retries%10 == 0 {
		g.logger.Warn("dead-letter write failed; retrying", "topic", j.topic, "err", err, "in", wait, "tries", j.retries)
	}
	g.mu.Lock()
	j.due = time.Now().Add(wait)
	d.queue = append(d.queue, j)
	g.mu.Unlock()
	d.kick()
}

// dlqCompactSizeRetries is how often a compact dead letter refused as too
// large is tried again before it is dropped.
const dlqCompactSizeRetries = 5

// tooLarge reports whether the broker or the producer refused a write for
// its size.
func tooLarge(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr.Code() {
	case kafka.ErrMsgSizeTooLarge, kafka.ErrRecordListTooLarge, kafka.ErrInvalidMsgSize:
		return true
	}
	return false
}

// permanent reports whether a dead letter's write failed for good: no retry
// of the same record can succeed.
func permanent(err error) bool {
	var bad *invalid.Error
	switch {
	case errors.As(err, &bad),
		errors.Is(err, kafkaclient.ErrRejected),
		errors.Is(err, kafkaclient.ErrNotAuthorized),
		errors.Is(err, kafkaclient.ErrUnknownTopic):
		return true
	}
	return false
}
