package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/produce"
)

// Producer is what the producer service needs from the domain.
type Producer interface {
	Produce(ctx context.Context, topic string, records []produce.Record) ([]produce.Result, error)
	Send(ctx context.Context, topic string, records []produce.Record, notify chan<- *produce.Batch, tag any) (*produce.Batch, error)
	// Idempotent reports whether records need Produce's idempotency
	// protocol rather than Send.
	Idempotent(records []produce.Record) bool
}

// ProducerServer implements gateway.v1.ProducerService.
type ProducerServer struct {
	gatewayv1.UnimplementedProducerServiceServer

	producer Producer
	guard    Guard
	logger   *slog.Logger
	// maxInflight bounds the unanswered batches of one ProduceStream.
	maxInflight int
	// draining is closed when the gateway shuts down: streams stop reading,
	// answer what they have read, and end with UNAVAILABLE.
	draining <-chan struct{}
}

// NewProducerServer returns the producer service. guard applies limits and
// ACLs; maxInflight bounds the unanswered batches per stream; draining is
// closed at shutdown.
func NewProducerServer(p Producer, guard Guard, logger *slog.Logger, maxInflight int, draining <-chan struct{}) *ProducerServer {
	return &ProducerServer{producer: p, guard: guard, logger: logger, maxInflight: maxInflight, draining: draining}
}

// Produce implements gateway.v1.ProducerService.Produce.
func (s *ProducerServer) Produce(ctx context.Context, req *gatewayv1.ProduceRequest) (*gatewayv1.ProduceResponse, error) {
	records, err := fromProtoRecords(req.GetRecords())
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	if err := s.guard.admit(ctx, req.GetTopic(), records); err != nil {
		setRetryTrailer(ctx, err)
		return nil, toStatus(s.logger, err).Err()
	}
	results, err := s.producer.Produce(ctx, req.GetTopic(), records)
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	resp := &gatewayv1.ProduceResponse{Results: s.toProtoResults(results)}
	if st := commonFailure(resp.Results); st != nil {
		return nil, status.ErrorProto(st)
	}
	return resp, nil
}

// commonFailure returns the status shared by every result when all of them
// failed with the same code, and nil otherwise.
func commonFailure(results []*gatewayv1.RecordResult) *spb.Status {
	if len(results) == 0 || results[0].GetError() == nil {
		return nil
	}
	first := results[0].GetError()
	for _, r := range results[1:] {
		if r.GetError().GetCode() != first.GetCode() {
			return nil
		}
	}
	return &spb.Status{
		Code:    first.GetCode(),
		Message: fmt.Sprintf("no record written: records[0]: %s", first.GetMessage()),
	}
}

// ProduceStream implements gateway.v1.ProducerService.ProduceStream.
//
// One goroutine (this one) enqueues batches in the order they arrive and
// sends every response; a reader goroutine only receives. Reading stops while
// maxInflight batches are unanswered, which pushes back on the client through
// gRPC flow control.
//
// When records of a batch fail before they are enqueued (the local queue
// stayed full, or shutdown began), nothing after them may be written, or
// records with the same key would be written out of order: the stream stops
// reading, answers the batches in flight (that one included), and ends with
// the failure's code (RESOURCE_EXHAUSTED, UNAVAILABLE), naming the batch's
// request_id. The client resends from the first record that failed.
func (s *ProducerServer) ProduceStream(stream gatewayv1.ProducerService_ProduceStreamServer) error {
	ctx := stream.Context()
	type received struct {
		req *gatewayv1.ProduceStreamRequest
		err error
	}
	reqs := make(chan received)
	quit := make(chan struct{})
	defer close(quit)
	// The reader ends when Recv fails, which happens at the latest when this
	// handler returns and gRPC cancels the stream.
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case reqs <- received{req, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	done := make(chan *produce.Batch, s.maxInflight)
	draining := s.draining
	var inflight int
	var halfClosed, drained bool
	var stopped *status.Status // set when a batch's records could not all be enqueued
	var frame resultsFrame     // the answer being sent, reused batch after batch
	for {
		if halfClosed || drained || stopped != nil {
			if inflight == 0 {
				switch {
				case stopped != nil:
					return stopped.Err()
				case drained:
					return status.Error(codes.Unavailable, "gateway shutting down; batches without a response were not written")
				}
				return nil
			}
		}
		var next <-chan received
		if !halfClosed && !drained && stopped == nil && inflight < s.maxInflight {
			next = reqs
		}
		select {
		case r := <-next:
			switch {
			case errors.Is(r.err, io.EOF):
				halfClosed = true
			case r.err != nil:
				return r.err
			default:
				sent, stop, err := s.sendBatch(ctx, stream, r.req, done)
				if err != nil {
					return err
				}
				if sent {
					inflight++
				}
				stopped = stop
			}
		case b := <-done:
			inflight--
			if err := frame.set(s.logger, b.Tag.(string), b.Results); err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if err := stream.SendMsg(&frame); err != nil {
				return err
			}
		case <-draining:
			drained, draining = true, nil
		case <-ctx.Done():
			return toStatus(s.logger, ctx.Err()).Err()
		}
	}
}

// sendBatch enqueues one stream batch. A batch rejected as a whole is
// answered at once with its error in every result; sent reports whether the
// batch is in flight instead. stop, when not nil, is the status that must
// end the stream because records of the batch could not be enqueued (see
// ProduceStream).
func (s *ProducerServer) sendBatch(ctx context.Context, stream gatewayv1.ProducerService_ProduceStreamServer, req *gatewayv1.ProduceStreamRequest, done chan<- *produce.Batch) (sent bool, stop *status.Status, err error) {
	records, err := fromProtoRecords(req.GetRecords())
	if err == nil {
		// A wait rule blocks the stream here, which is the point: reading
		// stops, and gRPC flow control pushes back on the client.
		err = s.guard.admit(ctx, req.GetTopic(), records)
	}
	if err == nil && s.producer.Idempotent(records) {
		// Idempotent batches run to completion here, which keeps them in
		// order with the batches around them.
		var results []produce.Result
		if results, err = s.producer.Produce(ctx, req.GetTopic(), records); err == nil {
			if i, unsent := firstUnsent(results); unsent != nil {
				stop = s.stopStatus(req.GetRequestId(), i, unsent)
			}
			return false, stop, stream.Send(&gatewayv1.ProduceStreamResponse{RequestId: req.GetRequestId(), Results: s.toProtoResults(results)})
		}
	} else if err == nil {
		var b *produce.Batch
		if b, err = s.producer.Send(ctx, req.GetTopic(), records, done, req.GetRequestId()); err == nil {
			if unsent := b.Unsent(); unsent != nil {
				stop = s.stopStatus(req.GetRequestId(), b.Enqueued(), unsent)
			}
			return true, stop, nil
		}
	}
	if errors.Is(err, produce.ErrClosed) {
		// Shutting down: nothing later can be written either.
		stop = s.stopStatus(req.GetRequestId(), 0, err)
	}
	st := toStatus(s.logger, err).Proto()
	resp := &gatewayv1.ProduceStreamResponse{RequestId: req.GetRequestId(), Results: make([]*gatewayv1.RecordResult, len(req.GetRecords()))}
	for i := range resp.Results {
		resp.Results[i] = &gatewayv1.RecordResult{MessageId: req.GetRecords()[i].GetIdempotencyKey(), Error: st}
	}
	return false, stop, stream.Send(resp)
}

// firstUnsent returns the index and error of the first result that failed
// before its record was enqueued (queue full, shutting down), or -1, nil.
func firstUnsent(results []produce.Result) (int, error) {
	for i := range results {
		if err := results[i].Err; errors.Is(err, produce.ErrQueueFull) || errors.Is(err, produce.ErrClosed) {
			return i, err
		}
	}
	return -1, nil
}

// stopStatus is the status that ends a stream after the batch requestID
// could not be enqueued from records[from] on, because of err.
func (s *ProducerServer) stopStatus(requestID string, from int, err error) *status.Status {
	st := toStatus(s.logger, err)
	return status.Newf(st.Code(),
		"request_id %q: records[%d] and later were not written (%s); the stream ends so that nothing after them is written out of order: resend from records[%d] of that batch",
		requestID, from, st.Message(), from)
}

// fromProtoRecords converts records, keeping a null key or value (unset)
// apart from an empty one; bad timestamps are reported by field.
func fromProtoRecords(in []*gatewayv1.Record) ([]produce.Record, error) {
	var errs invalid.Error
	out := make([]produce.Record, len(in))
	for i, r := range in {
		rec := &out[i]
		// Presence is kept: an unset key or value decodes as nil, which the
		// producer writes as null (a null value is a tombstone); a set one,
		// even empty, decodes as a non-nil slice and is written as it is.
		rec.Key, rec.Value = r.GetKey(), r.GetValue()
		rec.Partition = produce.AnyPartition
		if r.Partition != nil {
			rec.Partition = r.GetPartition()
		}
		if ts := r.GetTimestamp(); ts != nil {
			if err := ts.CheckValid(); err != nil {
				errs.Add(fmt.Sprintf("records[%d].timestamp", i), "%v", err)
			}
			rec.Timestamp = ts.AsTime()
		}
		rec.IdempotencyKey = r.GetIdempotencyKey()
		if hs := r.GetHeaders(); len(hs) > 0 {
			rec.Headers = make([]produce.Header, len(hs))
			for j, h := range hs {
				rec.Headers[j] = produce.Header{Key: h.GetKey(), Value: h.GetValue()}
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *ProducerServer) toProtoResults(results []produce.Result) []*gatewayv1.RecordResult {
	// The results and their timestamps are allocated together, and records
	// with the same timestamp (those of one batch, unless the app set them)
	// share one: the response is only marshalled, never changed.
	out := make([]*gatewayv1.RecordResult, len(results))
	prs := make([]gatewayv1.RecordResult, len(results))
	var last *timestamppb.Timestamp
	var lastTime time.Time
	for i := range results {
		r := &results[i]
		pr := &prs[i]
		pr.MessageId = r.MessageID
		if r.Err != nil {
			pr.Error = toStatus(s.logger, r.Err).Proto()
		} else {
			pr.Partition = r.Partition
			pr.Offset = r.Offset
			if last == nil || !r.Timestamp.Equal(lastTime) {
				last, lastTime = timestamppb.New(r.Timestamp), r.Timestamp
			}
			pr.Timestamp = last
		}
		out[i] = pr
	}
	return out
}
