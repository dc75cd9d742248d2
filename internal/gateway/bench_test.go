package gateway_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// BenchmarkUnaryProduce64: 64 concurrent callers, each calling the unary
// Produce with one 100-byte record, against an in-process gateway with the
// latency preset and the real broker. A profile of it (-cpuprofile) shows
// what one unary call costs in the gateway, client included.
func BenchmarkUnaryProduce64(b *testing.B) {
	bootstrap := testenv.Kafka(b)
	topic := testenv.CreateTopic(b, bootstrap, 3)
	h := startGateway(b, func(c *config.Config) {
		c.Kafka.BootstrapServers = bootstrap
		c.Producer.Preset = "latency"
	})
	req := &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: make([]byte, 100)}}}
	if _, err := h.producer.Produce(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := h.producer.Produce(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
