package metrics

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// GRPC measures the gRPC server per method and code (the grpc_server_*
// families of go-grpc-middleware's Prometheus provider).
type GRPC struct{ m *grpcprom.ServerMetrics }

// RegisterGRPC registers the gRPC server metrics.
func RegisterGRPC(r *Registry) *GRPC {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(prometheus.ExponentialBuckets(0.0005, 4, 10)), // 0.5 ms … 131 s
	))
	r.MustRegister(m)
	return &GRPC{m: m}
}

// ServerOptions are the interceptors to install on the server. They chain
// with other grpc.ChainUnaryInterceptor and grpc.ChainStreamInterceptor
// options.
func (g *GRPC) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.m.StreamServerInterceptor()),
	}
}

// Init creates the series of every registered method with zero values, so
// that rates and alerts work from the first scrape. Call it after the
// services are registered.
func (g *GRPC) Init(s *grpc.Server) { g.m.InitializeMetrics(s) }
