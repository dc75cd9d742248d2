package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits are the metrics of the rate limits. Every method is safe for
// concurrent use and does nothing on a nil *Limits or a nil *LimitRule, so
// the limiter can call them whether or not metrics are enabled.
//
// Counts are in the unit of the limiter's decision (records, normally); n is
// how many the decision covered.
type Limits struct {
	admitted, waited, rejected, shadow *prometheus.CounterVec
	wait                               *prometheus.HistogramVec
	version                            *prometheus.GaugeVec

	mu      sync.Mutex
	current string
}

// RegisterLimits registers the rate-limit metrics.
func RegisterLimits(r *Registry) *Limits {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"rule"})
	}
	l := &Limits{
		admitted: counter("gateway_limits_admitted_total", "Records admitted by the rule, with or without waiting."),
		waited:   counter("gateway_limits_waited_total", "Records admitted by the rule only after waiting for capacity."),
		rejected: counter("gateway_limits_rejected_total", "Records the rule refused (RESOURCE_EXHAUSTED)."),
		shadow:   counter("gateway_limits_shadow_limited_total", "Records a rule in shadow mode would have delayed or refused, admitted at once."),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_limits_wait_seconds",
			Help:    "Time a decision of the rule waited before admitting.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms … 16 s
		}, []string{"rule"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_limits_version_info",
			Help: "1 for the version of the limits configuration in force.",
		}, []string{"version"}),
	}
	r.MustRegister(l.admitted, l.waited, l.rejected, l.shadow, l.wait, l.version)
	return l
}

// LimitRule is one rule's series, resolved once: keep it with the rule.
type LimitRule struct {
	admitted, waited, rejected, shadow prometheus.Counter
	wait                               prometheus.Observer
}

// Rule returns the series of the rule named rule (a configured rule name:
// never a key, topic pattern match or client-supplied value).
func (l *Limits) Rule(rule string) *LimitRule {
	if l == nil {
		return nil
	}
	return &LimitRule{
		admitted: l.admitted.WithLabelValues(rule),
		waited:   l.waited.WithLabelValues(rule),
		rejected: l.rejected.WithLabelValues(rule),
		shadow:   l.shadow.WithLabelValues(rule),
		wait:     l.wait.WithLabelValues(rule),
	}
}

// Forget drops the series of a rule that was removed from the configuration.
func (l *Limits) Forget(rule string) {
	if l == nil {
		return
	}
	l.admitted.DeleteLabelValues(rule)
	l.waited.DeleteLabelValues(rule)
	l.rejected.DeleteLabelValues(rule)
	l.shadow.DeleteLabelValues(rule)
	l.wait.DeleteLabelValues(rule)
}

// SetVersion records the version of the limits configuration now in force.
func (l *Limits) SetVersion(version string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if version == l.current {
		return
	}
	l.version.Reset()
	l.version.WithLabelValues(version).Set(1)
	l.current = version
}

// Admitted counts n records admitted (also those that waited: call Waited
// for them as well).
func (r *LimitRule) Admitted(n int) {
	if r != nil {
		r.admitted.Add(float64(n))
	}
}

// Waited counts n records admitted after waiting for wait.
func (r *LimitRule) Waited(n int, wait time.Duration) {
	if r != nil {
		r.waited.Add(float64(n))
		r.wait.Observe(wait.Seconds())
	}
}

// Rejected counts n records refused.
func (r *LimitRule) Rejected(n int) {
	if r != nil {
		r.rejected.Add(float64(n))
	}
}

// ShadowLimited counts n records the rule, in shadow mode, would have
// delayed or refused.
func (r *LimitRule) ShadowLimited(n int) {
	if r != nil {
		r.shadow.Add(float64(n))
	}
}
