// Command gateway runs the Kafka sidecar gateway: gRPC in front, one
// librdkafka producer behind.
//
// Usage:
//
//	gateway [--config FILE] [--check-config] [--KEY=VALUE ...]
//
// Every configuration key can be set in the YAML file, as an environment
// variable (GATEWAY_SERVER_LISTEN for server.listen) or as a flag
// (--server.listen=127.0.0.1:7070), in increasing precedence. With no
// configuration at all the gateway runs in embedded mode on 127.0.0.1:7070.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	// One C allocator arena for librdkafka's memory, set before any
	// thread starts: see the package.
	_ "github.com/kafkagate/gateway/internal/cmalloc"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/gateway"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

func main() {
	applyGCPercent(os.Environ())
	if err := run(os.Args[1:], os.Environ(), os.Stdout); err != nil {
		if errors.Is(err, errHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

var errHelp = errors.New("help shown")

// defaultGCPercent is the collector's GOGC unless the environment sets one.
// A sidecar's memory is reserved in every pod, so the gateway collects
// when its heap has grown by three quarters of what it kept rather than
// by all of it: consuming at the bench's rate, its peak RSS was 160 MiB
// at 100, 147 MiB at 75 and 135 MiB at 50, for 1.7, 1.6-1.8 and 1.9 µs
// of its CPU per record (make bench subsets run with each GOGC, one run
// each).
const defaultGCPercent = 75

// applyGCPercent sets the collector to defaultGCPercent unless environ sets
// GOGC (which the runtime has applied), and returns the percent in effect.
func applyGCPercent(environ []string) int {
	prev := debug.SetGCPercent(defaultGCPercent)
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOGC=") {
			debug.SetGCPercent(prev)
			return prev
		}
	}
	return defaultGCPercent
}

// args are the parsed command line.
type args struct {
	configPath  string
	checkConfig bool
	overrides   []config.Override
}

func run(argv, environ []string, stdout io.Writer) error {
	a, err := parseArgs(argv)
	if errors.Is(err, errHelp) {
		usage(stdout)
		return err
	}
	if err != nil {
		return err
	}
	if a.configPath == "" {
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, "GATEWAY_CONFIG="); ok {
				a.configPath = v
			}
		}
	}
	cfg, err := config.Load(a.configPath, environ, a.overrides)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if a.checkConfig {
		if f := cfg.Limits.File; f != "" {
			data, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("invalid configuration: limits.file: %w", err)
			}
			if _, err := ratelimit.ParseDocument(data); err != nil {
				return fmt.Errorf("invalid configuration: limits.file %s: %w", f, err)
			}
		}
		fmt.Fprintln(stdout, "configuration OK")
		return nil
	}

	logger := newLogger(cfg.Log)
	dedupe.RouteRedisLogs(logger.With("component", "redis"))
	g, err := gateway.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return g.Run(ctx)
}

// parseArgs reads --config FILE, --check-config, --help and any number of
// --KEY=VALUE (or --KEY VALUE) overrides.
func parseArgs(argv []string) (args, error) {
	var a args
	for i := 0; i < len(argv); i++ {
		arg := argv[i]
		name, ok := strings.CutPrefix(arg, "--")
		if !ok {
			name, ok = strings.CutPrefix(arg, "-")
		}
		if !ok || name == "" {
			return a, fmt.Errorf("unexpected argument %q (flags look like --server.listen=127.0.0.1:7070)", arg)
		}
		name, value, hasValue := strings.Cut(name, "=")
		switch name {
		case "h", "help":
			return a, errHelp
		case "check-config":
			a.checkConfig = true
			continue
		}
		if !hasValue {
			if i+1 >= len(argv) || strings.HasPrefix(argv[i+1], "-") {
				value = "true" // a bare boolean flag
			} else {
				i++
				value = argv[i]
			}
		}
		if name == "config" {
			a.configPath = value
			continue
		}
		a.overrides = append(a.overrides, config.Override{Key: name, Value: value})
	}
	return a, nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: gateway [--config FILE] [--check-config] [--KEY=VALUE ...]

  --config FILE    YAML configuration (also GATEWAY_CONFIG); unknown keys are errors
  --check-config   validate the configuration and exit
  --KEY=VALUE      set any key below; maps take --KEY.NAME=VALUE

Keys (environment variable, default):
`)
	for _, k := range config.Keys() {
		env := config.EnvName(k.Path)
		switch {
		case k.Map:
			env = "(flag or file only)"
		case k.FileOnly:
			env = "(file only)"
		}
		fmt.Fprintf(w, "  %-34s %-8s %-40s %s\n", k.Path, k.Type, env, k.Default)
	}
}

func newLogger(c config.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
