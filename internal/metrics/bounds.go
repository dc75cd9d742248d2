package metrics

import "github.com/prometheus/client_golang/prometheus"

// Bounds is what the gateway-wide bounds hold and refused, read at scrape
// time.
type Bounds struct {
	// Refused counts refusals per bound: "connections" (server.max_connections),
	// "request_bytes" (server.max_inflight_request_bytes), "consumer_groups"
	// (consumer.max_groups and max_groups_per_identity).
	Refused map[string]int64
	// Connections are the open connections of the API listeners;
	// RequestBytes the request bytes reserved now.
	Connections, RequestBytes int64
}

// RegisterBounds registers the bound metrics, read from read at each
// scrape.
func RegisterBounds(r *Registry, read func() Bounds) {
	refused := prometheus.NewDesc("gateway_bound_refusals_total",
		"Calls or connections refused by a gateway-wide bound, by bound: connections (server.max_connections), request_bytes (server.max_inflight_request_bytes), consumer_groups (consumer.max_groups, consumer.max_groups_per_identity).",
		[]string{"bound"}, nil)
	conns := prometheus.NewDesc("gateway_server_connections", "Open connections of the API listeners (TCP and the Unix socket).", nil, nil)
	bytes := prometheus.NewDesc("gateway_server_inflight_request_bytes", "Request bytes reserved by calls in progress (see server.max_inflight_request_bytes).", nil, nil)
	r.MustRegister(collectorFunc{
		describe: []*prometheus.Desc{refused, conns, bytes},
		collect: func(ch chan<- prometheus.Metric) {
			b := read()
			for _, bound := range []string{"connections", "request_bytes", "consumer_groups"} {
				ch <- prometheus.MustNewConstMetric(refused, prometheus.CounterValue, float64(b.Refused[bound]), bound)
			}
			ch <- prometheus.MustNewConstMetric(conns, prometheus.GaugeValue, float64(b.Connections))
			ch <- prometheus.MustNewConstMetric(bytes, prometheus.GaugeValue, float64(b.RequestBytes))
		},
	})
}

// collectorFunc is a collector of fixed descriptions and a collect function.
type collectorFunc struct {
	describe []*prometheus.Desc
	collect  func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.describe {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
