package gateway_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestAnAckAfterItsStreamClosedStillApplies pins the contract that an ack
// stays valid after the stream that received the record has closed, while
// the partition stays owned. A closing stream gives its records back with
// their attempt number undone, and the first delivery's ack was then
// refused as "never delivered".
func TestAnAckAfterItsStreamClosedStillApplies(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	produceTo(t, h, topic, 0, 3)
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE,
		MaxInFlight: 10, AckTimeout: durationpb.New(time.Minute)}

	first := openFaultStream(t, h.consumer(), req, newLedger(), false)
	held := waitDeliveries(t, first, 3)
	first.close()
	time.Sleep(200 * time.Millisecond) // let the gateway see the stream end and take the records back
	ack(t, h, group, held)

	offsets := newOffsetReader(t, bootstrap, group, topic, 1)
	testenv.Eventually(t, 20*time.Second, "the commit at 3", func() bool { return offsets.committed()[0] == 3 })
	// Acked, so not delivered again: the next stream's first record is a
	// new one (records are dispatched in offset order).
	produceTo(t, h, topic, 0, 1)
	second := openFaultStream(t, h.consumer(), req, newLedger(), false)
	if got := waitDeliveries(t, second, 1); got[0].GetOffset() != 3 {
		t.Errorf("after the acks the next stream got offset %d first; want the new record at 3", got[0].GetOffset())
	}
}
