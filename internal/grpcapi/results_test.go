package grpcapi

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	gproto "google.golang.org/protobuf/proto"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/produce"
)

// A ProduceStream answer written straight from the results decodes to the
// response toProtoResults builds: written records with zero and large
// partitions, offsets and timestamps (before the epoch too), failed ones
// of several kinds, with and without message IDs.
func TestTheResultsFrameEncodesWhatTheProtoResponseWould(t *testing.T) {
	s := &ProducerServer{logger: slog.New(slog.DiscardHandler)}
	now := time.Now()
	results := []produce.Result{
		{Partition: 0, Offset: 0, Timestamp: now, MessageID: "01a24b02-16cb-7002-a22b-5a0f9a1f90d3"},
		{Partition: 5, Offset: 1 << 40, Timestamp: now, MessageID: "order-17"},
		{Partition: 1 << 30, Offset: 7, Timestamp: time.Unix(0, 0)},
		{Partition: 2, Offset: 9, Timestamp: time.Unix(-5, 999_999_999)},
		{Err: produce.ErrQueueFull, MessageID: "key-1"},
		{Err: fmt.Errorf("write: %w", produce.ErrClosed)},
		{Err: produce.ErrUnknownTopic, Partition: 3, Offset: 4, MessageID: "x"},
	}
	c := encoding.GetCodecV2(proto.Name)
	for _, tc := range []struct {
		name      string
		requestID string
		results   []produce.Result
	}{
		{"mixed", "batch-7", results},
		{"no request id", "", results[:2]},
		{"empty", "b", nil},
		{"failed only", "b", results[4:]},
		{"a thousand", "big", func() []produce.Result {
			out := make([]produce.Result, 1000)
			for i := range out {
				out[i] = produce.Result{Partition: int32(i % 6), Offset: int64(1_000_000 + i), Timestamp: now, MessageID: fmt.Sprintf("%036d", i)}
			}
			return out
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f resultsFrame
			// The frame is reused: an earlier answer must leave nothing behind.
			if err := f.set(s.logger, "earlier", results); err != nil {
				t.Fatal(err)
			}
			if err := f.set(s.logger, tc.requestID, tc.results); err != nil {
				t.Fatal(err)
			}
			data, err := c.Marshal(&f)
			if err != nil {
				t.Fatal(err)
			}
			var got gatewayv1.ProduceStreamResponse
			if err := gproto.Unmarshal(data.Materialize(), &got); err != nil {
				t.Fatal(err)
			}
			want := &gatewayv1.ProduceStreamResponse{RequestId: tc.requestID, Results: s.toProtoResults(tc.results)}
			if len(tc.results) == 0 {
				want.Results = nil
			}
			if !gproto.Equal(&got, want) {
				t.Errorf("decoded %v\nwant %v", &got, want)
			}
			wantBytes, err := gproto.MarshalOptions{Deterministic: true}.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if string(data.Materialize()) != string(wantBytes) {
				t.Errorf("the frame's bytes differ from the library's encoding of the same response")
			}
		})
	}
}
