package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/cmalloc"
	"github.com/kafkagate/gateway/internal/ratelimit"
	"github.com/kafkagate/gateway/internal/testenv"
)

// binary is the gateway built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gateway")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gateway:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running gateway binary.
type process struct {
	cmd  *exec.Cmd
	addr string // gRPC TCP address, from the "gateway serving" log line
	done chan error
	logs *logTail
}

// logTail keeps the gateway's log lines for failure messages.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startBinary runs the gateway with JSON logs and the given flags, and waits
// for it to serve.
func startBinary(t *testing.T, args ...string) *process {
	t.Helper()
	args = append([]string{"--log.format=json", "--server.listen=127.0.0.1:0", "--metrics.listen=127.0.0.1:0"}, args...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "GATEWAY_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), logs: &logTail{}}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.add(line)
			var entry struct {
				Msg   string   `json:"msg"`
				Addrs []string `json:"addrs"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "gateway serving" && len(entry.Addrs) > 0 {
				addrCh <- entry.Addrs[0]
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	select {
	case p.addr = <-addrCh:
	case err := <-p.done:
		t.Fatalf("gateway exited before serving: %v\n%s", err, p.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("gateway did not serve within 30s\n%s", p.logs)
	}
	return p
}

// stop sends SIGTERM and returns the exit error.
func (p *process) stop(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway did not exit within 60s of SIGTERM\n%s", p.logs)
		return nil
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestEmbeddedModeServesProduceAndHealthWithNothingInstalled(t *testing.T) {
	t.Parallel()
	p := startBinary(t, "--embedded.kafka_addr=127.0.0.1:0", "--embedded.redis_addr=127.0.0.1:0")
	conn := dial(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", hc.GetStatus(), err)
	}
	// A topic nobody created: embedded mode creates it on first use.
	resp, err := gatewayv1.NewProducerServiceClient(conn).Produce(ctx, &gatewayv1.ProduceRequest{
		Topic:   "first-use",
		Records: []*gatewayv1.Record{{Key: []byte("k"), Value: []byte("hello")}, {Key: []byte("k"), Value: []byte("again")}},
	})
	if err != nil {
		t.Fatalf("Produce: %v\n%s", err, p.logs)
	}
	r := resp.GetResults()
	if r[0].GetError() != nil || r[1].GetError() != nil || r[1].GetOffset() != r[0].GetOffset()+1 || r[0].GetPartition() != r[1].GetPartition() {
		t.Fatalf("results = %v; want consecutive offsets in one partition", r)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs)
	}
}

func TestCheckConfigValidatesAndExits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("producer:\n  preset: latency\n"), 0o600)
	os.WriteFile(bad, []byte("producer:\n  properties:\n    acks: \"1\"\n"), 0o600)

	out, err := exec.Command(binary, "--config", good, "--check-config").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Errorf("valid config: %v, %s", err, out)
	}
	out, err = exec.Command(binary, "--config", bad, "--check-config").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "acks") {
		t.Errorf("idempotence with acks=1: exit %v, output %q; want exit 1 naming acks", err, out)
	}
}

// TestSIGTERMDuringProduceLoadKeepsEveryAcknowledgedRecord is the shutdown
// promise: whatever the gateway acknowledged to a client is in Kafka, and
// every call it could not complete got an error, never a silent drop.
func TestSIGTERMDuringProduceLoadKeepsEveryAcknowledgedRecord(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 4)
	p := startBinary(t, "--embedded.enabled=false", "--kafka.bootstrap_servers="+bootstrap)
	client := gatewayv1.NewProducerServiceClient(dial(t, p.addr))

	var (
		mu    sync.Mutex
		acked = map[string]*gatewayv1.RecordResult{}
		wg    sync.WaitGroup
	)
	ack := func(results []*gatewayv1.RecordResult) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.GetError() == nil {
				acked[r.GetMessageId()] = r
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Unary callers.
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				resp, err := client.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{
					{Key: fmt.Appendf(nil, "u%d", c), Value: fmt.Appendf(nil, "unary %d/%d", c, i)},
				}})
				if err != nil {
					return // refused or cut off by the shutdown: not acknowledged
				}
				ack(resp.GetResults())
			}
		})
	}
	// Streaming callers with many batches in flight.
	for c := range 2 {
		wg.Go(func() {
			stream, err := client.ProduceStream(ctx)
			if err != nil {
				return
			}
			go func() {
				for i := 0; ; i++ {
					recs := make([]*gatewayv1.Record, 20)
					for j := range recs {
						recs[j] = &gatewayv1.Record{Key: fmt.Appendf(nil, "s%d-%d", c, j), Value: fmt.Appendf(nil, "stream %d/%d/%d", c, i, j)}
					}
					if stream.Send(&gatewayv1.ProduceStreamRequest{RequestId: fmt.Sprint(i), Topic: topic, Records: recs}) != nil {
						return
					}
				}
			}()
			for {
				resp, err := stream.Recv()
				if err != nil {
					return
				}
				ack(resp.GetResults())
			}
		})
	}

	testenv.Eventually(t, 30*time.Second, "load to be acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 2000
	})
	if err := p.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.logs)
	}
	cancel()
	wg.Wait()

	inTopic := map[string]bool{}
	for _, m := range testenv.ReadTopic(t, bootstrap, topic) {
		id, _ := testenv.Header(m, "message-id")
		inTopic[id] = true
	}
	var missing int
	for id := range acked {
		if !inTopic[id] {
			missing++
		}
	}
	t.Logf("%d records acknowledged before and during shutdown, %d in the topic", len(acked), len(inTopic))
	if missing > 0 {
		t.Fatalf("%d acknowledged records are missing from the topic", missing)
	}
	if !strings.Contains(p.logs.String(), "producer closed") {
		t.Errorf("no producer flush in the shutdown logs:\n%s", p.logs)
	}
}

func TestDeployExampleConfigIsValid(t *testing.T) {
	t.Parallel()
	// The example's limits file is deploy/limits.yaml, mounted elsewhere.
	out, err := exec.Command(binary, "--config", "../../deploy/gateway.yaml", "--limits.file=../../deploy/limits.yaml", "--check-config").CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/gateway.yaml: %v\n%s", err, out)
	}
	data, err := os.ReadFile("../../deploy/limits.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ratelimit.ParseDocument(data); err != nil {
		t.Fatalf("deploy/limits.yaml: %v", err)
	}
}

// The gateway refuses to start when server.listen would serve the whole API
// in plaintext on a network address, naming the key that allows it on
// purpose; with that key it starts (and warns).
func TestAPlaintextAPIOnTheNetworkIsRefusedAtStart(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "--server.listen=0.0.0.0:0", "--check-config").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 ||
		!strings.Contains(string(out), "server.listen") || !strings.Contains(string(out), "server.insecure_plaintext_api_on_network") {
		t.Errorf("plaintext API on 0.0.0.0: exit %v, output %q; want exit 1 naming server.listen and the key that allows it", err, out)
	}
	out, err = exec.Command(binary, "--server.listen=0.0.0.0:0", "--server.insecure_plaintext_api_on_network=true", "--check-config").CombinedOutput()
	if err != nil {
		t.Errorf("with server.insecure_plaintext_api_on_network: %v, %s", err, out)
	}
}

// TestTheCollectorRunsAtTheGatewaysPercentUnlessGOGCIsSet: without GOGC
// the gateway collects at defaultGCPercent; with GOGC set, the runtime's
// reading of it stays.
func TestTheCollectorRunsAtTheGatewaysPercentUnlessGOGCIsSet(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	if got := applyGCPercent([]string{"HOME=/"}); got != defaultGCPercent {
		t.Fatalf("without GOGC: %d, want %d", got, defaultGCPercent)
	}
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Fatalf("without GOGC the collector runs at %d, want %d", now, defaultGCPercent)
	}
	debug.SetGCPercent(200) // as the runtime would have from GOGC=200
	if got := applyGCPercent([]string{"GOGC=200"}); got != 200 {
		t.Fatalf("with GOGC=200: %d, want 200", got)
	}
	if now := debug.SetGCPercent(100); now != 200 {
		t.Fatalf("with GOGC=200 the collector runs at %d, want 200", now)
	}
}

// The gateway's librdkafka memory comes from one C allocator arena unless
// MALLOC_ARENA_MAX says otherwise (package cmalloc; this test binary is
// the gateway's main package with its imports).
func TestTheGatewayAllocatesCMemoryFromOneArena(t *testing.T) {
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); set {
		t.Skip("MALLOC_ARENA_MAX is set: it decides")
	}
	if !cmalloc.OneArena() {
		t.Fatal("the gateway does not limit the C allocator to one arena")
	}
}
