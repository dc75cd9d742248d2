package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// commands is the command table. A command lives in its own file and is
// added here; a command with subcommands (topics list, topics describe)
// lists them in sub.
var commands = []*command{
	produceCmd,
	tailCmd,
	ackCmd,
	lagCmd,
	resetCmd,
	dlqCmd,
	topicsCmd,
	limitsCmd,
}

// runFunc runs a command with its positional arguments; its flags were
// bound by setup.
type runFunc func(ctx context.Context, e *env, args []string) error

// command is one (sub)command.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	help    string // more text for "gatewayctl help COMMAND"
	// setup binds the command's flags to fs and returns what runs it. Nil
	// for a command that only groups subcommands.
	setup func(fs *flag.FlagSet) runFunc
	sub   []*command

	path string // "topics describe", set by find
}

// find resolves args to a runnable command and the arguments after its
// name(s). When args stop at a command that only groups subcommands, it
// returns that command with an error.
func find(cmds []*command, args []string) (*command, []string, error) {
	var path []string
	var group *command
	for {
		if len(args) == 0 {
			return group, nil, fmt.Errorf("%s needs a subcommand", strings.Join(path, " "))
		}
		var c *command
		for _, cc := range cmds {
			if cc.name == args[0] {
				c = cc
			}
		}
		if c == nil {
			if len(path) == 0 {
				return nil, nil, fmt.Errorf("unknown command %q", args[0])
			}
			return group, nil, fmt.Errorf("unknown command %q for %s", args[0], strings.Join(path, " "))
		}
		path = append(path, c.name)
		c.path = strings.Join(path, " ")
		args = args[1:]
		if c.setup != nil {
			return c, args, nil
		}
		group, cmds = c, c.sub
	}
}

func (c *command) printSummary(w io.Writer, indent string) {
	if c.setup != nil {
		fmt.Fprintf(w, "%s%-16s %s\n", indent, c.name, c.summary)
	}
	for _, s := range c.sub {
		fmt.Fprintf(w, "%s%-16s %s\n", indent, c.name+" "+s.name, s.summary)
	}
}

func (c *command) printUsage(w io.Writer) {
	if c.setup == nil {
		fmt.Fprintf(w, "Usage: gatewayctl %s SUBCOMMAND\n\n", c.path)
		for _, s := range c.sub {
			fmt.Fprintf(w, "  %-16s %s\n", s.name, s.summary)
		}
		return
	}
	fmt.Fprintf(w, "Usage: gatewayctl %s [flags]", c.path)
	if c.args != "" {
		fmt.Fprint(w, " ", c.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	fs := flag.NewFlagSet(c.path, flag.ContinueOnError)
	c.setup(fs)
	fmt.Fprint(w, "\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, "\nGlobal flags: see gatewayctl --help.\n")
}

// stringList is a flag that may be repeated or given comma-separated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
