package produce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/rdkafka"
)

// fakeEngine stands in for librdkafka in the tests of how the producer
// enqueues and reports: it records every Produce call, refuses the
// messages a test says to refuse, and reports every enqueued message
// (written at the next offset of a one-partition topic, unless the test
// decides another fate).
type fakeEngine struct {
	mu      sync.Mutex
	calls   [][]string // the values each Produce call enqueued (calls that enqueued none left out)
	refused []string   // the values refused, in order
	next    int64
	pending []rdkafka.Report
	kick    chan struct{}
	// gate, when set, is waited for at the start of the next Produce call
	// (after entered is closed), then cleared.
	gate    chan struct{}
	entered chan struct{}
	// refuse decides whether a message is refused (nil: enqueued).
	refuse func(value string) error
	// fate decides a written message's report (nil: written).
	fate func(value string) (rdkafka.ErrorCode, rdkafka.PersistStatus)
}

func newFakeEngine() *fakeEngine { return &fakeEngine{kick: make(chan struct{}, 1)} }

func (f *fakeEngine) Produce(topic string, msgs []rdkafka.Message) (int, error) {
	f.mu.Lock()
	gate, entered := f.gate, f.entered
	f.gate, f.entered = nil, nil
	f.mu.Unlock()
	if gate != nil {
		close(entered)
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var call []string
	defer func() {
		if len(call) > 0 {
			f.calls = append(f.calls, call)
		}
	}()
	for i, m := range msgs {
		v := string(m.Value)
		if f.refuse != nil {
			if err := f.refuse(v); err != nil {
				f.refused = append(f.refused, v)
				return i, err
			}
		}
		call = append(call, v)
		r := rdkafka.Report{Opaque: m.Opaque, Partition: 0, Offset: f.next}
		if f.fate != nil {
			if code, st := f.fate(v); code != 0 {
				r = rdkafka.Report{Opaque: m.Opaque, Partition: 0, Offset: -1, Err: code, Status: st}
			}
		}
		if r.Err == 0 {
			f.next++
		}
		f.pending = append(f.pending, r)
	}
	select {
	case f.kick <- struct{}{}:
	default:
	}
	return len(msgs), nil
}

func (f *fakeEngine) Poll(timeout time.Duration, out []rdkafka.Report) []rdkafka.Report {
	f.mu.Lock()
	n := len(f.pending)
	f.mu.Unlock()
	if n == 0 && timeout > 0 {
		select {
		case <-f.kick:
		case <-time.After(timeout):
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out = append(out, f.pending...)
	f.pending = f.pending[:0]
	return out
}

func (f *fakeEngine) Events() ([]rdkafka.LogLine, []string, []rdkafka.ClientError) {
	return nil, nil, nil
}
func (f *fakeEngine) Partitions(string, time.Duration) (int32, error) { return 1, nil }
func (f *fakeEngine) Brokers(time.Duration) (int, error)              { return 1, nil }
func (f *fakeEngine) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}
func (f *fakeEngine) Flush(time.Duration) int { return 0 }
func (f *fakeEngine) Purge(bool) error        { return nil }
func (f *fakeEngine) Close()                  {}

// holdNextProduce makes the next Produce call wait until release; entered
// is closed once it waits.
func (f *fakeEngine) holdNextProduce() (entered <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate, f.entered = make(chan struct{}), make(chan struct{})
	gate := f.gate
	return f.entered, func() { close(gate) }
}

func (f *fakeEngine) produceCalls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// runFake runs a producer on eng until the test ends.
func runFake(t *testing.T, eng *fakeEngine, mutate func(*Config)) *Producer {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	p := newProducer(eng, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = p.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-ran })
	return p
}

func values(vs ...string) []Record {
	out := make([]Record, len(vs))
	for i, v := range vs {
		out[i] = Record{Value: []byte(v), Partition: AnyPartition}
	}
	return out
}

// queued is how many calls wait for the enqueuer.
func (p *Producer) queued() int {
	p.enq.mu.Lock()
	defer p.enq.mu.Unlock()
	return len(p.enq.queue)
}

// TestCallsMadeWhileOneEnqueuesShareTheNextCallIntoLibrdkafka: while one
// call is inside librdkafka, the calls that arrive meanwhile are enqueued
// together, in one call, in the order they came, each call's records
// together and in order, and each call gets its own records' results.
func TestCallsMadeWhileOneEnqueuesShareTheNextCallIntoLibrdkafka(t *testing.T) {
	eng := newFakeEngine()
	p := runFake(t, eng, nil)
	entered, release := eng.holdNextProduce()

	type answer struct {
		res []Result
		err error
	}
	first := make(chan answer, 1)
	go func() {
		res, err := p.Produce(t.Context(), "orders", values("a0"))
		first <- answer{res, err}
	}()
	<-entered
	const calls = 5
	answers := make([]chan answer, calls)
	for i := range calls {
		answers[i] = make(chan answer, 1)
		go func() {
			res, err := p.Produce(t.Context(), "orders", values(fmt.Sprintf("c%d-0", i), fmt.Sprintf("c%d-1", i)))
			answers[i] <- answer{res, err}
		}()
		for p.queued() < i+1 { // in arrival order
			time.Sleep(time.Millisecond)
		}
	}
	release()

	a := <-first
	if a.err != nil || a.res[0].Err != nil || a.res[0].Offset != 0 {
		t.Fatalf("first call: %v %+v", a.err, a.res)
	}
	for i := range calls {
		a := <-answers[i]
		if a.err != nil {
			t.Fatalf("call %d: %v", i, a.err)
		}
		for j, r := range a.res {
			// The first call wrote offset 0; then the calls in order.
			if want := int64(1 + 2*i + j); r.Err != nil || r.Offset != want {
				t.Errorf("call %d record %d: %+v, want written at offset %d", i, j, r, want)
			}
		}
	}
	got := eng.produceCalls()
	want := [][]string{{"a0"}, {"c0-0", "c0-1", "c1-0", "c1-1", "c2-0", "c2-1", "c3-0", "c3-1", "c4-0", "c4-1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("calls into librdkafka: %v, want %v", got, want)
	}
}

// TestARefusedRecordStopsItsOwnCallOnly: in a shared enqueue, librdkafka
// refuses a record of one call. That call's later records are not tried
// (they could overtake it) and fail with it; the next call's records still
// go in.
func TestARefusedRecordStopsItsOwnCallOnly(t *testing.T) {
	eng := newFakeEngine()
	eng.refuse = func(v string) error {
		if v == "a1" {
			return &rdkafka.Error{Code: rdkafka.ErrMsgSizeTooLarge, Message: "too large"}
		}
		return nil
	}
	p := runFake(t, eng, nil)
	entered, release := eng.holdNextProduce()
	go p.Produce(t.Context(), "orders", values("warm-up"))
	<-entered

	type answer struct {
		res []Result
		err error
	}
	a, b := make(chan answer, 1), make(chan answer, 1)
	go func() { res, err := p.Produce(t.Context(), "orders", values("a0", "a1", "a2")); a <- answer{res, err} }()
	for p.queued() < 1 {
		time.Sleep(time.Millisecond)
	}
	go func() { res, err := p.Produce(t.Context(), "orders", values("b0", "b1")); b <- answer{res, err} }()
	for p.queued() < 2 {
		time.Sleep(time.Millisecond)
	}
	release()

	ra, rb := <-a, <-b
	if ra.err != nil || rb.err != nil {
		t.Fatalf("calls: %v, %v", ra.err, rb.err)
	}
	if ra.res[0].Err != nil {
		t.Errorf("a0: %v, want written", ra.res[0].Err)
	}
	for _, j := range []int{1, 2} {
		if !errors.Is(ra.res[j].Err, kafkaclient.ErrRejected) {
			t.Errorf("a%d: %v, want rejected (the refusal of a1)", j, ra.res[j].Err)
		}
	}
	for j, r := range rb.res {
		if r.Err != nil {
			t.Errorf("b%d: %v, want written", j, r.Err)
		}
	}
	got := eng.produceCalls()
	eng.mu.Lock()
	refused := slices.Clone(eng.refused)
	eng.mu.Unlock()
	want := [][]string{{"warm-up"}, {"a0"}, {"b0", "b1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(refused) != "[a1]" {
		t.Errorf("calls into librdkafka: %v, refused %v; want %v, refused [a1] (a2 never tried)", got, refused, want)
	}
}

// TestAFullQueueIsRetriedFromTheRefusedRecord: librdkafka's queue is full
// at a record; the gateway waits and goes on from that record, so nothing
// is enqueued twice and the order holds. When the queue stays full past
// the call's wait, the rest of that call fails with ErrQueueFull.
func TestAFullQueueIsRetriedFromTheRefusedRecord(t *testing.T) {
	eng := newFakeEngine()
	var mu sync.Mutex
	full := map[string]int{"r2": 3, "s1": 1 << 30} // how many more times each is refused
	eng.refuse = func(v string) error {
		mu.Lock()
		defer mu.Unlock()
		if full[v] > 0 {
			full[v]--
			return &rdkafka.Error{Code: rdkafka.ErrQueueFull, Message: "queue full"}
		}
		return nil
	}
	p := runFake(t, eng, func(c *Config) { c.QueueFullWait = time.Second })

	res, err := p.Produce(t.Context(), "orders", values("r0", "r1", "r2", "r3"))
	if err != nil {
		t.Fatal(err)
	}
	for j, r := range res {
		if r.Err != nil || r.Offset != int64(j) {
			t.Errorf("r%d: %+v, want written at offset %d", j, r, j)
		}
	}
	res, err = p.Produce(t.Context(), "orders", values("s0", "s1", "s2"))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !errors.Is(res[1].Err, ErrQueueFull) || !errors.Is(res[2].Err, ErrQueueFull) {
		t.Errorf("with the queue full for good at s1: %+v, want s0 written, s1 and s2 failed queue full", res)
	}
	var enqueued []string
	for _, c := range eng.produceCalls() {
		enqueued = append(enqueued, c...)
	}
	if want := []string{"r0", "r1", "r2", "r3", "s0"}; !slices.Equal(enqueued, want) {
		t.Errorf("records enqueued: %v, want %v once each, in order", enqueued, want)
	}
}

// TestAFailedRecordGivesItsKeyUpOnlyWhenLibrdkafkaKnowsItIsNotWritten:
// librdkafka tells, with each failed delivery report, whether the record
// may nevertheless have been written. A record that timed out in the local
// queue, never sent ("not persisted"), gives its idempotency key up, so a
// retry writes at once; one that timed out in flight ("possibly
// persisted") keeps it reserved, so a retry waits instead of writing a
// second copy.
func TestAFailedRecordGivesItsKeyUpOnlyWhenLibrdkafkaKnowsItIsNotWritten(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	eng := newFakeEngine()
	var mu sync.Mutex
	fates := map[string]rdkafka.PersistStatus{"pay queued": rdkafka.NotPersisted, "pay sent": rdkafka.PossiblyPersisted}
	eng.fate = func(v string) (rdkafka.ErrorCode, rdkafka.PersistStatus) {
		mu.Lock()
		defer mu.Unlock()
		st, ok := fates[v]
		if !ok {
			return 0, rdkafka.Persisted
		}
		delete(fates, v) // only the first attempt fails
		return rdkafka.ErrMsgTimedOut, st
	}
	p := runFake(t, eng, nil)
	p.EnableIdempotency(dedupe.NewStore(rdb, "t:", time.Hour, dedupe.NewOwner("gw")), time.Hour)

	for _, key := range []string{"queued", "sent"} {
		res, err := p.Produce(t.Context(), "orders", record(key))
		if err != nil || !errors.Is(res[0].Err, kafkaclient.ErrUnavailable) {
			t.Fatalf("%s: first call %v %+v, want the record timed out", key, err, res)
		}
	}
	// The reservations are settled in the background.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	for {
		res, err := p.Produce(ctx, "orders", record("queued"))
		if err == nil && res[0].Err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("retry of a record never sent: %v %+v, want it written", err, res)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if res, err := p.Produce(ctx, "orders", record("sent")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("retry of a record possibly written: %v %+v, want it to wait for the key (DEADLINE_EXCEEDED)", err, res)
	}
}
