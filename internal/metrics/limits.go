package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LimitCounts is what one rate-limit rule decided since the gateway
// started (the rate limiter's own counters).
type LimitCounts struct {
	Admitted int64 // records admitted, shadow-limited ones included
	Waited   int64 // calls that waited for capacity, then were admitted
	Rejected int64 // records refused
	Shadowed int64 // records a rule in shadow mode would have limited
}

// Limits exports the rate limits. The limiter keeps its own counters; they
// are read at scrape time from the source set with SetSource, so admitting
// a call costs nothing here. Wait durations, which the limiter does not
// keep, are pushed with ObserveWait. Every method is safe for concurrent
// use and does nothing on a nil *Limits (metrics off).
type Limits struct {
	admitted, waited, rejected, shadowed, denied, version *prometheus.Desc
	wait                                                  *prometheus.HistogramVec

	mu      sync.Mutex
	counts  func() (byRule map[string]LimitCounts, denied int64)
	current func() string
}

// RegisterLimits registers the rate-limit metrics.
func RegisterLimits(r *Registry) *Limits {
	rule := []string{"rule"}
	l := &Limits{
		admitted: prometheus.NewDesc("gateway_limits_admitted_total", "Records the rule admitted, shadow-limited ones included.", rule, nil),
		waited:   prometheus.NewDesc("gateway_limits_waited_total", "Calls the rule admitted only after waiting for capacity.", rule, nil),
		rejected: prometheus.NewDesc("gateway_limits_rejected_total", "Records the rule refused (RESOURCE_EXHAUSTED).", rule, nil),
		shadowed: prometheus.NewDesc("gateway_limits_shadow_limited_total", "Records a rule in shadow mode would have delayed or refused, admitted at once.", rule, nil),
		denied:   prometheus.NewDesc("gateway_limits_acl_denied_total", "Calls the limits document's access rules denied (PERMISSION_DENIED).", nil, nil),
		version:  prometheus.NewDesc("gateway_limits_version_info", "1 for the version of the limits document in force.", []string{"version"}, nil),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_limits_wait_seconds",
			Help:    "Time calls waited for capacity before the rule admitted them.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms … 16 s
		}, rule),
	}
	r.MustRegister(l, l.wait)
	return l
}

// SetSource makes the metrics read the limiter: counts returns each rule's
// counts by rule name (a configured rule name, never a caller's identity
// or topic) and the calls the access rules denied; version returns the
// version of the document in force ("" for none).
func (l *Limits) SetSource(counts func() (map[string]LimitCounts, int64), version func() string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts, l.current = counts, version
}

// ObserveWait records that a call waited d before rule admitted it.
func (l *Limits) ObserveWait(rule string, d time.Duration) {
	if l != nil {
		l.wait.WithLabelValues(rule).Observe(d.Seconds())
	}
}

// Forget drops the wait series of a rule no longer configured.
func (l *Limits) Forget(rule string) {
	if l != nil {
		l.wait.DeleteLabelValues(rule)
	}
}

func (l *Limits) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l.admitted, l.waited, l.rejected, l.shadowed, l.denied, l.version} {
		ch <- d
	}
}

func (l *Limits) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	counts, version := l.counts, l.current
	l.mu.Unlock()
	if counts != nil {
		byRule, denied := counts()
		for rule, c := range byRule {
			ch <- prometheus.MustNewConstMetric(l.admitted, prometheus.CounterValue, float64(c.Admitted), rule)
			ch <- prometheus.MustNewConstMetric(l.waited, prometheus.CounterValue, float64(c.Waited), rule)
			ch <- prometheus.MustNewConstMetric(l.rejected, prometheus.CounterValue, float64(c.Rejected), rule)
			ch <- prometheus.MustNewConstMetric(l.shadowed, prometheus.CounterValue, float64(c.Shadowed), rule)
		}
		ch <- prometheus.MustNewConstMetric(l.denied, prometheus.CounterValue, float64(denied))
	}
	if version != nil {
		if v := version(); v != "" {
			ch <- prometheus.MustNewConstMetric(l.version, prometheus.GaugeValue, 1, v)
		}
	}
}
