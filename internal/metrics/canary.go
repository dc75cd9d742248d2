package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Canary measures the end-to-end canary. It implements canary.Observer.
type Canary struct {
	sent, sendFailures, received, lost, duplicates prometheus.Counter
	latency                                        prometheus.Histogram
	lastReceived                                   prometheus.Gauge
}

// RegisterCanary registers the canary's metrics.
func RegisterCanary(r *Registry) *Canary {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	c := &Canary{
		sent:         counter("gateway_canary_sent_total", "Canary records written (acknowledged by the broker)."),
		sendFailures: counter("gateway_canary_send_failures_total", "Canary records the producer failed to write."),
		received:     counter("gateway_canary_received_total", "Canary records of this gateway received back through its canary group."),
		lost:         counter("gateway_canary_lost_total", "Canary records written but never received: gaps in the received sequence."),
		duplicates:   counter("gateway_canary_duplicates_total", "Canary records received more than once."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gateway_canary_latency_seconds",
			Help:    "End-to-end canary latency: from the produce call to the record's delivery through the canary group.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17), // 1 ms … 65 s
		}),
		lastReceived: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_canary_last_received_timestamp_seconds",
			Help: "Unix time of the last canary record received end to end; 0 before the first.",
		}),
	}
	r.MustRegister(c.sent, c.sendFailures, c.received, c.lost, c.duplicates, c.latency, c.lastReceived)
	return c
}

func (c *Canary) Sent()       { c.sent.Inc() }
func (c *Canary) SendFailed() { c.sendFailures.Inc() }
func (c *Canary) Lost(n int)  { c.lost.Add(float64(n)) }
func (c *Canary) Duplicate()  { c.duplicates.Inc() }
func (c *Canary) Received(latency time.Duration, at time.Time) {
	c.received.Inc()
	if latency >= 0 {
		c.latency.Observe(latency.Seconds())
	}
	c.lastReceived.Set(float64(at.UnixNano()) / 1e9)
}
