package metrics

import (
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/produce"
)

// BenchmarkBatchDone is the producer's metrics cost per batch of 100
// records: what the delivery-report goroutine pays on top of its work.
func BenchmarkBatchDone(b *testing.B) {
	p := NewProducer(NewRegistry(), func() int { return 0 })
	obs := p.Topic("orders")
	results := make([]produce.Result, 100)
	b.ReportAllocs()
	for b.Loop() {
		obs.BatchDone(results, time.Millisecond)
	}
}
