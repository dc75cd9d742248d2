package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// globals are the flags every command takes.
type globals struct {
	addr           string
	output         string
	timeout        time.Duration
	identity       string
	identityHeader string
	progress       string
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (g *globals) register(fs *flag.FlagSet) {
	if g.addr == "" { // first registration: defaults
		g.addr = envOr("GATEWAYCTL_ADDR", "127.0.0.1:7070")
		g.output = "table"
		g.timeout = 30 * time.Second
		g.identity = os.Getenv("GATEWAYCTL_IDENTITY")
		g.identityHeader = envOr("GATEWAYCTL_IDENTITY_HEADER", "x-gateway-identity")
		g.progress = "auto"
	}
	fs.StringVar(&g.addr, "addr", g.addr, "gateway address: host:port, or unix:///path/to/socket (env GATEWAYCTL_ADDR)")
	fs.StringVar(&g.output, "output", g.output, "output format: table or json")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each call (tail and dlq replay run until done or interrupted)")
	fs.StringVar(&g.identity, "identity", g.identity, "caller identity to present, for a gateway with admin.allowed_identities (env GATEWAYCTL_IDENTITY)")
	fs.StringVar(&g.identityHeader, "identity-header", g.identityHeader, "metadata header that carries --identity: the gateway's identity.header (env GATEWAYCTL_IDENTITY_HEADER)")
	fs.StringVar(&g.progress, "progress", g.progress, "progress line on stderr for long operations: auto (when stderr is a terminal), on or off")
}

func (g *globals) check() error {
	switch {
	case g.output != "table" && g.output != "json":
		return fmt.Errorf("--output: %q is not table or json", g.output)
	case g.progress != "auto" && g.progress != "on" && g.progress != "off":
		return fmt.Errorf("--progress: %q is not auto, on or off", g.progress)
	case g.timeout <= 0:
		return fmt.Errorf("--timeout: must be positive")
	}
	return nil
}

// env is what commands work with: flags, streams, the connection.
type env struct {
	globals
	stdin          io.Reader
	stdout, stderr io.Writer
	progress       *progress

	connOnce sync.Once
	conn     *grpc.ClientConn
	connErr  error
}

func newEnv(stdin io.Reader, stdout, stderr io.Writer) *env {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	e.progress = &progress{e: e}
	return e
}

func (e *env) close() {
	if e.conn != nil {
		e.conn.Close()
	}
}

func (e *env) dial() (*grpc.ClientConn, error) {
	e.connOnce.Do(func() {
		e.conn, e.connErr = grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if e.connErr != nil {
			e.connErr = fmt.Errorf("--addr %q: %w", e.addr, e.connErr)
		}
	})
	return e.conn, e.connErr
}

func (e *env) admin() (gatewayv1.AdminServiceClient, error) {
	conn, err := e.dial()
	if err != nil {
		return nil, err
	}
	return gatewayv1.NewAdminServiceClient(conn), nil
}

func (e *env) producer() (gatewayv1.ProducerServiceClient, error) {
	conn, err := e.dial()
	if err != nil {
		return nil, err
	}
	return gatewayv1.NewProducerServiceClient(conn), nil
}

func (e *env) consumer() (gatewayv1.ConsumerServiceClient, error) {
	conn, err := e.dial()
	if err != nil {
		return nil, err
	}
	return gatewayv1.NewConsumerServiceClient(conn), nil
}

// callCtx is the context of one call: the identity header and, when
// bounded, the --timeout deadline.
func (e *env) callCtx(ctx context.Context, bounded bool) (context.Context, context.CancelFunc) {
	if e.identity != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, e.identityHeader, e.identity)
	}
	if bounded {
		return context.WithTimeout(ctx, e.timeout)
	}
	return context.WithCancel(ctx)
}

func (e *env) json() bool { return e.output == "json" }

// printProto prints m as indented JSON with the proto field names, every
// field present.
func (e *env) printProto(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = e.stdout.Write(buf.Bytes())
	return err
}

// printJSONLine prints v as one line of JSON.
func (e *env) printJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// table writes aligned columns to stdout; call flush at the end.
type table struct{ tw *tabwriter.Writer }

func (e *env) table(headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)}
	if len(headers) > 0 {
		t.row(anySlice(headers)...)
	}
	return t
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprint(t.tw, "\n")
}

func (t *table) flush() { t.tw.Flush() }

// progress is the one-line progress report of long operations on stderr.
type progress struct {
	e       *env
	last    time.Time
	shown   bool
	enabled *bool
}

func (p *progress) on() bool {
	if p.enabled == nil {
		on := p.e.globals.progress == "on"
		if p.e.globals.progress == "auto" {
			if f, ok := p.e.stderr.(*os.File); ok {
				if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
					on = true
				}
			}
		}
		p.enabled = &on
	}
	return *p.enabled
}

// update shows msg, at most every 100 ms unless force.
func (p *progress) update(force bool, format string, args ...any) {
	if !p.on() || !force && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.shown = true
	fmt.Fprintf(p.e.stderr, "\r\033[K"+format, args...)
}

// done ends the progress line, keeping its last text.
func (p *progress) done() {
	if p.shown {
		fmt.Fprintln(p.e.stderr)
		p.shown = false
	}
}

// clear removes the progress line.
func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.e.stderr, "\r\033[K")
		p.shown = false
	}
}

// describeError renders an error for the terminal: a gRPC status as
// CODE: message, with the fields of a BadRequest detail.
func describeError(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := codeName(st.Code()) + ": " + st.Message()
	if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "connection refused") {
		msg += " (is the gateway running at --addr?)"
	}
	return msg
}

// codeName is the canonical name of a gRPC code: NOT_FOUND for NotFound.
func codeName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// statusJSON is an error in JSON output.
type statusJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func toStatusJSON(err error) *statusJSON {
	st, ok := status.FromError(err)
	if !ok {
		return &statusJSON{Code: codeName(codes.Unknown), Message: err.Error()}
	}
	return &statusJSON{Code: codeName(st.Code()), Message: st.Message()}
}

var errPartial = errors.New("some records failed")
