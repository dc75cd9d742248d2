package gateway_test

// The readiness probes against real services that the test kills and
// starts again. The services are the test's own (a broker run by
// scripts/services.sh on free ports with a run directory of its own, and a
// redis-server process), never the shared ones, so the test can run in
// parallel with every other.

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// privateKafka is a single-node broker owned by one test.
type privateKafka struct {
	addr string
	env  []string
}

// startPrivateKafka starts a broker with scripts/services.sh on free ports
// and a run directory of the test's own, reusing the Kafka jars `make test`
// installed; it is stopped when the test ends.
func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	testenv.Kafka(t) // the harness installed Kafka
	port := freePort(t)
	k := &privateKafka{
		addr: "127.0.0.1:" + port,
		env: append(os.Environ(),
			"KAFKA_PORT="+port,
			"KAFKA_CONTROLLER_PORT="+freePort(t),
			"REDIS_PORT="+freePort(t), // never started; keeps the shared Redis out of reach
			"SERVICES_RUN_DIR="+t.TempDir(),
			"KAFKA_HEAP_OPTS=-Xms128m -Xmx512m",
		),
	}
	k.services(t, "start", "kafka")
	t.Cleanup(func() { k.services(t, "stop", "kafka") })
	return k
}

func (k *privateKafka) services(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("../../scripts/services.sh", args...)
	cmd.Env = k.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("services.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// probe GETs path from the gateway's metrics listener.
func probe(t *testing.T, h *harness, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + h.gw.MetricsAddr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// grpcHealth returns the gRPC health of each service ("" is the overall one).
func grpcHealth(t *testing.T, h *harness) map[string]healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]healthpb.HealthCheckResponse_ServingStatus{}
	for _, s := range []string{"", gatewayv1.ProducerService_ServiceDesc.ServiceName, gatewayv1.ConsumerService_ServiceDesc.ServiceName} {
		resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: s})
		if err != nil {
			t.Fatalf("health %q: %v", s, err)
		}
		out[s] = resp.GetStatus()
	}
	return out
}

// awaitReadiness waits until /readyz answers code with a body containing
// text, then checks /healthz and the gRPC health of every service.
func awaitReadiness(t *testing.T, h *harness, what string, code int, text string, wantHealth map[string]healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, body := probe(t, h, "/readyz")
		if got == code && strings.Contains(body, text) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /readyz = %d %q, want %d with %q", what, got, body, code, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, body := probe(t, h, "/healthz"); got != http.StatusOK {
		t.Errorf("%s: /healthz = %d %q, want 200: the process is alive", what, got, body)
	}
	// gRPC health follows the same checks on the next health tick.
	var health map[string]healthpb.HealthCheckResponse_ServingStatus
	for range 50 {
		health = grpcHealth(t, h)
		if maps.Equal(health, wantHealth) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s: gRPC health %v, want %v", what, health, wantHealth)
}

// TestReadinessFollowsKafkaAndRedis kills Redis and then Kafka under a
// gateway with dedupe on, and starts them again: /readyz and the gRPC
// health of the services it concerns go down and come back each time,
// while /healthz stays up.
func TestReadinessFollowsKafkaAndRedis(t *testing.T) {
	t.Parallel()
	rs := startRedisServer(t)
	k := startPrivateKafka(t)
	h := dedupeGateway(t, rs.addr, func(c *config.Config) {
		c.Kafka.BootstrapServers = k.addr
	})
	const (
		up   = healthpb.HealthCheckResponse_SERVING
		down = healthpb.HealthCheckResponse_NOT_SERVING
	)
	producer, consumer := gatewayv1.ProducerService_ServiceDesc.ServiceName, gatewayv1.ConsumerService_ServiceDesc.ServiceName
	allUp := map[string]healthpb.HealthCheckResponse_ServingStatus{"": up, producer: up, consumer: up}

	awaitReadiness(t, h, "at start", http.StatusOK, "ready", allUp)

	rs.kill(t)
	awaitReadiness(t, h, "redis killed", http.StatusServiceUnavailable, "redis:",
		map[string]healthpb.HealthCheckResponse_ServingStatus{"": down, producer: up, consumer: down})
	rs.start(t)
	awaitReadiness(t, h, "redis back", http.StatusOK, "ready", allUp)

	k.services(t, "kill", "kafka")
	awaitReadiness(t, h, "kafka killed", http.StatusServiceUnavailable, "kafka:",
		map[string]healthpb.HealthCheckResponse_ServingStatus{"": down, producer: down, consumer: down})
	k.services(t, "start", "kafka")
	awaitReadiness(t, h, "kafka back", http.StatusOK, "ready", allUp)

	fams := scrape(t, h)
	for _, check := range []string{"kafka", "redis"} {
		if v, _ := sample(fams, "gateway_readiness_check_up", map[string]string{"check": check}); v != 1 {
			t.Errorf("gateway_readiness_check_up{check=%q} = %v after recovery, want 1", check, v)
		}
	}
	// And it works again.
	topic := testenv.CreateTopic(t, k.addr, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("after")}}})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatalf("produce after recovery: %v %v", err, resp.GetResults())
	}
}
