package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// gatewayProc is a gateway running as a subprocess against the broker.
type gatewayProc struct {
	name     string // the preset, or another name for a gateway with extra flags
	cmd      *exec.Cmd
	addr     string
	pprof    string // the metrics listener, which serves /debug/pprof/
	logPath  string
	conn     *grpc.ClientConn
	client   gatewayv1.ProducerServiceClient
	consumer gatewayv1.ConsumerServiceClient

	usesRedis bool // dedupe on: Redis works for this gateway

	logDone   chan struct{} // closed when stderr is drained
	errorLogs atomic.Int64
	redisDown atomic.Int64 // "redis unavailable for dedupe" lines (a group's dedupe degraded)
	waitOnce  sync.Once
	waitErr   error
}

// gatewaySpec says how to start a gateway: its producer preset and any
// extra flags. name tells gateways apart in logs and messages; it defaults
// to the preset.
type gatewaySpec struct {
	name      string
	preset    string
	flags     []string
	usesRedis bool // dedupe on (its Redis's CPU is attributed to it)
}

func (s gatewaySpec) label() string {
	if s.name != "" {
		return s.name
	}
	return s.preset
}

// startGateway starts bin as spec says and waits for its "gateway serving"
// log line, which carries the bound address. Its JSON logs are copied to a
// file in logDir.
func startGateway(ctx context.Context, bin, bootstrap, logDir string, spec gatewaySpec) (*gatewayProc, error) {
	name := spec.label()
	logPath := filepath.Join(logDir, "gateway-"+name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--embedded.enabled=false",
		"--kafka.bootstrap_servers=" + bootstrap,
		"--server.listen=127.0.0.1:0",
		"--metrics.listen=127.0.0.1:0",
		"--metrics.pprof=true", // the bench profiles its gateways
		"--log.format=json",
		"--producer.preset=" + spec.preset,
	}
	cmd := exec.Command(bin, append(args, spec.flags...)...)
	cmd.Stdout = logFile
	// Should the bench die, the gateway gets SIGTERM instead of living on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	g := &gatewayProc{name: name, cmd: cmd, logPath: logPath, usesRedis: spec.usesRedis, logDone: make(chan struct{})}

	addrCh := make(chan serving, 1)
	go g.readLogs(stderr, logFile, addrCh)

	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case sv := <-addrCh:
		g.addr, g.pprof = sv.addr, sv.metrics
	case <-g.logDone:
		g.wait()
		return nil, fmt.Errorf("gateway (%s) exited before serving (%v); see %s", name, g.waitErr, logPath)
	case <-timer.C:
		g.kill()
		return nil, fmt.Errorf("gateway (%s) did not log \"gateway serving\" within 30s; see %s", name, logPath)
	case <-ctx.Done():
		g.kill()
		return nil, ctx.Err()
	}
	g.conn, err = dialGRPC(g.addr)
	if err != nil {
		g.kill()
		return nil, err
	}
	g.client = gatewayv1.NewProducerServiceClient(g.conn)
	g.consumer = gatewayv1.NewConsumerServiceClient(g.conn)
	fmt.Fprintf(os.Stderr, "   gateway (%s, %s preset) pid %d serving on %s, log %s\n", name, spec.preset, cmd.Process.Pid, g.addr, logPath)
	if len(spec.flags) > 0 {
		fmt.Fprintf(os.Stderr, "   gateway (%s) flags: %s\n", name, strings.Join(spec.flags, " "))
	}
	return g, nil
}

// dialGRPC connects the bench's client to a gRPC server on loopback: the
// same client setup for every gateway and for the echo server.
func dialGRPC(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Above gRPC's default; the gateway's frames stay within 1 MiB anyway.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
}

// logLine is the part of a gateway JSON log line the bench reads.
type logLine struct {
	Level   string            `json:"level"`
	Msg     string            `json:"msg"`
	Addrs   []json.RawMessage `json:"addrs"`
	Metrics string            `json:"metrics"`
}

// serving is what the "gateway serving" line says: the gRPC address and
// the metrics listener's.
type serving struct{ addr, metrics string }

// readLogs copies the gateway's stderr to out, sends the first TCP address
// of the "gateway serving" line on addrCh, and counts ERROR lines. It keeps
// reading until the process closes stderr, so the gateway never blocks on a
// full pipe.
func (g *gatewayProc) readLogs(stderr io.Reader, out *os.File, addrCh chan<- serving) {
	defer close(g.logDone)
	defer out.Close()
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := false
	for sc.Scan() {
		line := sc.Bytes()
		out.Write(line)
		out.Write([]byte{'\n'})
		var l logLine
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		if l.Level == "ERROR" {
			g.errorLogs.Add(1)
		}
		if strings.HasPrefix(l.Msg, "redis unavailable for dedupe") {
			g.redisDown.Add(1)
		}
		if !found && l.Msg == "gateway serving" && len(l.Addrs) > 0 {
			if addr, err := parseAddr(l.Addrs[0]); err == nil {
				found = true
				addrCh <- serving{addr: addr, metrics: l.Metrics}
			}
		}
	}
	io.Copy(out, stderr) // after an over-long line, keep draining
}

// parseAddr reads a logged net.Addr: either a string "host:port" or a
// *net.TCPAddr marshalled as {"IP": …, "Port": …}.
func parseAddr(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, nil
	}
	var tcp struct {
		IP   string
		Port int
	}
	if err := json.Unmarshal(raw, &tcp); err != nil || tcp.Port == 0 {
		return "", fmt.Errorf("unexpected address %s", raw)
	}
	return net.JoinHostPort(tcp.IP, strconv.Itoa(tcp.Port)), nil
}

func (g *gatewayProc) pid() int { return g.cmd.Process.Pid }

func (g *gatewayProc) errorLines() int64 { return g.errorLogs.Load() }

// wait reaps the process once; later calls return the same result.
func (g *gatewayProc) wait() error {
	g.waitOnce.Do(func() {
		<-g.logDone
		g.waitErr = g.cmd.Wait()
	})
	return g.waitErr
}

// stop sends SIGTERM and waits up to 60 s for a clean exit (the gateway
// flushes its producer first), then kills it.
func (g *gatewayProc) stop() error {
	if g.conn != nil {
		g.conn.Close()
	}
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- g.wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("exited with %v; see %s", err, g.logPath)
		}
		return nil
	case <-time.After(60 * time.Second):
		g.kill()
		return fmt.Errorf("did not stop within 60s of SIGTERM; killed; see %s", g.logPath)
	}
}

func (g *gatewayProc) kill() {
	g.cmd.Process.Kill()
	g.wait()
}

// procStatusKB reads a "Name:   123 kB" field of /proc/<pid>/status.
func procStatusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}
