package grpcapi

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// healthCheckWithLogs calls Health.Check twice over bufconn on a server
// logging at level, and returns the log.
func healthCheckWithLogs(t *testing.T, level slog.Level) string {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	srv := grpc.NewServer(RequestLogging(logger)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln := bufconn.Listen(1 << 20)
	go srv.Serve(ln)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx := context.Background()
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	_, _ = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	return logs.String()
}

func TestRequestsAreLoggedAtDebugOnly(t *testing.T) {
	t.Parallel()
	debug := healthCheckWithLogs(t, slog.LevelDebug)
	for _, want := range []string{
		`msg="grpc call" method=/grpc.health.v1.Health/Check code=OK`,
		`msg="grpc call" method=/grpc.health.v1.Health/Check code=NotFound`,
	} {
		if !strings.Contains(debug, want) {
			t.Errorf("debug log lacks %q:\n%s", want, debug)
		}
	}
	if info := healthCheckWithLogs(t, slog.LevelInfo); strings.Contains(info, "grpc call") {
		t.Errorf("requests logged at info level:\n%s", info)
	}
}
