package grpcapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/identity"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

// Consumer is what the consumer service needs from the domain.
type Consumer interface {
	Subscribe(ctx context.Context, req consume.SubscribeRequest) (*consume.Stream, error)
	Ack(ctx context.Context, group string, ackIDs []string) error
	Nack(group string, ackIDs []string, opts consume.NackOptions) error
	Extend(ctx context.Context, group string, ackIDs []string, by time.Duration) ([]time.Time, error)
}

// ConsumerServer implements gateway.v1.ConsumerService.
type ConsumerServer struct {
	gatewayv1.UnimplementedConsumerServiceServer

	consumer Consumer
	guard    Guard
	logger   *slog.Logger
}

// NewConsumerServer returns the consumer service; guard applies the topic
// ACL and delivery limits to subscriptions.
func NewConsumerServer(c Consumer, guard Guard, logger *slog.Logger) *ConsumerServer {
	return &ConsumerServer{consumer: c, guard: guard, logger: logger}
}

var orderings = map[gatewayv1.Ordering]consume.Ordering{
	gatewayv1.Ordering_ORDERING_PARTITION: consume.OrderingPartition,
	gatewayv1.Ordering_ORDERING_KEY:       consume.OrderingKey,
	gatewayv1.Ordering_ORDERING_NONE:      consume.OrderingNone,
}

var startPositions = map[gatewayv1.StartPosition]consume.StartPosition{
	gatewayv1.StartPosition_START_POSITION_EARLIEST: consume.StartEarliest,
	gatewayv1.StartPosition_START_POSITION_LATEST:   consume.StartLatest,
}

// Subscribe implements gateway.v1.ConsumerService.Subscribe.
func (s *ConsumerServer) Subscribe(req *gatewayv1.SubscribeRequest, stream gatewayv1.ConsumerService_SubscribeServer) error {
	ctx := stream.Context()
	sub, release, err := s.subscription(ctx, req, "")
	if err != nil {
		return toStatus(s.logger, err).Err()
	}
	defer release()
	st, err := s.consumer.Subscribe(ctx, sub)
	if err != nil {
		return toStatus(s.logger, err).Err()
	}
	defer st.Close()
	var frame deliveriesFrame
	for {
		f, err := st.Next(ctx)
		if err != nil {
			return toStatus(s.logger, err).Err()
		}
		if err := stream.SendMsg(frameMessage(f, &frame, subscribeAssignment)); err != nil {
			return err
		}
		frame.ds = nil
		st.Recycle(f.Deliveries)
	}
}

// subscription checks a subscription and authorizes it; release gives back
// what it took (the delivery limiter). path prefixes the fields named in
// errors.
func (s *ConsumerServer) subscription(ctx context.Context, req *gatewayv1.SubscribeRequest, path string) (consume.SubscribeRequest, func(), error) {
	sub := consume.SubscribeRequest{
		Identity:      identity.FromContext(ctx, s.guard.Identity),
		Group:         req.GetGroup(),
		Topics:        req.GetTopics(),
		Ordering:      orderings[req.GetOrdering()],
		MaxInFlight:   int(req.GetMaxInFlight()),
		StartPosition: startPositions[req.GetStartPosition()],
		MaxAttempts:   int(req.GetMaxAttempts()),
	}
	if d := req.GetAckTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return sub, nil, invalidField(path+"ack_timeout", "must be a valid, non-negative duration")
		}
		sub.AckTimeout = d.AsDuration()
	}
	if req.GetMaxAttempts() < 0 {
		return sub, nil, invalidField(path+"max_attempts", "must not be negative")
	}
	lims := s.guard.Limits
	if lims == nil {
		return sub, func() {}, nil
	}
	if err := s.guard.group(ctx, ratelimit.Subscribe, sub.Group, sub.Topics...); err != nil {
		return sub, nil, err
	}
	sub.DeliveryRate = lims.DeliveryLimiter(sub.Identity, sub.Topics)
	return sub, func() { lims.ReleaseDelivery(sub.DeliveryRate) }, nil
}

// Consume implements gateway.v1.ConsumerService.Consume: one goroutine
// reads the app's messages (credit and settles), one answers the settles in
// order once their outcomes are known, and this one sends the frames. Sends
// are serialized, and none is made once the handler returns; the two
// goroutines end when the stream does (the reader's Recv fails then).
func (s *ConsumerServer) Consume(stream gatewayv1.ConsumerService_ConsumeServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return toStatus(s.logger, invalidField("start", "the first message of a Consume stream must be start")).Err()
	}
	grant, err := credit("start.credit", start.GetCredit())
	if err != nil {
		return toStatus(s.logger, err).Err()
	}
	sub, release, err := s.subscription(ctx, start.GetSubscription(), "start.subscription.")
	if err != nil {
		return toStatus(s.logger, err).Err()
	}
	defer release()
	if s.guard.Limits != nil {
		// Settles in the stream are acks of the group's records.
		if err := s.guard.group(ctx, ratelimit.Ack, sub.Group, sub.Topics...); err != nil {
			return toStatus(s.logger, err).Err()
		}
	}
	sub.Credited = true
	st, err := s.consumer.Subscribe(ctx, sub)
	if err != nil {
		return toStatus(s.logger, err).Err()
	}
	defer st.Close()
	st.Grant(grant.records, grant.bytes)

	var sendMu sync.Mutex
	returned := false
	send := func(m any) error { // a *ConsumeResponse or a *deliveriesFrame
		sendMu.Lock()
		defer sendMu.Unlock()
		if returned {
			return io.ErrClosedPipe
		}
		return stream.SendMsg(m)
	}
	defer func() {
		sendMu.Lock()
		returned = true
		sendMu.Unlock()
	}()
	// Settles wait here for their outcomes, in order; a full queue holds
	// the reader back, so an app cannot make the gateway keep any number.
	settles := make(chan pendingSettle, 256)
	go func() {
		for p := range settles {
			res := p.pending.Wait(ctx)
			if err := send(toProtoSettled(p.sequence, res)); err != nil {
				cancel(err)
			}
		}
	}()
	go func() {
		defer close(settles)
		for {
			msg, err := stream.Recv()
			if err != nil {
				if err != io.EOF {
					cancel(err)
				}
				return
			}
			if err := s.consumeMessage(ctx, st, msg, settles); err != nil {
				cancel(err)
				return
			}
		}
	}()
	var frame deliveriesFrame
	for {
		f, err := st.Next(ctx)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
				err = cause
			}
			if _, ok := status.FromError(err); ok {
				return err // the stream's own end (the client went away, say)
			}
			return toStatus(s.logger, err).Err()
		}
		if err := send(frameMessage(f, &frame, consumeAssignment)); err != nil {
			return err
		}
		frame.ds = nil
		st.Recycle(f.Deliveries)
	}
}

// pendingSettle is a settle applied, waiting for its outcomes.
type pendingSettle struct {
	sequence uint64
	pending  *consume.PendingSettle
}

type grant struct{ records, bytes int64 }

// credit reads a grant; field names it in errors.
func credit(field string, c *gatewayv1.Credit) (grant, error) {
	if c.GetRecords() < 0 {
		return grant{}, invalidField(field+".records", "must not be negative")
	}
	if c.GetBytes() < 0 {
		return grant{}, invalidField(field+".bytes", "must not be negative")
	}
	return grant{c.GetRecords(), c.GetBytes()}, nil
}

// consumeMessage applies one message of the app after start.
func (s *ConsumerServer) consumeMessage(ctx context.Context, st *consume.Stream, msg *gatewayv1.ConsumeRequest, settles chan<- pendingSettle) error {
	switch m := msg.GetRequest().(type) {
	case *gatewayv1.ConsumeRequest_Credit:
		g, err := credit("credit", m.Credit)
		if err != nil {
			return err
		}
		st.Grant(g.records, g.bytes)
	case *gatewayv1.ConsumeRequest_Settle:
		set := m.Settle
		g, err := credit("settle.credit", set.GetCredit())
		if err != nil {
			return err
		}
		req := consume.SettleRequest{
			Acks: set.GetAcks(), Nacks: set.GetNacks(), Extends: set.GetExtends(),
			Nack: consume.NackOptions{DeadLetter: set.GetDeadLetter(), Reason: set.GetReason()},
		}
		if d := set.GetRetryAfter(); d != nil {
			if d.CheckValid() != nil {
				return invalidField("settle.retry_after", "must be a valid duration")
			}
			req.Nack.RetryAfter = d.AsDuration()
		}
		if d := set.GetExtension(); d != nil {
			if d.CheckValid() != nil {
				return invalidField("settle.extension", "must be a valid duration")
			}
			req.Extension = d.AsDuration()
		}
		p, err := st.Settle(req)
		if err != nil {
			return err
		}
		if g.records > 0 || g.bytes > 0 {
			st.Grant(g.records, g.bytes)
		}
		select {
		case settles <- pendingSettle{sequence: set.GetSequence(), pending: p}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	case *gatewayv1.ConsumeRequest_Start:
		return invalidField("start", "only the first message of a Consume stream may be start")
	default:
		return invalidField("request", "must be one of start, credit, settle")
	}
	return nil
}

var outcomes = [...]gatewayv1.SettleOutcome{
	consume.Applied:      gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED,
	consume.Stale:        gatewayv1.SettleOutcome_SETTLE_OUTCOME_STALE,
	consume.AlreadyAcked: gatewayv1.SettleOutcome_SETTLE_OUTCOME_ALREADY_ACKED,
	consume.Pending:      gatewayv1.SettleOutcome_SETTLE_OUTCOME_PENDING,
}

func toProtoOutcomes(os []consume.Outcome) []gatewayv1.SettleOutcome {
	out := make([]gatewayv1.SettleOutcome, len(os))
	for i, o := range os {
		out[i] = outcomes[o]
	}
	return out
}

func toProtoSettled(seq uint64, res consume.SettleResult) *gatewayv1.ConsumeResponse {
	st := &gatewayv1.Settled{
		Sequence: seq,
		Acks:     toProtoOutcomes(res.Acks),
		Nacks:    toProtoOutcomes(res.Nacks),
		Extends:  toProtoOutcomes(res.Extends),
	}
	if len(res.Deadlines) > 0 {
		st.AckDeadlines = make([]*timestamppb.Timestamp, len(res.Deadlines))
		for i, t := range res.Deadlines {
			st.AckDeadlines[i] = &timestamppb.Timestamp{} // not applied: the zero timestamp
			if !t.IsZero() {
				st.AckDeadlines[i] = timestamppb.New(t)
			}
		}
	}
	return &gatewayv1.ConsumeResponse{Frame: &gatewayv1.ConsumeResponse_Settled{Settled: st}}
}

// frameMessage returns what to send for a frame: its Assignment as the
// stream's response message (assignment builds it), or its deliveries in
// frame, written straight to the wire by the codec.
func frameMessage(f consume.Frame, frame *deliveriesFrame, assignment func(*gatewayv1.Assignment) any) any {
	if a := f.Assignment; a != nil {
		return assignment(toProtoAssignment(a))
	}
	frame.ds = f.Deliveries
	return frame
}

func subscribeAssignment(a *gatewayv1.Assignment) any {
	return &gatewayv1.SubscribeResponse{Frame: &gatewayv1.SubscribeResponse_Assignment{Assignment: a}}
}

func consumeAssignment(a *gatewayv1.Assignment) any {
	return &gatewayv1.ConsumeResponse{Frame: &gatewayv1.ConsumeResponse_Assignment{Assignment: a}}
}

func toProtoAssignment(a *consume.Assignment) *gatewayv1.Assignment {
	return &gatewayv1.Assignment{Assigned: toProtoTPs(a.Assigned), Revoked: toProtoTPs(a.Revoked)}
}

func toProtoTPs(tps []consume.TopicPartition) []*gatewayv1.TopicPartition {
	out := make([]*gatewayv1.TopicPartition, len(tps))
	for i, tp := range tps {
		out[i] = &gatewayv1.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
	}
	return out
}

// authorizeAcks checks that the caller may ack the group's deliveries and
// consume the topics its ack IDs name. A malformed ID is left to the
// domain, which answers INVALID_ARGUMENT naming it.
func (s *ConsumerServer) authorizeAcks(ctx context.Context, group string, ids []string) error {
	if s.guard.Limits == nil {
		return nil
	}
	var topics []string
	for i, id := range ids {
		a, _, err := consume.ParseAckID(fmt.Sprintf("ack_ids[%d]", i), id)
		if err != nil {
			return err
		}
		if !slices.Contains(topics, a.Topic) {
			topics = append(topics, a.Topic)
		}
	}
	return s.guard.group(ctx, ratelimit.Ack, group, topics...)
}

// Ack implements gateway.v1.ConsumerService.Ack.
func (s *ConsumerServer) Ack(ctx context.Context, req *gatewayv1.AckRequest) (*gatewayv1.AckResponse, error) {
	if err := s.authorizeAcks(ctx, req.GetGroup(), req.GetAckIds()); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	if err := s.consumer.Ack(ctx, req.GetGroup(), req.GetAckIds()); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	return &gatewayv1.AckResponse{}, nil
}

// Nack implements gateway.v1.ConsumerService.Nack.
func (s *ConsumerServer) Nack(ctx context.Context, req *gatewayv1.NackRequest) (*gatewayv1.NackResponse, error) {
	opts := consume.NackOptions{DeadLetter: req.GetDeadLetter(), Reason: req.GetReason()}
	if d := req.GetRetryAfter(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return nil, toStatus(s.logger, invalidField("retry_after", "must be a valid, non-negative duration")).Err()
		}
		opts.RetryAfter = d.AsDuration()
	}
	if err := s.authorizeAcks(ctx, req.GetGroup(), req.GetAckIds()); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	if err := s.consumer.Nack(req.GetGroup(), req.GetAckIds(), opts); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	return &gatewayv1.NackResponse{}, nil
}

// Extend implements gateway.v1.ConsumerService.Extend.
func (s *ConsumerServer) Extend(ctx context.Context, req *gatewayv1.ExtendRequest) (*gatewayv1.ExtendResponse, error) {
	d := req.GetExtension()
	if d == nil || d.CheckValid() != nil || d.AsDuration() <= 0 {
		return nil, toStatus(s.logger, invalidField("extension", "must be a valid, positive duration")).Err()
	}
	if err := s.authorizeAcks(ctx, req.GetGroup(), req.GetAckIds()); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	deadlines, err := s.consumer.Extend(ctx, req.GetGroup(), req.GetAckIds(), d.AsDuration())
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	resp := &gatewayv1.ExtendResponse{AckDeadlines: make([]*timestamppb.Timestamp, len(deadlines))}
	for i, t := range deadlines {
		resp.AckDeadlines[i] = timestamppb.New(t)
	}
	return resp, nil
}
