package grpcapi

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
)

// errTooManyStreams refuses a stream over the gateway's limit.
var errTooManyStreams = errors.New("too many open streams")

// LimitStreams returns an interceptor that refuses (RESOURCE_EXHAUSTED) a
// streaming call of the gateway API (Subscribe, ProduceStream) while limit
// of them are open, across all connections. Health and reflection streams
// are not counted. limit <= 0 disables it.
func LimitStreams(limit int, logger *slog.Logger) grpc.StreamServerInterceptor {
	slots := make(chan struct{}, max(limit, 0))
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if limit <= 0 || !strings.HasPrefix(info.FullMethod, "/gateway.v1.") {
			return handler(srv, ss)
		}
		select {
		case slots <- struct{}{}:
		default:
			return toStatus(logger, fmt.Errorf("%s: %w (server.max_streams is %d)", info.FullMethod, errTooManyStreams, limit)).Err()
		}
		defer func() { <-slots }()
		return handler(srv, ss)
	}
}
