package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// grpc-echo-64 measures the machine's gRPC stack alone: a bare gRPC server
// (no interceptors, default options) whose unary Produce answers at once
// with a result shaped like the gateway's (partition, offset, timestamp, a
// 36-byte message ID), driven by the unary-64 client. The server runs as a
// subprocess of this binary (`gatewaybench echo-server`), so that its CPU
// is measured apart from the client's; it serves its CPU profile over
// HTTP, as a gateway does with metrics.pprof.

// echoServerArg is the first argument that makes this binary the echo
// server.
const echoServerArg = "echo-server"

// echoAddrs is the line the echo server prints on stdout once it serves.
type echoAddrs struct {
	GRPC  string `json:"grpc"`
	Pprof string `json:"pprof"`
}

// echoService answers Produce without doing anything else.
type echoService struct {
	gatewayv1.UnimplementedProducerServiceServer
	offset atomic.Int64
}

func (e *echoService) Produce(_ context.Context, req *gatewayv1.ProduceRequest) (*gatewayv1.ProduceResponse, error) {
	recs := req.GetRecords()
	results := make([]*gatewayv1.RecordResult, len(recs))
	now := timestamppb.New(time.Now().Truncate(time.Millisecond)) // a CreateTime, as the gateway reports
	for i := range recs {
		off := e.offset.Add(1)
		id := []byte("01890000-0000-7000-8000-000000000000")
		putHex(id[24:], uint64(off))
		results[i] = &gatewayv1.RecordResult{Partition: int32(off % 6), Offset: off, Timestamp: now, MessageId: string(id)}
	}
	return &gatewayv1.ProduceResponse{Results: results}, nil
}

// runEchoServer is the echo server process: it serves until SIGTERM or
// until its stdin closes (the bench is gone).
func runEchoServer() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "gatewaybench echo-server:", err)
		os.Exit(1)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	srv := grpc.NewServer()
	gatewayv1.RegisterProducerServiceServer(srv, &echoService{})
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go srv.Serve(gln)
	go http.Serve(hln, mux)
	line, _ := json.Marshal(echoAddrs{GRPC: gln.Addr().String(), Pprof: hln.Addr().String()})
	fmt.Println(string(line))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		bufio.NewReader(os.Stdin).ReadByte() // EOF when the bench exits
		stop()
	}()
	<-ctx.Done()
	srv.Stop()
}

// echoProc is the echo server subprocess.
type echoProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // closed to stop it
	addrs  echoAddrs
	conn   *grpc.ClientConn
	client gatewayv1.ProducerServiceClient
}

func (e *echoProc) pid() int { return e.cmd.Process.Pid }

// startEcho starts this binary as the echo server and connects to it the
// way the gateway scenarios connect to a gateway.
func startEcho(ctx context.Context) (*echoProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, echoServerArg)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start echo server: %w", err)
	}
	e := &echoProc{cmd: cmd, stdin: stdin}
	lines := make(chan []byte, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Bytes()
		}
		close(lines)
		for sc.Scan() {
		}
	}()
	select {
	case line, ok := <-lines:
		if !ok || json.Unmarshal(line, &e.addrs) != nil || e.addrs.GRPC == "" {
			e.stop()
			return nil, fmt.Errorf("echo server did not say where it serves (%q)", line)
		}
	case <-time.After(30 * time.Second):
		e.stop()
		return nil, errors.New("echo server did not start within 30s")
	case <-ctx.Done():
		e.stop()
		return nil, ctx.Err()
	}
	e.conn, err = dialGRPC(e.addrs.GRPC)
	if err != nil {
		e.stop()
		return nil, err
	}
	e.client = gatewayv1.NewProducerServiceClient(e.conn)
	fmt.Fprintf(os.Stderr, "   echo server pid %d serving on %s\n", cmd.Process.Pid, e.addrs.GRPC)
	return e, nil
}

// stop ends the echo server: closing its stdin makes it exit.
func (e *echoProc) stop() error {
	if e.conn != nil {
		e.conn.Close()
	}
	e.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- e.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-done
		return errors.New("echo server did not stop within 10s; killed")
	}
}

// grpcEcho runs grpc-echo-64: 64 callers of unary Produce against the echo
// server for opts.unaryDuration, after a 1 s warm-up, as unary-64 does
// against the gateway. Its rate is the ceiling unary-64 is compared with.
func (b *bench) grpcEcho(ctx context.Context) ([]Row, error) {
	const callers = 64
	e, err := startEcho(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := e.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "   echo server: %v\n", err)
		}
	}()
	// The topic unary-64 writes to, so that requests have the same size;
	// the echo server writes nothing.
	topic := fmt.Sprintf("gatewaybench.unary-64.%s", b.runID)
	recs := protoRecords(1)
	warm := runUnary(ctx, e.client, topic, recs, callers, time.Second)
	mark := b.markCPUOf(nil, e.pid())
	prof := b.startProfiling("grpc-echo-64", "bench client", profileSeconds(b.opts.unaryDuration), profileTarget{process: "echo server", own: "echo server code", addr: e.addrs.Pprof, pid: e.pid()})
	res := runUnary(ctx, e.client, topic, recs, callers, b.opts.unaryDuration)
	cpu := mark.since()
	profiles := prof.finish()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rate := float64(res.calls) / res.elapsed.Seconds()
	lat := summarize(res.latencies)
	b.echoRate = rate
	row := Row{
		Figure: "calls/s", Value: rate, Unit: "calls/s",
		Failures: res.failed + warm.failed,
		CPU:      cpu,
		Profiles: profiles,
		Note: fmt.Sprintf("bare gRPC server (default options, no interceptors) answering a one-record ProduceRequest with a one-result ProduceResponse at once; %d callers, the unary-64 client, %s calls; call p50 %s, p99 %s; the ceiling of unary gRPC on this machine",
			callers, thousands(res.calls), fmtMs(lat.p50), fmtMs(lat.p99)),
	}
	if row.Failures > 0 {
		row.Note += "; first failure: " + firstNonEmpty(warm.firstErr, res.firstErr)
		return []Row{row}, errFailures
	}
	return []Row{row}, nil
}
