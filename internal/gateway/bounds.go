package gateway

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
)

// Gateway-wide bounds on what clients can make the gateway hold, beyond the
// per-connection and per-call ones of serverOptions: connections, and bytes
// of request messages.

// connLimit counts the open connections of the API listeners.
type connLimit struct {
	max     int64
	open    atomic.Int64
	refused atomic.Int64
}

// limitListener closes, at once, connections accepted while max are open:
// the client sees the connection fail (UNAVAILABLE) and may retry later.
type limitListener struct {
	net.Listener
	lim *connLimit
}

func (l limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.lim.open.Add(1) > l.lim.max {
			l.lim.open.Add(-1)
			l.lim.refused.Add(1)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, lim: l.lim}, nil
	}
}

type countedConn struct {
	net.Conn
	lim  *connLimit
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.lim.open.Add(-1) })
	return c.Conn.Close()
}

// requestBudget bounds the bytes of request messages the gateway holds at
// once, across every connection (server.max_inflight_request_bytes).
//
// A request's size is known only once it has been read, so each call of the
// API reserves the largest request it may send (server.max_recv_bytes) when
// its headers arrive, before anything of its body is read: a call that
// finds the budget full is refused there, RESOURCE_EXHAUSTED, and its body
// never held. Once a unary or server-streaming call's request is decoded,
// its reservation shrinks to the request's size; a client-streaming call
// (ProduceStream) keeps its whole reservation, for the one message it may
// be sending at any time. The reservation is given back when the call ends.
type requestBudget struct {
	max, perCall int64
	used         atomic.Int64
	refused      atomic.Int64
}

type reservationKey struct{}

// reservation is one call's share of the budget.
type reservation struct {
	b    *requestBudget
	mu   sync.Mutex
	held int64
}

// resize sets the reservation to n bytes (never more than it holds).
func (r *reservation) resize(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n < r.held {
		r.b.used.Add(n - r.held)
		r.held = n
	}
}

func (r *reservation) release() { r.resize(0) }

// apiCall reports whether method belongs to the gateway's API (health and
// reflection calls carry tiny requests and are not counted).
func apiCall(method string) bool { return strings.HasPrefix(method, "/gateway.v1.") }

// tap reserves a call's share before its request is read.
func (b *requestBudget) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !apiCall(info.FullMethodName) {
		return ctx, nil
	}
	if b.used.Add(b.perCall) > b.max {
		b.used.Add(-b.perCall)
		b.refused.Add(1)
		return nil, status.Errorf(codes.ResourceExhausted,
			"the gateway holds server.max_inflight_request_bytes (%d) of requests already; retry later", b.max)
	}
	r := &reservation{b: b, held: b.perCall}
	// ctx is the call's own context, which gRPC cancels when the call
	// ends, however it ends (answered, refused before any handler runs,
	// an unknown method, the connection gone): the reservation goes back
	// then.
	context.AfterFunc(ctx, r.release)
	return context.WithValue(ctx, reservationKey{}, r), nil
}

func reservationOf(ctx context.Context) *reservation {
	r, _ := ctx.Value(reservationKey{}).(*reservation)
	return r
}

// unary shrinks a unary call's reservation to its decoded request.
func (b *requestBudget) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if r := reservationOf(ctx); r != nil {
		if m, ok := req.(proto.Message); ok {
			r.resize(int64(proto.Size(m)))
		}
	}
	return handler(ctx, req)
}

// stream shrinks a server-streaming call's reservation to its request, once
// read.
func (b *requestBudget) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	r := reservationOf(ss.Context())
	if r == nil || info.IsClientStream {
		return handler(srv, ss)
	}
	return handler(srv, shrinkingStream{ServerStream: ss, r: r})
}

type shrinkingStream struct {
	grpc.ServerStream
	r *reservation
}

func (s shrinkingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if pm, ok := m.(proto.Message); ok && err == nil {
		s.r.resize(int64(proto.Size(pm)))
	}
	return err
}

// healthMaxConnections bounds the connections of the health-only listener,
// which answers probes only.
const healthMaxConnections = 32
