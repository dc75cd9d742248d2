package consume

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDomain is the group's own cost per record, without librdkafka or
// gRPC: records fetched in batches of 512 into 6 partitions, delivered to
// a Consume stream and acked by token a frame at a time, with the credit
// granted back.
func BenchmarkDomain(b *testing.B) {
	for _, o := range []Ordering{OrderingNone, OrderingKey} {
		b.Run(o.String(), func(b *testing.B) {
			t := &testing.T{}
			h := newHarness(t, harnessOptions{ordering: o})
			h.assign(0, 1, 2, 3, 4, 5)
			s := h.consumeStream(5000)
			s.Grant(5000, 1<<40)
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = "key-" + strconv.Itoa(i)
			}
			value := []byte("0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789")
			next := make([]int64, 6)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			fed, got := 0, 0
			for got < b.N {
				for fed-got < 20000 && fed < b.N {
					batch := make([]fetched, 0, 512)
					for range 512 {
						p := int32(fed % 6)
						k := keys[fed%len(keys)]
						batch = append(batch, fetched{topic: "t", partition: p, r: &record{offset: next[p], key: []byte(k), value: value, messageID: fmt.Sprint(fed), size: int32(len(k) + len(value))}})
						next[p]++
						fed++
					}
					h.g.add(batch)
				}
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				f, err := s.Next(cctx)
				cancel()
				if err != nil {
					b.Fatalf("after %d of %d: %v", got, b.N, err)
				}
				if len(f.Deliveries) == 0 {
					continue
				}
				tokens := make([]uint64, len(f.Deliveries))
				for i, d := range f.Deliveries {
					tokens[i] = d.Token
				}
				s.Recycle(f.Deliveries) // as the API's handler does once the frame is built
				p, _ := s.Settle(SettleRequest{Acks: tokens})
				p.Wait(ctx)
				s.Grant(int64(len(tokens)), 0)
				got += len(tokens)
			}
		})
	}
}
