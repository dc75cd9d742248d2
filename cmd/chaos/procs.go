package main

// The processes the harness runs and kills: gateways (the real binary) and
// apps (this binary, "chaos app"), plus the service scripts that start,
// stop and kill the real broker(s) and Redis.

import (
	"context"
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
	"syscall"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// gatewayProc is one gateway, restartable on the same address.
type gatewayProc struct {
	name string
	bin  string
	addr string
	args []string
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

func (g *gatewayProc) running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return false
	}
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// start runs the gateway and waits until its health check says SERVING.
func (g *gatewayProc) start(ctx context.Context) error {
	g.mu.Lock()
	g.runs++
	logPath := filepath.Join(g.dir, fmt.Sprintf("gateway-%s-%d.log", g.name, g.runs))
	logf, err := os.Create(logPath)
	if err != nil {
		g.mu.Unlock()
		return err
	}
	args := append([]string{"--log.format=json", "--server.listen=" + g.addr, "--metrics.listen=127.0.0.1:0"}, g.args...)
	cmd := exec.Command(g.bin, args...)
	cmd.Env = append(os.Environ(), "GATEWAY_CONFIG=")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		g.mu.Unlock()
		return fmt.Errorf("start gateway %s: %w", g.name, err)
	}
	done := make(chan struct{})
	g.cmd, g.done = cmd, done
	g.mu.Unlock()
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()

	conn, err := dialGateway(g.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("gateway %s exited before serving (log %s)", g.name, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %s not serving after 60s (log %s)", g.name, logPath)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (g *gatewayProc) kill() { g.signal(syscall.SIGKILL, 0) }

// stop sends SIGTERM and waits for the exit, escalating to SIGKILL after
// timeout.
func (g *gatewayProc) stop(timeout time.Duration) { g.signal(syscall.SIGTERM, timeout) }

func (g *gatewayProc) signal(sig syscall.Signal, timeout time.Duration) {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if timeout > 0 {
		select {
		case <-done:
			return
		case <-time.After(timeout):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// appProc is one app, supervised: whenever it dies (killed by a fault or
// by itself) it is started again, until the harness stops it.
type appProc struct {
	name    string
	bin     string
	args    []string
	dir     string
	stopped chan struct{}

	mu    sync.Mutex
	cmd   *exec.Cmd
	stdin io.WriteCloser
	runs  int
	died  chan struct{} // closed when the current run exits
}

func (a *appProc) supervise(wg *sync.WaitGroup) {
	wg.Go(func() {
		for {
			if err := a.startOnce(); err != nil {
				fmt.Fprintf(os.Stderr, "chaos: app %s: %v\n", a.name, err)
			}
			a.mu.Lock()
			died := a.died
			a.mu.Unlock()
			select {
			case <-died:
			case <-a.stopped:
				a.mu.Lock()
				cmd := a.cmd
				a.mu.Unlock()
				if cmd != nil {
					_ = cmd.Process.Kill()
				}
				<-died
				return
			}
			select {
			case <-a.stopped:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
}

func (a *appProc) startOnce() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runs++
	died := make(chan struct{})
	a.died = died
	ledger := filepath.Join(a.dir, fmt.Sprintf("ledger-%s-%d.log", a.name, a.runs))
	logf, err := os.Create(filepath.Join(a.dir, fmt.Sprintf("app-%s-%d.log", a.name, a.runs)))
	if err != nil {
		close(died)
		return err
	}
	cmd := exec.Command(a.bin, append([]string{"app", "--ledger", ledger}, a.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		close(died)
		return err
	}
	if err := cmd.Start(); err != nil {
		close(died)
		return err
	}
	a.cmd, a.stdin = cmd, stdin
	go func() { _ = cmd.Wait(); logf.Close(); close(died) }()
	return nil
}

// command sends one control line to the running app.
func (a *appProc) command(line string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stdin == nil {
		return errors.New("not running")
	}
	_, err := io.WriteString(a.stdin, line+"\n")
	return err
}

// kill SIGKILLs the running app and waits for it to die; the supervisor
// restarts it.
func (a *appProc) kill() {
	a.mu.Lock()
	cmd, died := a.cmd, a.died
	a.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-died
	}
}

// waitDeath waits for the current run to end, at most timeout.
func (a *appProc) waitDeath(timeout time.Duration) bool {
	a.mu.Lock()
	died := a.died
	a.mu.Unlock()
	select {
	case <-died:
		return true
	case <-time.After(timeout):
		return false
	}
}

// services runs the service script (scripts/services.sh or
// scripts/cluster.sh) with the harness's environment.
type services struct {
	script string
}

func (s services) run(args ...string) error {
	if args[0] != "start" {
		return s.runOnce(args...)
	}
	// A restart can lose its port: while the port is closed, a client's
	// connection attempt to it may take it as its own ephemeral port (a
	// TCP self-connect) when the port lies inside the local port range,
	// and the socket then lingers in TIME_WAIT for a minute. Keep trying
	// for two minutes.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := s.runOnce(args...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		fmt.Fprintf(os.Stderr, "chaos: %s %s failed, trying again: %v\n", filepath.Base(s.script), strings.Join(args, " "), firstLine(err))
		time.Sleep(3 * time.Second)
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func (s services) runOnce(args ...string) error {
	cmd := exec.Command(s.script, args...)
	if os.Getenv("REDIS_PERSIST") == "" {
		// Dedupe's done markers must survive the redis-kill fault: a
		// Redis the harness restarts keeps an append-only file, as
		// scripts/chaos.sh starts it (services.sh alone starts Redis
		// in memory, and would lose every marker at the next kill).
		cmd.Env = append(os.Environ(), "REDIS_PERSIST=1")
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(s.script), strings.Join(args, " "), err, out.String())
	}
	return nil
}

// reservePorts binds (without listening) a socket to each loopback port,
// with SO_REUSEADDR, until release is called. While a service is down its
// clients keep connecting to its port; when the port lies inside the local
// port range, the kernel may hand a client that very port as its source
// port (a TCP self-connect), and the restarted service cannot bind. A port
// bound this way is never handed out as a source port, connections to it
// are refused as if nothing were there, and the service (which binds with
// SO_REUSEADDR too) can still bind and listen.
func reservePorts(ports ...int) (release func()) {
	var fds []int
	for _, p := range ports {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) != nil ||
			syscall.Bind(fd, &syscall.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}) != nil {
			syscall.Close(fd)
			fmt.Fprintf(os.Stderr, "chaos: could not reserve port %d while its service is down\n", p)
			continue
		}
		fds = append(fds, fd)
	}
	return func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}

// portOf returns the port of a host:port address, or 0.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
