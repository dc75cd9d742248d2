package grpcapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/produce"
)

// fuzzProducer accepts every batch the adapter hands it and answers each
// record at once.
type fuzzProducer struct{}

func (fuzzProducer) Produce(_ context.Context, _ string, records []produce.Record) ([]produce.Result, error) {
	return make([]produce.Result, len(records)), nil
}

func (fuzzProducer) Send(_ context.Context, _ string, records []produce.Record, notify chan<- *produce.Batch, tag any) (*produce.Batch, error) {
	b := &produce.Batch{Tag: tag, Results: make([]produce.Result, len(records))}
	notify <- b
	return b, nil
}

func (fuzzProducer) Idempotent(records []produce.Record) bool {
	return len(records) > 0 && records[0].IdempotencyKey != ""
}

// fuzzConsumer parses ack IDs as the domain does; Subscribe ends at once
// (the gateway shutting down), after the adapter's own checks.
type fuzzConsumer struct{}

func (fuzzConsumer) Subscribe(context.Context, consume.SubscribeRequest) (*consume.Stream, error) {
	return nil, consume.ErrClosed
}

func (fuzzConsumer) Ack(_ context.Context, _ string, ids []string) error { return parseAll(ids) }

func (fuzzConsumer) Nack(_ string, ids []string, _ consume.NackOptions) error { return parseAll(ids) }

func (fuzzConsumer) Extend(_ context.Context, _ string, ids []string, _ time.Duration) ([]time.Time, error) {
	if err := parseAll(ids); err != nil {
		return nil, err
	}
	return make([]time.Time, len(ids)), nil
}

func parseAll(ids []string) error {
	for i, s := range ids {
		if _, _, err := consume.ParseAckID(fmt.Sprintf("ack_ids[%d]", i), s); err != nil {
			return err
		}
	}
	return nil
}

// fuzzStream is a ProduceStream that yields one request, then EOF.
type fuzzStream struct {
	grpc.ServerStream
	ctx  context.Context
	reqs []*gatewayv1.ProduceStreamRequest
}

func (s *fuzzStream) Context() context.Context { return s.ctx }
func (s *fuzzStream) Send(*gatewayv1.ProduceStreamResponse) error {
	return nil
}

// SendMsg takes the answers ProduceStream writes straight from results,
// encoding them as gRPC would.
func (s *fuzzStream) SendMsg(m any) error {
	data, err := encoding.GetCodecV2(grpcproto.Name).Marshal(m)
	if err != nil {
		return err
	}
	data.Free()
	return nil
}
func (s *fuzzStream) Recv() (*gatewayv1.ProduceStreamRequest, error) {
	if len(s.reqs) == 0 {
		return nil, io.EOF
	}
	r := s.reqs[0]
	s.reqs = s.reqs[1:]
	return r, nil
}

// subscribeStream is a Subscribe stream that is never sent to.
type subscribeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *subscribeStream) Context() context.Context                { return s.ctx }
func (s *subscribeStream) Send(*gatewayv1.SubscribeResponse) error { return nil }

// FuzzRequests feeds every RPC of the API with arbitrary request bytes (kind
// picks the RPC): a handler never panics, and fails only with
// INVALID_ARGUMENT or the code of the domain's own answer.
func FuzzRequests(f *testing.F) {
	seed := func(kind uint8, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kind, b)
	}
	rec := &gatewayv1.Record{Key: []byte("k"), Value: []byte("v"), Headers: []*gatewayv1.Header{{Key: "h", Value: []byte("x")}},
		Partition: proto.Int32(2), Timestamp: timestamppb.New(timestamppb.Now().AsTime())}
	seed(0, &gatewayv1.ProduceRequest{Topic: "orders", Records: []*gatewayv1.Record{rec}})
	seed(0, &gatewayv1.ProduceRequest{Topic: "orders", Records: []*gatewayv1.Record{{Timestamp: &timestamppb.Timestamp{Seconds: -1 << 40}}}})
	seed(1, &gatewayv1.ProduceStreamRequest{RequestId: "r1", Topic: "orders", Records: []*gatewayv1.Record{rec, {IdempotencyKey: "i"}}})
	seed(2, &gatewayv1.SubscribeRequest{Group: "g", Topics: []string{"orders"}, Ordering: gatewayv1.Ordering_ORDERING_KEY,
		MaxInFlight: 10, AckTimeout: durationpb.New(5e9), MaxAttempts: 3})
	seed(2, &gatewayv1.SubscribeRequest{Group: "g", AckTimeout: &durationpb.Duration{Seconds: -1}, MaxAttempts: -1, Ordering: 99})
	seed(3, &gatewayv1.AckRequest{Group: "g", AckIds: []string{"orders/0/5/1", "bad"}})
	seed(4, &gatewayv1.NackRequest{Group: "g", AckIds: []string{"orders/0/5/1"}, RetryAfter: &durationpb.Duration{Nanos: -5}, Reason: "x"})
	seed(5, &gatewayv1.ExtendRequest{Group: "g", AckIds: []string{"orders/0/5/1"}, Extension: durationpb.New(3e10)})
	seed(5, &gatewayv1.ExtendRequest{Group: "g", AckIds: []string{"orders/0/5/1"}, Extension: &durationpb.Duration{Seconds: 1, Nanos: -5}})
	f.Add(uint8(0), []byte{0x0a, 0x80})
	logger := slog.New(slog.DiscardHandler)
	ps := NewProducerServer(fuzzProducer{}, Guard{}, logger, 4, make(chan struct{}))
	cs := NewConsumerServer(fuzzConsumer{}, Guard{}, logger)
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		ctx := context.Background()
		var err error
		allowed := map[codes.Code]bool{codes.OK: true, codes.InvalidArgument: true}
		switch kind % 6 {
		case 0:
			req := &gatewayv1.ProduceRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			var resp *gatewayv1.ProduceResponse
			resp, err = ps.Produce(ctx, req)
			if err == nil && len(resp.GetResults()) != len(req.GetRecords()) {
				t.Fatalf("%d results for %d records", len(resp.GetResults()), len(req.GetRecords()))
			}
		case 1:
			req := &gatewayv1.ProduceStreamRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			err = ps.ProduceStream(&fuzzStream{ctx: ctx, reqs: []*gatewayv1.ProduceStreamRequest{req}})
		case 2:
			req := &gatewayv1.SubscribeRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			err = cs.Subscribe(req, &subscribeStream{ctx: ctx})
			allowed[codes.Unavailable] = true // the fake domain's answer
		case 3:
			req := &gatewayv1.AckRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			_, err = cs.Ack(ctx, req)
		case 4:
			req := &gatewayv1.NackRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			_, err = cs.Nack(ctx, req)
		case 5:
			req := &gatewayv1.ExtendRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			var resp *gatewayv1.ExtendResponse
			resp, err = cs.Extend(ctx, req)
			if err == nil && len(resp.GetAckDeadlines()) != len(req.GetAckIds()) {
				t.Fatalf("%d deadlines for %d ack IDs", len(resp.GetAckDeadlines()), len(req.GetAckIds()))
			}
		}
		if st := status.Convert(err); !allowed[st.Code()] {
			t.Fatalf("kind %d: %v", kind%6, err)
		}
	})
}
