package gateway

import "github.com/kafkagate/gateway/internal/metrics"

// MetricFamilies lists the metric families the gateway registered, for
// tests (nil when metrics are off).
func (g *Gateway) MetricFamilies() []metrics.Family {
	if g.registry == nil {
		return nil
	}
	return g.registry.Families()
}
