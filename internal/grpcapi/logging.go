package grpcapi

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// RequestLogging returns server options that log every call at debug level:
// one line per unary call when it ends, and for streams one line when they
// start and one when they end. Lines carry the method, the status code, the
// duration, the peer and, where the request has them, its topic or group
// and how many records or ack IDs it named; never keys, values or IDs.
// When debug is off for logger, the interceptors cost one check per call.
func RequestLogging(logger *slog.Logger) []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !logger.Enabled(ctx, slog.LevelDebug) {
			return handler(ctx, req)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		attrs := append(callAttrs(ctx, info.FullMethod, start, err), requestAttrs(req)...)
		logger.LogAttrs(ctx, slog.LevelDebug, "grpc call", attrs...)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		if !logger.Enabled(ctx, slog.LevelDebug) {
			return handler(srv, ss)
		}
		start := time.Now()
		logger.LogAttrs(ctx, slog.LevelDebug, "grpc stream started", slog.String("method", info.FullMethod), peerAttr(ctx))
		err := handler(srv, ss)
		logger.LogAttrs(ctx, slog.LevelDebug, "grpc stream ended", callAttrs(ctx, info.FullMethod, start, err)...)
		return err
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

func callAttrs(ctx context.Context, method string, start time.Time, err error) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", status.Code(err).String()),
		slog.Duration("duration", time.Since(start)),
		peerAttr(ctx),
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", status.Convert(err).Message()))
	}
	return attrs
}

func peerAttr(ctx context.Context) slog.Attr {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return slog.String("peer", p.Addr.String())
	}
	return slog.String("peer", "")
}

// requestAttrs describes a request by its bounded parts.
func requestAttrs(req any) []slog.Attr {
	var attrs []slog.Attr
	if r, ok := req.(interface{ GetTopic() string }); ok {
		attrs = append(attrs, slog.String("topic", r.GetTopic()))
	}
	if r, ok := req.(interface{ GetGroup() string }); ok {
		attrs = append(attrs, slog.String("group", r.GetGroup()))
	}
	if r, ok := req.(interface{ GetRecords() []*gatewayv1.Record }); ok {
		attrs = append(attrs, slog.Int("records", len(r.GetRecords())))
	}
	if r, ok := req.(interface{ GetAckIds() []string }); ok {
		attrs = append(attrs, slog.Int("ack_ids", len(r.GetAckIds())))
	}
	return attrs
}
