package gateway_test

import (
	"context"
	"slices"
	"testing"
	"time"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestRecordsAckedBeyondTheCommitAreNotRedeliveredAfterAHandOver: against
// the real broker, dedupe off, an app acks every record of a partition but
// one early one; its gateway shuts down, and another gateway takes the
// partition over: after the first has gone (a restart), or as a member of
// the group already (a rebalance). The next owner delivers only the record
// that was never acked, and the new ones, because the commit's metadata
// named the records acked beyond the commit point.
func TestRecordsAckedBeyondTheCommitAreNotRedeliveredAfterAHandOver(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"restart", "rebalance"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			bootstrap := testenv.Kafka(t)
			topic := testenv.CreateTopic(t, bootstrap, 1)
			group := testenv.UniqueName("g")
			a := consumerGateway(t, nil)
			produceRecords(t, a, topic, 20, 20)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100}
			actx, stopA := context.WithCancel(ctx)
			defer stopA()
			sa, err := a.consumer().Subscribe(actx, req)
			if err != nil {
				t.Fatal(err)
			}
			var held *gatewayv1.Delivery
			acked := 0
			for acked < 19 {
				resp, err := sa.Recv()
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range resp.GetDeliveries().GetDeliveries() {
					if d.GetOffset() == 3 {
						held = d // never acked
						continue
					}
					if _, err := a.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId()}}); err != nil {
						t.Fatal(err)
					}
					acked++
				}
			}
			if held == nil {
				t.Fatal("offset 3 never delivered")
			}
			b := consumerGateway(t, nil)
			stopGatewayA := func() {
				stopA()
				if err := a.stop(); err != nil && ctx.Err() != nil {
					t.Fatal(err)
				}
			}
			if how == "restart" {
				stopGatewayA()
			}
			sb, err := b.consumer().Subscribe(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if how == "rebalance" {
				testenv.Eventually(t, 30*time.Second, "b's member in the group", func() bool {
					_, members := describeGroup(bootstrap, group)
					return members == 2
				})
				stopGatewayA() // the partition moves from a to b at a rebalance
			}
			produceRecords(t, b, topic, 2, 2) // offsets 20 and 21
			var got []int64
			for !slices.Contains(got, 21) || !slices.Contains(got, 20) || !slices.Contains(got, 3) {
				resp, err := sb.Recv()
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				for _, d := range resp.GetDeliveries().GetDeliveries() {
					got = append(got, d.GetOffset())
					if _, err := b.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId()}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, []int64{3, 20, 21}) {
				t.Fatalf("the next owner delivered %v; want only the record never acked (3) and the new ones", got)
			}
		})
	}
}
