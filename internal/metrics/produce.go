package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// Producer measures the produce path. It implements produce.Observer.
type Producer struct {
	records *prometheus.CounterVec   // topic, result
	bytes   *prometheus.CounterVec   // topic, result
	latency *prometheus.HistogramVec // topic
}

// NewProducer registers the producer's metrics. queueLen reports the
// records librdkafka holds (produce.Producer.QueueLen).
func NewProducer(r *Registry, queueLen func() int) *Producer {
	p := &Producer{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_producer_records_total",
			Help: "Records given to the producer that have their final result, by topic and result (ok, or the error kind).",
		}, []string{"topic", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_producer_bytes_total",
			Help: "Key, value and header bytes of the records counted in gateway_producer_records_total.",
		}, []string{"topic", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_producer_batch_latency_seconds",
			Help:    "Time from a batch's acceptance (after validation) to the delivery report of its last record, by topic.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 17), // 0.5 ms … 33 s
		}, []string{"topic"}),
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_producer_queue_records",
		Help: "Records and requests librdkafka holds: waiting to be sent, in flight to the broker, or with a delivery report not yet handled.",
	}, func() float64 { return float64(queueLen()) })
	r.MustRegister(p.records, p.bytes, p.latency, queue)
	return p
}

// Topic returns the observer of one topic, with its series resolved once.
func (p *Producer) Topic(topic string) produce.BatchObserver {
	return &topicProducer{
		topic:     topic,
		p:         p,
		okRecords: p.records.WithLabelValues(topic, resultOK),
		okBytes:   p.bytes.WithLabelValues(topic, resultOK),
		latency:   p.latency.WithLabelValues(topic),
	}
}

type topicProducer struct {
	topic              string
	p                  *Producer
	okRecords, okBytes prometheus.Counter
	latency            prometheus.Observer
}

// BatchDone counts a finished batch: two counter adds for its written
// records, one histogram observation; failed records (rare) one by one.
func (t *topicProducer) BatchDone(results []produce.Result, latency time.Duration) {
	var n, size int
	for i := range results {
		r := &results[i]
		if r.Err == nil {
			n++
			size += r.Bytes()
			continue
		}
		res := Result(r.Err)
		t.p.records.WithLabelValues(t.topic, res).Inc()
		t.p.bytes.WithLabelValues(t.topic, res).Add(float64(r.Bytes()))
	}
	if n > 0 {
		t.okRecords.Add(float64(n))
		t.okBytes.Add(float64(size))
	}
	t.latency.Observe(latency.Seconds())
}

const resultOK = "ok"

// Result is the result label of a produce error: the error kind, one of a
// fixed set (see docs/metrics.md).
func Result(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, produce.ErrQueueFull):
		return "queue_full"
	case errors.Is(err, produce.ErrClosed), errors.Is(err, kafkaclient.ErrShutdown):
		return "shutdown"
	case errors.Is(err, kafkaclient.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, kafkaclient.ErrUnknownTopic):
		return "unknown_topic"
	case errors.Is(err, kafkaclient.ErrRejected):
		return "rejected"
	case errors.Is(err, kafkaclient.ErrNotAuthorized):
		return "not_authorized"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "other"
	}
}
