package produce

import (
	"context"
	"fmt"
	"time"

	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// Observer measures the producer, for metrics. The producer asks it once per
// topic, the first time a batch for the topic passes validation (so only
// topics that exist get one), and keeps the answer.
type Observer interface {
	Topic(topic string) BatchObserver
}

// BatchObserver is told about every finished batch of one topic: each record
// has its result, and latency runs from Send to the batch's last delivery
// report. It is called on the delivery-report goroutine (or on Send's, for
// records that could not be enqueued), before the batch is handed back, and
// must not block.
type BatchObserver interface {
	BatchDone(results []Result, latency time.Duration)
}

// Bytes is the size of the record's key, value and headers (those given to
// Send; the message-id header is not counted).
func (r *Result) Bytes() int { return int(r.size) }

func recordBytes(r *Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// SetObserver makes the producer report finished batches to o. Call it
// before Run.
func (p *Producer) SetObserver(o Observer) { p.observer = o }

// SetStatsHandler hands each librdkafka statistics document of the producer
// (emitted when statistics.interval.ms is set in its properties) to h, on
// the delivery-report goroutine. Call it before Run.
func (p *Producer) SetStatsHandler(h func(json string)) { p.onStats = h }

// batchObserver returns topic's observer, or nil without an Observer.
func (p *Producer) batchObserver(topic string) BatchObserver {
	if p.observer == nil {
		return nil
	}
	if o, ok := p.topicObservers.Load(topic); ok {
		return o.(BatchObserver)
	}
	o, _ := p.topicObservers.LoadOrStore(topic, p.observer.Topic(topic))
	return o.(BatchObserver)
}

// QueueLen is the number of records and requests librdkafka holds: waiting
// to be sent, in flight to the broker, or with a delivery report not yet
// handled.
func (p *Producer) QueueLen() int { return p.eng.Len() }

// CheckCluster asks the cluster for its brokers (a metadata request), for
// readiness: it fails when no broker answers before ctx ends (at most 5 s).
func (p *Producer) CheckCluster(ctx context.Context) error {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout < time.Millisecond {
		return context.DeadlineExceeded
	}
	n, err := p.eng.Brokers(timeout)
	if err != nil {
		return fmt.Errorf("kafka metadata: %w", classifyProduce(err))
	}
	if n == 0 {
		return fmt.Errorf("kafka metadata: no brokers: %w", kafkaclient.ErrUnavailable)
	}
	return nil
}
