package grpcapi

import (
	"context"
	"fmt"
	"log/slog"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/admin"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/identity"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

// Admin is what the admin service needs from the domain.
type Admin interface {
	DescribeGroup(ctx context.Context, group string, topics []string) (admin.GroupDescription, error)
	ResetOffsets(ctx context.Context, req admin.ResetRequest) ([]admin.PartitionReset, error)
	ListTopics(ctx context.Context, includeInternal bool) ([]admin.TopicSummary, error)
	DescribeTopic(ctx context.Context, topic string) (admin.TopicDescription, error)
	ReplayDeadLetters(ctx context.Context, req admin.ReplayRequest, progress func(admin.ReplayProgress) error) (admin.ReplayProgress, error)
}

// AdminServer implements gateway.v1.AdminService.
type AdminServer struct {
	gatewayv1.UnimplementedAdminServiceServer

	admin    Admin
	access   admin.Config
	identity identity.Config
	guard    Guard
	draining <-chan struct{}
	logger   *slog.Logger
}

// NewAdminServer returns the admin service. access says who may call it at
// all, guard what each caller may do with which group and topic (and where
// callers' identities come from); draining closes when the gateway begins
// to shut down (a replay then stops).
func NewAdminServer(a Admin, access admin.Config, guard Guard, draining <-chan struct{}, logger *slog.Logger) *AdminServer {
	return &AdminServer{admin: a, access: access, identity: guard.Identity, guard: guard, draining: draining, logger: logger}
}

// authorize returns the caller's identity ("" when it has none), or
// ErrNotAllowed.
func (s *AdminServer) authorize(ctx context.Context) (string, error) {
	id := identity.FromContext(ctx, s.identity)
	switch {
	case len(s.access.AllowedIdentities) == 0:
		return id, nil
	case id == "" && s.identity.Header != "":
		return "", fmt.Errorf("%w: no caller identity (send it in the %s header)", admin.ErrNotAllowed, s.identity.Header)
	case id == "":
		return "", fmt.Errorf("%w: no caller identity", admin.ErrNotAllowed)
	case !s.access.Allowed(id):
		return "", fmt.Errorf("%w: identity %q is not in admin.allowed_identities", admin.ErrNotAllowed, id)
	}
	return id, nil
}

// DescribeGroup implements gateway.v1.AdminService.DescribeGroup.
func (s *AdminServer) DescribeGroup(ctx context.Context, req *gatewayv1.DescribeGroupRequest) (*gatewayv1.DescribeGroupResponse, error) {
	if _, err := s.authorize(ctx); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	if err := s.guard.group(ctx, ratelimit.Describe, req.GetGroup(), req.GetTopics()...); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	d, err := s.admin.DescribeGroup(ctx, req.GetGroup(), req.GetTopics())
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	resp := &gatewayv1.DescribeGroupResponse{
		Group:       d.Group,
		State:       d.State,
		Assignor:    d.Assignor,
		TotalLag:    d.TotalLag,
		RunningHere: d.RunningHere,
	}
	for _, m := range d.Members {
		resp.Members = append(resp.Members, &gatewayv1.GroupMember{
			MemberId:    m.MemberID,
			ClientId:    m.ClientID,
			Host:        m.Host,
			InstanceId:  m.InstanceID,
			Assignment:  toProtoTPs(m.Assignment),
			ThisGateway: m.ThisGateway,
		})
	}
	for _, p := range d.Partitions {
		resp.Partitions = append(resp.Partitions, &gatewayv1.PartitionLag{
			Topic:           p.Topic,
			Partition:       p.Partition,
			CommittedOffset: p.Committed,
			LogStartOffset:  p.LogStart,
			LogEndOffset:    p.LogEnd,
			Lag:             p.Lag,
			MemberId:        p.MemberID,
		})
	}
	return resp, nil
}

var resetPositions = map[gatewayv1.ResetPosition]admin.ResetTo{
	gatewayv1.ResetPosition_RESET_POSITION_EARLIEST: admin.ToEarliest,
	gatewayv1.ResetPosition_RESET_POSITION_LATEST:   admin.ToLatest,
}

var resetActions = map[admin.Action]gatewayv1.ResetAction{
	admin.ActionRepositioned: gatewayv1.ResetAction_RESET_ACTION_REPOSITIONED,
	admin.ActionCommitted:    gatewayv1.ResetAction_RESET_ACTION_COMMITTED,
	admin.ActionSkipped:      gatewayv1.ResetAction_RESET_ACTION_SKIPPED,
}

// ResetOffsets implements gateway.v1.AdminService.ResetOffsets.
func (s *AdminServer) ResetOffsets(ctx context.Context, req *gatewayv1.ResetOffsetsRequest) (*gatewayv1.ResetOffsetsResponse, error) {
	who, err := s.authorize(ctx)
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	if err := s.guard.group(ctx, ratelimit.Reset, req.GetGroup(), req.GetTopics()...); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	r := admin.ResetRequest{
		Group:     req.GetGroup(),
		Topics:    req.GetTopics(),
		DryRun:    req.GetDryRun(),
		Force:     req.GetForce(),
		Requester: who,
	}
	switch t := req.GetTarget().(type) {
	case *gatewayv1.ResetOffsetsRequest_ToPosition:
		to, ok := resetPositions[t.ToPosition]
		if !ok {
			return nil, toStatus(s.logger, invalidField("to_position", "must be RESET_POSITION_EARLIEST or RESET_POSITION_LATEST")).Err()
		}
		r.To = to
	case *gatewayv1.ResetOffsetsRequest_ToTimestamp:
		if err := t.ToTimestamp.CheckValid(); err != nil {
			return nil, toStatus(s.logger, invalidField("to_timestamp", "must be a valid timestamp")).Err()
		}
		r.To, r.Timestamp = admin.ToTimestamp, t.ToTimestamp.AsTime()
	case *gatewayv1.ResetOffsetsRequest_ToOffset:
		r.To, r.Offset = admin.ToOffset, t.ToOffset
	case *gatewayv1.ResetOffsetsRequest_ToOffsets:
		r.To = admin.ToOffsets
		for _, o := range t.ToOffsets.GetOffsets() {
			r.Offsets = append(r.Offsets, consume.PartitionOffset{Topic: o.GetTopic(), Partition: o.GetPartition(), Offset: o.GetOffset()})
		}
	}
	plan, err := s.admin.ResetOffsets(ctx, r)
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	resp := &gatewayv1.ResetOffsetsResponse{DryRun: r.DryRun}
	for _, p := range plan {
		resp.Partitions = append(resp.Partitions, &gatewayv1.PartitionReset{
			Topic:          p.Topic,
			Partition:      p.Partition,
			PreviousOffset: p.Previous,
			TargetOffset:   p.Target,
			Clamped:        p.Clamped,
			LogStartOffset: p.LogStart,
			LogEndOffset:   p.LogEnd,
			Action:         resetActions[p.Action],
			MemberId:       p.MemberID,
		})
	}
	return resp, nil
}

// ListTopics implements gateway.v1.AdminService.ListTopics.
func (s *AdminServer) ListTopics(ctx context.Context, req *gatewayv1.ListTopicsRequest) (*gatewayv1.ListTopicsResponse, error) {
	if _, err := s.authorize(ctx); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	topics, err := s.admin.ListTopics(ctx, req.GetIncludeInternal())
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	resp := &gatewayv1.ListTopicsResponse{}
	for _, t := range topics {
		resp.Topics = append(resp.Topics, &gatewayv1.TopicSummary{Name: t.Name, Partitions: int32(t.Partitions), Internal: t.Internal})
	}
	return resp, nil
}

// DescribeTopic implements gateway.v1.AdminService.DescribeTopic.
func (s *AdminServer) DescribeTopic(ctx context.Context, req *gatewayv1.DescribeTopicRequest) (*gatewayv1.DescribeTopicResponse, error) {
	if _, err := s.authorize(ctx); err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	d, err := s.admin.DescribeTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, toStatus(s.logger, err).Err()
	}
	resp := &gatewayv1.DescribeTopicResponse{Name: d.Name, TopicId: d.TopicID, Internal: d.Internal}
	for _, p := range d.Partitions {
		pi := &gatewayv1.PartitionInfo{
			Partition:      p.Partition,
			Replicas:       p.Replicas,
			Isr:            p.ISR,
			LogStartOffset: p.LogStart,
			LogEndOffset:   p.LogEnd,
		}
		if b := p.Leader; b != nil {
			pi.Leader = &gatewayv1.Broker{Id: b.ID, Host: b.Host, Port: b.Port}
		}
		resp.Partitions = append(resp.Partitions, pi)
	}
	return resp, nil
}

// ReplayDeadLetters implements gateway.v1.AdminService.ReplayDeadLetters.
func (s *AdminServer) ReplayDeadLetters(req *gatewayv1.ReplayDeadLettersRequest, stream gatewayv1.AdminService_ReplayDeadLettersServer) error {
	ctx := stream.Context()
	who, err := s.authorize(ctx)
	if err != nil {
		return toStatus(s.logger, err).Err()
	}
	// A replay reads the dead-letter topic and writes into its target(s):
	// the caller must be allowed both, as if it did them itself.
	if err := s.guard.topic(ctx, ratelimit.Consume, req.GetDeadLetterTopic()); err != nil {
		return toStatus(s.logger, err).Err()
	}
	if t := req.GetTargetTopic(); t != "" {
		if err := s.guard.topic(ctx, ratelimit.Produce, t); err != nil {
			return toStatus(s.logger, err).Err()
		}
	}
	r := admin.ReplayRequest{
		DeadLetterTopic: req.GetDeadLetterTopic(),
		Partition:       admin.AllPartitions,
		StartOffset:     req.GetStartOffset(),
		EndOffset:       -1,
		Group:           req.GetGroup(),
		TargetTopic:     req.GetTargetTopic(),
		DryRun:          req.GetDryRun(),
		Requester:       who,
		MayWrite:        func(topic string) error { return s.guard.topic(ctx, ratelimit.Produce, topic) },
	}
	if req.Partition != nil {
		if r.Partition = req.GetPartition(); r.Partition < 0 {
			return toStatus(s.logger, invalidField("partition", "must not be negative")).Err()
		}
	}
	if req.EndOffset != nil {
		if r.EndOffset = req.GetEndOffset(); r.EndOffset < 0 {
			return toStatus(s.logger, invalidField("end_offset", "must not be negative")).Err()
		}
	}
	// A replay stops when the gateway begins to shut down.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-s.draining:
			cancel()
		case <-ctx.Done():
		}
	}()
	send := func(p admin.ReplayProgress, done bool) error {
		return stream.Send(&gatewayv1.ReplayDeadLettersResponse{
			Total: p.Total, Scanned: p.Scanned, Replayed: p.Replayed, Skipped: p.Skipped, Done: done,
		})
	}
	final, err := s.admin.ReplayDeadLetters(ctx, r, func(p admin.ReplayProgress) error { return send(p, false) })
	if err != nil {
		select {
		case <-s.draining:
			err = fmt.Errorf("%w: %d of %d records replayed; run the replay again for the rest", consume.ErrClosed, final.Replayed, final.Total)
		default:
		}
		return toStatus(s.logger, err).Err()
	}
	return send(final, true)
}
