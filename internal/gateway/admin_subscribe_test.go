package gateway_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestASubscribeAfterAResetToATimestampStartsThere: an operator moves a
// group to a point in time (the first record at or after it), then an app
// subscribes: the first record it gets is that one, and nothing earlier.
func TestASubscribeAfterAResetToATimestampStartsThere(t *testing.T) {
	t.Parallel()
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*gatewayv1.Record
	for i := range 20 {
		recs = append(recs, &gatewayv1.Record{Value: []byte{byte(i)}, Timestamp: timestamppb.New(base.Add(time.Duration(i) * time.Minute))})
	}
	if _, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs}); err != nil {
		t.Fatal(err)
	}
	resp, err := h.admin().ResetOffsets(ctx, &gatewayv1.ResetOffsetsRequest{Group: group, Topics: []string{topic},
		Target: &gatewayv1.ResetOffsetsRequest_ToTimestamp{ToTimestamp: timestamppb.New(base.Add(12*time.Minute - time.Second))}})
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	if got := resp.GetPartitions()[0].GetTargetOffset(); got != 12 {
		t.Fatalf("target offset %d, want 12 (the first record at or after the time)", got)
	}
	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_PARTITION, MaxInFlight: 100}, newLedger(), true)
	ds := waitDeliveries(t, s, 8)
	for i, d := range ds[:8] {
		if want := int64(12 + i); d.GetOffset() != want {
			t.Fatalf("delivery %d is offset %d, want %d: the subscription did not start at the reset point", i, d.GetOffset(), want)
		}
	}
}
