// Package metrics holds the gateway's one private Prometheus registry and
// its collectors, and serves them over HTTP with the health probes
// (/metrics, /healthz, /readyz) on a listener of their own.
//
// Hot paths stay cheap: the producer reports per batch to pre-resolved,
// per-topic counters; the consumer's counters are plain atomics read at
// scrape time, with its per-group state; librdkafka statistics are kept as
// the raw JSON documents and parsed at scrape time. Labels come only from
// bounded sets (topic, group, partition, broker, result, rule, gRPC method
// and code), never from a key or a message ID.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Config is the metrics and health listener.
type Config struct {
	// Enabled serves /metrics, /healthz and /readyz on Listen.
	Enabled bool `yaml:"enabled"`
	// Listen is the TCP address of the listener. In Kubernetes, probes and
	// scrapes come to the pod IP: listen on 0.0.0.0 (or the pod IP) there.
	Listen string `yaml:"listen"`
	// KafkaStatisticsInterval is librdkafka's statistics.interval.ms for the
	// producer and the consumers: how often broker health and consumer lag
	// are refreshed. 0 turns those metrics off.
	KafkaStatisticsInterval time.Duration `yaml:"kafka_statistics_interval"`
	// Pprof also serves the Go runtime's profiles (net/http/pprof) under
	// /debug/pprof/ on Listen. Off by default: profiles expose the
	// process's internals (stacks, command line, memory contents by
	// type), and a CPU profile costs CPU while it runs.
	Pprof bool `yaml:"pprof"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Enabled: true, Listen: "127.0.0.1:9464", KafkaStatisticsInterval: 15 * time.Second}
}

// Validate checks c; messages name the key at fault.
func (c Config) Validate() error {
	if c.Enabled {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
	}
	switch {
	case c.KafkaStatisticsInterval < 0:
		return errors.New("metrics.kafka_statistics_interval: must not be negative")
	case c.KafkaStatisticsInterval > 0 && c.KafkaStatisticsInterval < 100*time.Millisecond:
		return errors.New("metrics.kafka_statistics_interval: must be 0 (off) or at least 100ms")
	}
	return nil
}

// Registry is the gateway's private Prometheus registry. It remembers what
// was registered, so that tests can list every metric family.
type Registry struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors.
func NewRegistry() *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// MustRegister registers collectors; it panics on a duplicate or an
// inconsistent description, which is a programming error.
func (r *Registry) MustRegister(cs ...prometheus.Collector) {
	r.reg.MustRegister(cs...)
	r.collectors = append(r.collectors, cs...)
}

// Gatherer returns the registry for scraping.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Family is a metric family as its collector describes it.
type Family struct {
	Name   string
	Labels []string // variable labels, sorted
}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]*)", .*variableLabels: \{([^}]*)\}\}$`)

// Families lists every metric family the registered collectors describe,
// sorted by name.
func (r *Registry) Families() []Family {
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range r.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	seen := map[string]bool{}
	var out []Family
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil || seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		f := Family{Name: m[1]}
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				f.Labels = append(f.Labels, l)
			}
		}
		slices.Sort(f.Labels)
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	return out
}
