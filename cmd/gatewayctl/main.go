// Command gatewayctl operates a Kafka sidecar gateway over its gRPC API:
// write records, tail a group, acknowledge, show lag, reset offsets, replay
// dead letters, inspect topics.
//
// Usage:
//
//	gatewayctl [global flags] COMMAND [SUBCOMMAND] [flags] [args]
//
// Output is a human-readable table; --output json prints JSON for scripts.
// Global flags may also follow the command. Exit status: 0 success, 1 the
// command failed, 2 bad usage, 130 interrupted (tail ends with 0).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
	// exitInterrupted follows the shell's 128 + SIGINT.
	exitInterrupted = 130
)

// errUsage marks errors of the command line (exit status 2).
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// run executes one command line and returns the exit status.
func run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := newEnv(stdin, stdout, stderr)
	defer e.close()
	root := flag.NewFlagSet("gatewayctl", flag.ContinueOnError)
	root.SetOutput(io.Discard)
	e.globals.register(root)
	if err := root.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "gatewayctl: %v\n\n", err)
		printUsage(stderr)
		return exitUsage
	}
	args := root.Args()
	if len(args) == 0 || args[0] == "help" {
		if len(args) > 1 {
			if c, _, _ := find(commands, args[1:]); c != nil {
				c.printUsage(stdout)
				return exitOK
			}
		}
		printUsage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, rest, err := find(commands, args)
	if err != nil {
		fmt.Fprintf(stderr, "gatewayctl: %v\n\n", err)
		if c != nil {
			c.printUsage(stderr)
		} else {
			printUsage(stderr)
		}
		return exitUsage
	}
	fs := flag.NewFlagSet("gatewayctl "+c.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runCmd := c.setup(fs)
	e.globals.register(fs)
	positional, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.printUsage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "gatewayctl %s: %v\n", c.path, err)
		c.printUsage(stderr)
		return exitUsage
	}
	if err := e.globals.check(); err != nil {
		fmt.Fprintf(stderr, "gatewayctl: %v\n", err)
		return exitUsage
	}
	if err := runCmd(ctx, e, positional); err != nil {
		e.progress.clear()
		if errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "gatewayctl %s: %s\n", c.path, strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
			c.printUsage(stderr)
			return exitUsage
		}
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "gatewayctl %s: interrupted\n", c.path)
			return exitInterrupted
		}
		fmt.Fprintf(stderr, "gatewayctl %s: %s\n", c.path, describeError(err))
		return exitFail
	}
	return exitOK
}

// parseInterspersed parses flags wherever they appear among the positional
// arguments ("topics describe orders --output json"), and returns the
// positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: gatewayctl [global flags] COMMAND [flags] [args]

Operates a Kafka sidecar gateway over its gRPC API.

Commands:
`)
	for _, c := range commands {
		c.printSummary(w, "  ")
	}
	fmt.Fprint(w, `
Global flags (also accepted after the command):
`)
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var g globals
	g.register(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, `
Run "gatewayctl help COMMAND" for a command's flags.
`)
}
