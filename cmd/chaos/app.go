package main

// The workload app: a child process ("chaos app ...") that subscribes
// through a gateway on several streams, "processes" each delivery by
// appending it to its ledger file, and acks. It misbehaves on purpose:
// random delays, nacks and disconnects, and on command (one line on stdin)
// it cancels its streams, stops acking for a while, or kills itself
// (SIGKILL) between processing a batch and acking it.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// Ledger lines, one event each, fields separated by spaces:
//
//	P time msgID partition offset attempt   processed (the effect, before the ack)
//	S time msgID partition offset           an Ack is being sent (a kill now leaves its fate unknown)
//	A time msgID partition offset           the Ack returned OK
//	F time msgID partition offset           the Ack was refused (FAILED_PRECONDITION)
//	I time msgID partition offset           the Ack was refused as invalid (INVALID_ARGUMENT)
//	U time msgID partition offset           the Ack's fate is unknown (gateway gone)
//	N time msgID partition offset           nacked
//	R time assigned revoked                 an assignment frame
//
// time is Unix nanoseconds from the wall clock, shared by all processes of
// the machine.
const (
	evProcessed = 'P'
	evAckSent   = 'S'
	evAcked     = 'A'
	evRefused   = 'F'
	evInvalid   = 'I'
	evUnknown   = 'U'
	evNacked    = 'N'
	evAssign    = 'R'
)

type appConfig struct {
	addr        string
	group       string
	topic       string
	ordering    gatewayv1.Ordering
	streams     int
	maxInFlight int
	ackTimeout  time.Duration
	ledger      string
	seed        uint64
	pNack       float64
	pDelay      float64
	pDisconnect float64
}

func runApp(argv []string) error {
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	var c appConfig
	var ordering string
	fs.StringVar(&c.addr, "addr", "", "gateway gRPC address")
	fs.StringVar(&c.group, "group", "", "consumer group")
	fs.StringVar(&c.topic, "topic", "", "topic")
	fs.StringVar(&ordering, "ordering", "key", "key or none")
	fs.IntVar(&c.streams, "streams", 2, "Subscribe streams")
	fs.IntVar(&c.maxInFlight, "max-in-flight", 20, "max_in_flight per stream")
	fs.DurationVar(&c.ackTimeout, "ack-timeout", 20*time.Second, "ack_timeout")
	fs.StringVar(&c.ledger, "ledger", "", "ledger file (appended)")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed")
	fs.Float64Var(&c.pNack, "p-nack", 0.01, "probability to nack a delivery")
	fs.Float64Var(&c.pDelay, "p-delay", 0.05, "probability to delay a batch (up to 300 ms)")
	fs.Float64Var(&c.pDisconnect, "p-disconnect", 0.003, "probability to drop the stream before acking a batch")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	switch ordering {
	case "key":
		c.ordering = gatewayv1.Ordering_ORDERING_KEY
	case "none":
		c.ordering = gatewayv1.Ordering_ORDERING_NONE
	case "partition":
		c.ordering = gatewayv1.Ordering_ORDERING_PARTITION
	default:
		return fmt.Errorf("--ordering %q: want key, none or partition", ordering)
	}
	f, err := os.OpenFile(c.ledger, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	conn, err := dialGateway(c.addr)
	if err != nil {
		return err
	}
	a := &app{cfg: c, ledger: f, client: gatewayv1.NewConsumerServiceClient(conn)}
	a.sessionCtx, a.cancelSession = context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range c.streams {
		wg.Go(func() { a.stream(rand.New(rand.NewPCG(c.seed, uint64(i)))) })
	}
	a.commands(os.Stdin)
	return nil
}

// dialGateway connects with a short reconnect backoff, so an app notices a
// restarted gateway within a second.
func dialGateway(addr string) (*grpc.ClientConn, error) {
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 2 * time.Second}))
}

type app struct {
	cfg    appConfig
	client gatewayv1.ConsumerServiceClient

	ledgerMu sync.Mutex
	ledger   *os.File

	crash     atomic.Bool  // SIGKILL self after processing the next batch, before its ack
	lateAck   atomic.Bool  // drop the stream of the next batch, then ack the batch anyway
	slowUntil atomic.Int64 // hold acks until this Unix nanosecond time

	mu            sync.Mutex
	sessionCtx    context.Context // canceled by the "cancel" command
	cancelSession context.CancelFunc
}

// commands reads control lines until stdin closes (the harness is gone,
// or says quit), then exits the process.
func (a *app) commands(in *os.File) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "crash":
			a.crash.Store(true)
		case "late-ack":
			a.lateAck.Store(true)
		case "cancel":
			a.mu.Lock()
			a.cancelSession()
			a.sessionCtx, a.cancelSession = context.WithCancel(context.Background())
			a.mu.Unlock()
		case "slow":
			if len(f) == 2 {
				if d, err := time.ParseDuration(f[1]); err == nil {
					a.slowUntil.Store(time.Now().Add(d).UnixNano())
				}
			}
		case "quit":
			os.Exit(0)
		}
	}
	os.Exit(0)
}

func (a *app) session() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessionCtx
}

// write appends lines to the ledger in one write call, so a killed app
// leaves whole lines (at most the last one cut, which the checker skips).
func (a *app) write(b []byte) {
	a.ledgerMu.Lock()
	defer a.ledgerMu.Unlock()
	if _, err := a.ledger.Write(b); err != nil {
		fmt.Fprintln(os.Stderr, "ledger:", err)
		os.Exit(3)
	}
}

func appendEvent(b []byte, ev byte, d *gatewayv1.Delivery, now int64) []byte {
	b = append(b, ev, ' ')
	b = strconv.AppendInt(b, now, 10)
	b = append(b, ' ')
	b = append(b, d.GetMessageId()...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(d.GetPartition()), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, d.GetOffset(), 10)
	if ev == evProcessed {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(d.GetAttempt()), 10)
	}
	return append(b, '\n')
}

func (a *app) events(ev byte, ds []*gatewayv1.Delivery) {
	if len(ds) == 0 {
		return
	}
	now := time.Now().UnixNano()
	b := make([]byte, 0, 80*len(ds))
	for _, d := range ds {
		b = appendEvent(b, ev, d, now)
	}
	a.write(b)
}

// stream subscribes, handles frames until the stream fails or is dropped,
// and subscribes again, for ever.
func (a *app) stream(rng *rand.Rand) {
	req := &gatewayv1.SubscribeRequest{
		Group: a.cfg.group, Topics: []string{a.cfg.topic}, Ordering: a.cfg.ordering,
		MaxInFlight: int32(a.cfg.maxInFlight), AckTimeout: durationpb.New(a.cfg.ackTimeout),
		StartPosition: gatewayv1.StartPosition_START_POSITION_EARLIEST,
		// Random nacks and kills must not push records to the dead-letter topic.
		MaxAttempts: 1000,
	}
	for {
		ctx, cancel := context.WithCancel(a.session())
		err := a.subscribeOnce(ctx, rng, req)
		cancel()
		_ = err
		time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond)
	}
}

var errDropped = errors.New("stream dropped on purpose")

func (a *app) subscribeOnce(ctx context.Context, rng *rand.Rand, req *gatewayv1.SubscribeRequest) error {
	st, err := a.client.Subscribe(ctx, req)
	if err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		if as := resp.GetAssignment(); as != nil {
			a.write(fmt.Appendf(nil, "%c %d %d %d\n", evAssign, time.Now().UnixNano(), len(as.GetAssigned()), len(as.GetRevoked())))
			continue
		}
		var process, nack []*gatewayv1.Delivery
		for _, d := range resp.GetDeliveries().GetDeliveries() {
			if rng.Float64() < a.cfg.pNack {
				nack = append(nack, d)
			} else {
				process = append(process, d)
			}
		}
		if len(nack) > 0 {
			a.nack(ctx, nack)
		}
		if len(process) == 0 {
			continue
		}
		a.events(evProcessed, process)
		if a.crash.Load() {
			// Processed, not acked: the harness's "app killed between
			// processing and ack".
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		if rng.Float64() < a.cfg.pDelay {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		}
		if until := a.slowUntil.Load(); until > time.Now().UnixNano() {
			time.Sleep(time.Duration(until - time.Now().UnixNano()))
		}
		if a.lateAck.CompareAndSwap(true, false) {
			// The stream breaks while the batch is being processed; the
			// app finishes and acks it: an ack stays valid after its
			// stream closes, as long as the partition did not move.
			go func() {
				time.Sleep(300 * time.Millisecond)
				a.ack(process)
			}()
			return errDropped
		}
		if rng.Float64() < a.cfg.pDisconnect {
			return errDropped
		}
		if ctx.Err() != nil {
			// The app cancelled its streams ("cancel"): it abandons the
			// batch in hand, unacked. (Acking it anyway is app-late-ack.)
			return ctx.Err()
		}
		if ev := a.ack(process); ev == evUnknown || ev == evInvalid {
			// The gateway is gone (or restarted). Deliveries it sent before dying may
			// still sit in this stream's buffer; processing them now, after
			// their claims lapse and another gateway redelivers them, would
			// process them twice (the "lease lapsed" case of DESIGN.md). A
			// well-behaved app drops the stream and subscribes again.
			return errDropped
		}
	}
}

func (a *app) nack(ctx context.Context, ds []*gatewayv1.Delivery) {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.GetAckId()
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.client.Nack(cctx, &gatewayv1.NackRequest{Group: a.cfg.group, AckIds: ids,
		RetryAfter: durationpb.New(200 * time.Millisecond), Reason: "chaos"}); err == nil {
		a.events(evNacked, ds)
	}
}

// ack acks a processed batch, records the outcome and returns its event.
// UNAVAILABLE means the ack is applied but its dedupe done markers are not
// yet written: the API says to repeat it, which the app does for a while
// (less than the ack timeout); if the gateway is gone meanwhile the ack's
// fate stays unknown.
func (a *app) ack(ds []*gatewayv1.Delivery) byte {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.GetAckId()
	}
	a.events(evAckSent, ds)
	deadline := time.Now().Add(a.cfg.ackTimeout / 2)
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
		_, err := a.client.Ack(ctx, &gatewayv1.AckRequest{Group: a.cfg.group, AckIds: ids})
		cancel()
		code := status.Code(err)
		switch {
		case err == nil:
			a.events(evAcked, ds)
			return evAcked
		case code == codes.FailedPrecondition && try == 0:
			a.events(evRefused, ds)
			return evRefused
		case code == codes.FailedPrecondition:
			// An earlier try may have been applied before the gateway
			// lost the partition.
			a.events(evUnknown, ds)
			return evUnknown
		case code == codes.InvalidArgument:
			// The gateway issued these IDs: INVALID_ARGUMENT breaks its
			// contract. The checker counts these apart. After an earlier
			// try failed (the gateway died during the call), that try may
			// have been applied: the ack's fate is unknown.
			fmt.Fprintln(os.Stderr, "ack refused as invalid:", err)
			a.events(evInvalid, ds)
			if try > 0 {
				a.events(evUnknown, ds)
				return evUnknown
			}
			return evInvalid
		case time.Now().After(deadline):
			a.events(evUnknown, ds)
			return evUnknown
		}
		time.Sleep(500 * time.Millisecond)
	}
}
