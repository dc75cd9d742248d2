package main

// The workload app: a child process ("chaos app ...") that subscribes
// through a gateway on several streams, "processes" each delivery by
// appending it to its ledger file, and acks. The effect of a delivery is
// committed only by an OK ack; a refused ack rolls it back. It behaves as
// an app should where the gateway's contract asks it to: it does not start
// a delivery whose ack_deadline is too close, dead-letters poison records,
// and drops a stream (and the deliveries buffered in it) whose gateway is
// gone. It misbehaves on purpose elsewhere: random delays, nacks and
// disconnects, and on command (one line on stdin) it cancels its streams,
// holds its acks for a while, takes longer than the ack timeout over one
// batch, acks a batch after its stream broke, or kills itself (SIGKILL)
// between processing a batch and acking it.

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

type appConfig struct {
	addr        string
	group       string
	topic       string
	ordering    gatewayv1.Ordering
	streams     int
	maxInFlight int
	ackTimeout  time.Duration
	margin      time.Duration
	ledger      string
	seed        uint64
	pNack       float64
	pDelay      float64
	pDisconnect float64
	api         string // subscribe (Subscribe, Ack, Nack) or consume (Consume streams)
}

func runApp(argv []string) error {
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	var c appConfig
	var ordering string
	fs.StringVar(&c.addr, "addr", "", "gateway gRPC address")
	fs.StringVar(&c.group, "group", "", "consumer group")
	fs.StringVar(&c.topic, "topic", "", "topic")
	fs.StringVar(&ordering, "ordering", "key", "key, none or partition")
	fs.IntVar(&c.streams, "streams", 2, "Subscribe streams")
	fs.IntVar(&c.maxInFlight, "max-in-flight", 20, "max_in_flight per stream")
	fs.DurationVar(&c.ackTimeout, "ack-timeout", 20*time.Second, "ack_timeout")
	fs.DurationVar(&c.margin, "margin", time.Second, "a delivery whose ack_deadline is closer than this is not processed")
	fs.StringVar(&c.ledger, "ledger", "", "ledger file (appended)")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed")
	fs.Float64Var(&c.pNack, "p-nack", 0.01, "probability to nack a delivery")
	fs.Float64Var(&c.pDelay, "p-delay", 0.05, "probability to delay a batch (up to 300 ms)")
	fs.Float64Var(&c.pDisconnect, "p-disconnect", 0.003, "probability to drop the stream before acking a batch")
	fs.StringVar(&c.api, "api", "subscribe", "subscribe (Subscribe streams, unary Ack and Nack) or consume (Consume streams, settles in band)")
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
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 2 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

type app struct {
	cfg    appConfig
	client gatewayv1.ConsumerServiceClient

	ledgerMu sync.Mutex
	ledger   *os.File
	seq      int64 // deliveries received by this process; under ledgerMu

	crash     atomic.Bool  // SIGKILL self after processing the next batch, before its ack
	lateAck   atomic.Bool  // drop the stream of the next batch, then ack the batch anyway
	slowUntil atomic.Int64 // hold acks until this Unix nanosecond time
	slowLease atomic.Int64 // take this long (ns) over the next batch before acking it

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
		case "slow", "slow-lease":
			if len(f) == 2 {
				if d, err := time.ParseDuration(f[1]); err == nil {
					if f[0] == "slow" {
						a.slowUntil.Store(time.Now().Add(d).UnixNano())
					} else {
						a.slowLease.Store(int64(d))
					}
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
// leaves whole lines (at most the last one cut, which the reader skips).
func (a *app) write(b []byte) {
	a.ledgerMu.Lock()
	defer a.ledgerMu.Unlock()
	a.writeLocked(b)
}

func (a *app) writeLocked(b []byte) {
	if _, err := a.ledger.Write(b); err != nil {
		fmt.Fprintln(os.Stderr, "ledger:", err)
		os.Exit(3)
	}
}

// held is a delivery in the app's hands, with its ledger number.
type held struct {
	d   *gatewayv1.Delivery
	seq int64
}

func appendEvent(b []byte, ev byte, now, seq int64) []byte {
	b = append(b, ev, ' ')
	b = strconv.AppendInt(b, now, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '\n')
}

// events records one event for each delivery, at one time.
func (a *app) events(ev byte, hs []held) {
	if len(hs) == 0 {
		return
	}
	now := time.Now().UnixNano()
	b := make([]byte, 0, 32*len(hs))
	for _, h := range hs {
		b = appendEvent(b, ev, now, h.seq)
	}
	a.write(b)
}

// receive numbers a frame's deliveries and records their receipt (D),
// and, in the same write, those it will not process for lack of time (X)
// and those it processes now (P). It returns the deliveries to dead-letter
// (poison), to nack, and to process.
func (a *app) receive(rng *rand.Rand, ds []*gatewayv1.Delivery) (poison, nack, process []held) {
	a.ledgerMu.Lock()
	defer a.ledgerMu.Unlock()
	now := time.Now()
	at := now.UnixNano()
	b := make([]byte, 0, 96*len(ds))
	var skipped []held
	for _, d := range ds {
		a.seq++
		h := held{d: d, seq: a.seq}
		var deadline int64
		if d.GetAckDeadline() != nil {
			deadline = d.GetAckDeadline().AsTime().UnixNano()
		}
		b = append(b, evDelivered, ' ')
		b = strconv.AppendInt(b, at, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, h.seq, 10)
		b = append(b, ' ')
		b = append(b, d.GetMessageId()...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(d.GetPartition()), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, d.GetOffset(), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(d.GetAttempt()), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, deadline, 10)
		b = append(b, '\n')
		_, _, _, kind, _ := parseValue(string(d.GetValue()))
		switch {
		case kind != poisonNone:
			poison = append(poison, h)
		case deadline != 0 && deadline-at < int64(a.cfg.margin):
			// A well-behaved app does not start what it cannot finish
			// within the delivery's lease.
			skipped = append(skipped, h)
		case rng.Float64() < a.cfg.pNack:
			nack = append(nack, h)
		default:
			process = append(process, h)
		}
	}
	for _, h := range skipped {
		b = appendEvent(b, evSkipped, at, h.seq)
	}
	for _, h := range process {
		b = appendEvent(b, evProcessed, at, h.seq)
	}
	a.writeLocked(b)
	return poison, nack, process
}

// stream subscribes, handles frames until the stream fails or is dropped,
// and subscribes again, for ever.
func (a *app) stream(rng *rand.Rand) {
	req := &gatewayv1.SubscribeRequest{
		Group: a.cfg.group, Topics: []string{a.cfg.topic}, Ordering: a.cfg.ordering,
		MaxInFlight: int32(a.cfg.maxInFlight), AckTimeout: durationpb.New(a.cfg.ackTimeout),
		StartPosition: gatewayv1.StartPosition_START_POSITION_EARLIEST,
		// Random nacks and kills must not push records to the dead-letter
		// topic: only poison records go there, nacked with dead_letter.
		MaxAttempts: 1000,
	}
	for {
		ctx, cancel := context.WithCancel(a.session())
		var err error
		if a.cfg.api == "consume" {
			err = a.consumeOnce(ctx, rng, req)
		} else {
			err = a.subscribeOnce(ctx, rng, req)
		}
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
			// Frames not read yet are dropped with the stream.
			return err
		}
		if as := resp.GetAssignment(); as != nil {
			a.write(fmt.Appendf(nil, "%c %d %d %d\n", evAssignFrame, time.Now().UnixNano(), len(as.GetAssigned()), len(as.GetRevoked())))
			continue
		}
		poison, nack, process := a.receive(rng, resp.GetDeliveries().GetDeliveries())
		if len(poison) > 0 {
			a.nack(ctx, poison, true)
		}
		if len(nack) > 0 {
			a.nack(ctx, nack, false)
		}
		if len(process) == 0 {
			continue
		}
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
		if d := a.slowLease.Swap(0); d > 0 {
			// This batch takes longer than its lease: its ack must be
			// refused once the records went to another delivery.
			time.Sleep(time.Duration(d))
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
			// The gateway is gone (or restarted). Deliveries it sent before
			// dying may still sit in this stream's buffer; a well-behaved
			// app drops the stream, and them with it, and subscribes again.
			return errDropped
		}
	}
}

// nack rejects deliveries (dead-letters them when deadLetter) and records
// the answer.
func (a *app) nack(ctx context.Context, hs []held, deadLetter bool) {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.d.GetAckId()
	}
	req := &gatewayv1.NackRequest{Group: a.cfg.group, AckIds: ids, RetryAfter: durationpb.New(200 * time.Millisecond), Reason: "chaos"}
	ok := byte(evNacked)
	if deadLetter {
		req.DeadLetter, req.Reason, ok = true, "poison", evDeadLetter
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a.events(evNackSent, hs)
	_, err := a.client.Nack(cctx, req)
	switch status.Code(err) {
	case codes.OK:
		a.events(ok, hs)
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		// No answer from the gateway: the app holds the deliveries
		// until their deadline.
	default:
		a.events(evNackFailed, hs)
	}
}

// ack acks a processed batch, records the outcome and returns its event.
// UNAVAILABLE means the ack is applied but its dedupe done markers are not
// yet written: the API says to repeat it, which the app does for a while
// (less than the ack timeout); if the gateway is gone meanwhile the ack's
// fate stays unknown.
func (a *app) ack(hs []held) byte {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.d.GetAckId()
	}
	a.events(evAckSent, hs)
	deadline := time.Now().Add(a.cfg.ackTimeout / 2)
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
		_, err := a.client.Ack(ctx, &gatewayv1.AckRequest{Group: a.cfg.group, AckIds: ids})
		cancel()
		code := status.Code(err)
		switch {
		case err == nil:
			a.events(evAcked, hs)
			return evAcked
		case code == codes.FailedPrecondition && try == 0:
			a.events(evRefused, hs)
			return evRefused
		case code == codes.FailedPrecondition:
			// An earlier try may have been applied before the gateway
			// lost the partition.
			a.events(evUnknown, hs)
			return evUnknown
		case code == codes.InvalidArgument:
			// The gateway issued these IDs: INVALID_ARGUMENT breaks its
			// contract. The checker counts these apart. After an earlier
			// try failed (the gateway died during the call), that try may
			// have been applied: the ack's fate is unknown.
			fmt.Fprintln(os.Stderr, "ack refused as invalid:", err)
			if try > 0 {
				a.events(evUnknown, hs)
				return evUnknown
			}
			a.events(evInvalid, hs)
			return evInvalid
		case time.Now().After(deadline):
			a.events(evUnknown, hs)
			return evUnknown
		}
		time.Sleep(500 * time.Millisecond)
	}
}
