// Command healthprobe asks a gateway for its gRPC health (grpc.health.v1)
// and exits 0 only when it is SERVING. It is the health check of the
// container image for runtimes without a native gRPC probe (Docker
// Compose's healthcheck; Kubernetes has its own `grpc:` probe).
//
// Usage:
//
//	healthprobe [--addr 127.0.0.1:7070 | --addr unix:///path/gateway.sock] [--service NAME] [--timeout 2s]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "healthprobe:", err)
		os.Exit(1)
	}
}

func run(argv []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7070", "gateway gRPC address: host:port or unix:///path")
	service := fs.String("service", "", "service to check (empty: the gateway as a whole)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return fmt.Errorf("--timeout: %v is not positive", *timeout)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--addr %s: %w", *addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		return fmt.Errorf("%s: %w", *addr, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s: %s", *addr, resp.GetStatus())
	}
	return nil
}
