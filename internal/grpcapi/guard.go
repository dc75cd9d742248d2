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
	n := 0
	for i := range records {
		n += records[i].Size()
	}
	return g.Limits.Admit(ctx, identity.FromContext(ctx, g.Identity), topic, len(records), n)
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
