package grpcapi

import (
	"context"
	"errors"
	"strconv"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kafkagate/gateway/internal/identity"
	"github.com/kafkagate/gateway/internal/produce"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

// Limits is the rate limiter and ACL as the services use it (see package
// ratelimit).
type Limits interface {
	Admit(ctx context.Context, identity, topic string, records, bytes int) error
	Check(op ratelimit.Operation, identity, topic string) error
	CheckGroup(op ratelimit.GroupOperation, identity, group string) error
	DeliveryLimiter(identity string, topics []string) *rate.Limiter
	ReleaseDelivery(lim *rate.Limiter)
}

// Guard applies limits and ACLs to calls; its zero value admits everything.
type Guard struct {
	Limits   Limits // nil: no limits
	Identity identity.Config
}

// admit applies the produce limits to a batch before it goes near the
// producer's queue.
func (g Guard) admit(ctx context.Context, topic string, records []produce.Record) error {
	if g.Limits == nil {
		return nil
	}
	// A topic name that could never exist is bad input, answered as such
	// before any rule is consulted.
	if why := produce.ValidTopicName(topic); why != "" {
		return invalidField("topic", why)
	}
	n := 0
	for i := range records {
		n += records[i].Size()
	}
	return g.Limits.Admit(ctx, identity.FromContext(ctx, g.Identity), topic, len(records), n)
}

// group authorizes op on group by the caller; with topics, consume on
// each of them too. Without limits everything is allowed.
func (g Guard) group(ctx context.Context, op ratelimit.GroupOperation, group string, topics ...string) error {
	if g.Limits == nil {
		return nil
	}
	id := identity.FromContext(ctx, g.Identity)
	if err := g.Limits.CheckGroup(op, id, group); err != nil {
		return err
	}
	for _, t := range topics {
		if err := g.Limits.Check(ratelimit.Consume, id, t); err != nil {
			return err
		}
	}
	return nil
}

// topic authorizes op on topic by the caller.
func (g Guard) topic(ctx context.Context, op ratelimit.Operation, topic string) error {
	if g.Limits == nil {
		return nil
	}
	return g.Limits.Check(op, identity.FromContext(ctx, g.Identity), topic)
}

// RetryAfterTrailer is the trailer metadata key of a rejected call's retry
// delay in milliseconds; the status also carries it as a
// google.rpc.RetryInfo detail.
const RetryAfterTrailer = "retry-after-ms"

// setRetryTrailer sets the retry-after-ms trailer of a unary call limited
// by err.
func setRetryTrailer(ctx context.Context, err error) {
	var lim *ratelimit.LimitedError
	if errors.As(err, &lim) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(RetryAfterTrailer, strconv.FormatInt(ratelimit.RetryAfterMillis(lim.RetryAfter), 10)))
	}
}

func retryInfo(lim *ratelimit.LimitedError) *errdetails.RetryInfo {
	return &errdetails.RetryInfo{RetryDelay: durationpb.New(lim.RetryAfter)}
}
