package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

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
			return toStatus(s.logger, invalidField("ack_timeout", "must be a valid, non-negative duration")).Err()
		}
		sub.AckTimeout = d.AsDuration()
	}
	if req.GetMaxAttempts() < 0 {
		return toStatus(s.logger, invalidField("max_attempts", "must not be negative")).Err()
	}
	if lims := s.guard.Limits; lims != nil {
		id := identity.FromContext(ctx, s.guard.Identity)
		if err := s.guard.group(ctx, ratelimit.Subscribe, sub.Group, sub.Topics...); err != nil {
			return toStatus(s.logger, err).Err()
		}
		sub.DeliveryRate = lims.DeliveryLimiter(id, sub.Topics)
		defer lims.ReleaseDelivery(sub.DeliveryRate)
	}
	st, err := s.consumer.Subscribe(ctx, sub)
	if err != nil {
		return toStatus(s.logger, err).Err()
	}
	defer st.Close()
	for {
		f, err := st.Next(ctx)
		if err != nil {
			return toStatus(s.logger, err).Err()
		}
		if err := stream.Send(toProtoFrame(f)); err != nil {
			return err
		}
	}
}

func toProtoFrame(f consume.Frame) *gatewayv1.SubscribeResponse {
	if a := f.Assignment; a != nil {
		return &gatewayv1.SubscribeResponse{Frame: &gatewayv1.SubscribeResponse_Assignment{Assignment: &gatewayv1.Assignment{
			Assigned: toProtoTPs(a.Assigned),
			Revoked:  toProtoTPs(a.Revoked),
		}}}
	}
	ds := make([]*gatewayv1.Delivery, len(f.Deliveries))
	for i := range f.Deliveries {
		d := &f.Deliveries[i]
		pd := &gatewayv1.Delivery{
			AckId:     d.AckID,
			Topic:     d.Topic,
			Partition: d.Partition,
			Offset:    d.Offset,
			Key:       d.Key,   // nil (null) is unset, non-nil empty is set and empty
			Value:     d.Value, // nil (a tombstone's null) likewise
			Timestamp: timestamppb.New(d.Timestamp),
			MessageId: d.MessageID,
			Attempt:   d.Attempt,
		}
		if !d.AckDeadline.IsZero() {
			pd.AckDeadline = timestamppb.New(d.AckDeadline)
		}
		if len(d.Headers) > 0 {
			pd.Headers = make([]*gatewayv1.Header, len(d.Headers))
			for j, h := range d.Headers {
				pd.Headers[j] = &gatewayv1.Header{Key: h.Key, Value: h.Value}
			}
		}
		ds[i] = pd
	}
	return &gatewayv1.SubscribeResponse{Frame: &gatewayv1.SubscribeResponse_Deliveries{Deliveries: &gatewayv1.Deliveries{Deliveries: ds}}}
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
