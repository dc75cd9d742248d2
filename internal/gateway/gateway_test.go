package gateway_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/gateway"
	"github.com/kafkagate/gateway/internal/testenv"
)

// harness is one in-process gateway and a client connected to it.
type harness struct {
	gw       *gateway.Gateway
	conn     *grpc.ClientConn
	producer gatewayv1.ProducerServiceClient
	health   healthpb.HealthClient
	stop     func() error // shuts the gateway down and returns Run's error
}

// startGateway runs a gateway against the real broker (or, with
// cfg.Embedded.Enabled left on by mutate, in embedded mode) and stops it when
// the test ends.
func startGateway(t testing.TB, mutate func(*config.Config)) *harness {
	t.Helper()
	cfg := config.Default()
	cfg.Embedded.Enabled = false
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Producer.FlushTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	if !cfg.Embedded.Enabled && cfg.Kafka.BootstrapServers == "" {
		cfg.Kafka.BootstrapServers = testenv.Kafka(t)
	}
	if cfg.Embedded.Enabled {
		cfg.Embedded.KafkaAddr, cfg.Embedded.RedisAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	gw, err := gateway.New(cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()

	addr := gw.Addrs()[0]
	target := addr.String()
	if addr.Network() == "unix" {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		gw:       gw,
		conn:     conn,
		producer: gatewayv1.NewProducerServiceClient(conn),
		health:   healthpb.NewHealthClient(conn),
	}
	var stopped bool
	var runErr error
	h.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		conn.Close()
		if err := h.stop(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("gateway Run: %v", err)
		}
	})
	return h
}

// requireHealthy asserts that the gateway reports SERVING and still writes
// records: what every bad-input test checks afterwards.
func (h *harness) requireHealthy(t *testing.T, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: gatewayv1.ProducerService_ServiceDesc.ServiceName})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", hc.GetStatus(), err)
	}
	resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("still healthy")}}})
	if err != nil {
		t.Fatalf("produce after the bad input: %v", err)
	}
	if e := resp.GetResults()[0].GetError(); e != nil {
		t.Fatalf("produce after the bad input: record error %v", e)
	}
}

func requireCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), want)
	}
	return st
}

func TestUnixSocketServesWithTheConfiguredMode(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/gateway.sock"
	h := startGateway(t, func(c *config.Config) {
		c.Server.Listen = ""
		c.Server.UnixSocket = path
		c.Server.UnixSocketMode = "0600"
	})
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	h.requireHealthy(t, topic)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("socket mode = %o, want 600", mode)
	}
}

// TestUnixSocketReplacesOnlyAStaleSocket pins what the gateway may delete
// at server.unix_socket: it used to remove whatever file was there. It
// removes a socket nobody listens on (left by a killed gateway) and
// serves; it refuses to start, naming the key and leaving the file alone,
// when the path is another kind of file or a socket a process listens on.
func TestUnixSocketReplacesOnlyAStaleSocket(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) (check func(t *testing.T))
		refused string // "" : the gateway starts and serves there
	}{
		{"stale socket", func(t *testing.T, path string) func(*testing.T) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close() // the file stays, nobody listens: a killed gateway's
			return nil
		}, ""},
		{"regular file", func(t *testing.T, path string) func(*testing.T) {
			if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			return func(t *testing.T) {
				if data, err := os.ReadFile(path); err != nil || string(data) != "precious" {
					t.Errorf("the file at the path: %q, %v; want it untouched", data, err)
				}
			}
		}, "not a socket"},
		{"socket in use", func(t *testing.T, path string) func(*testing.T) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			return func(t *testing.T) {
				c, err := net.Dial("unix", path)
				if err != nil {
					t.Errorf("the other process's socket no longer answers: %v", err)
					return
				}
				c.Close()
			}
		}, "in use"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := t.TempDir() + "/gateway.sock"
			check := tc.prepare(t, path)
			if tc.refused == "" {
				h := startGateway(t, func(c *config.Config) {
					c.Server.Listen = ""
					c.Server.UnixSocket = path
				})
				h.requireHealthy(t, testenv.CreateTopic(t, bootstrap, 1))
				return
			}
			cfg := config.Default()
			cfg.Embedded.Enabled = false
			cfg.Server.Listen, cfg.Metrics.Listen = "", "127.0.0.1:0"
			cfg.Server.UnixSocket = path
			cfg.Kafka.BootstrapServers = bootstrap
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			gw, err := gateway.New(cfg, testenv.Logger(t))
			if err == nil {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_ = gw.Run(ctx)
				t.Errorf("the gateway started on %s", tc.name)
			} else if !strings.Contains(err.Error(), "server.unix_socket") || !strings.Contains(err.Error(), tc.refused) {
				t.Errorf("start-up error %q, want one naming server.unix_socket and saying %q", err, tc.refused)
			}
			check(t)
		})
	}
}
