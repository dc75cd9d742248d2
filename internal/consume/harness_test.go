package consume

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/produce"
)

// fakeClient is a consumerClient that records what the group asks of
// librdkafka, in order, and keeps the pause state, stored and committed
// offsets the calls leave.
type fakeClient struct {
	mu        sync.Mutex
	calls     []string
	paused    map[tpKey]bool
	stored    map[tpKey]int64
	committed map[tpKey]int64
	metadata  map[tpKey]string // committed with the offset
}

func newFakeClient() *fakeClient {
	return &fakeClient{paused: map[tpKey]bool{}, stored: map[tpKey]int64{}, committed: map[tpKey]int64{}, metadata: map[tpKey]string{}}
}

func (f *fakeClient) record(op string, tps []TopicPartition, offs []PartitionOffset) {
	for _, tp := range tps {
		f.calls = append(f.calls, fmt.Sprintf("%s %s/%d", op, tp.Topic, tp.Partition))
	}
	for _, o := range offs {
		f.calls = append(f.calls, fmt.Sprintf("%s %s/%d@%d", op, o.Topic, o.Partition, o.Offset))
	}
}

func (f *fakeClient) Pause(tps []TopicPartition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("pause", tps, nil)
	for _, tp := range tps {
		f.paused[tpKey{tp.Topic, tp.Partition}] = true
	}
	return nil
}

func (f *fakeClient) Resume(tps []TopicPartition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("resume", tps, nil)
	for _, tp := range tps {
		f.paused[tpKey{tp.Topic, tp.Partition}] = false
	}
	return nil
}

func (f *fakeClient) Store(offs []PartitionOffset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("store", nil, offs)
	for _, o := range offs {
		f.stored[tpKey{o.Topic, o.Partition}] = o.Offset
	}
	return nil
}

func (f *fakeClient) Commit(offs []PartitionOffset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("commit", nil, offs)
	for _, o := range offs {
		f.committed[tpKey{o.Topic, o.Partition}] = o.Offset
		f.metadata[tpKey{o.Topic, o.Partition}] = o.Metadata
	}
	return nil
}

func (f *fakeClient) Seek(offs []PartitionOffset) ([]PartitionOffset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("seek", nil, offs)
	return nil, nil
}

func (f *fakeClient) isPaused(part int32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused[tpKey{"t", part}]
}

// log returns the calls made so far, one per line.
func (f *fakeClient) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, "\n")
}

// fakeProducer writes dead letters through a function of the test, and
// remembers every record written.
type fakeProducer struct {
	mu      sync.Mutex
	fn      func(topic string, recs []produce.Record) ([]produce.Result, error)
	written map[string][]produce.Record
}

func (p *fakeProducer) Produce(_ context.Context, topic string, recs []produce.Record) ([]produce.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var res []produce.Result
	var err error
	if p.fn != nil {
		res, err = p.fn(topic, recs)
	} else {
		res = make([]produce.Result, len(recs))
	}
	if err == nil {
		for i, r := range recs {
			if res[i].Err == nil {
				if p.written == nil {
					p.written = map[string][]produce.Record{}
				}
				p.written[topic] = append(p.written[topic], r)
			}
		}
	}
	return res, err
}

func (p *fakeProducer) records(topic string) []produce.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]produce.Record(nil), p.written[topic]...)
}

// harness is one group of a Manager, driven by the test as librdkafka would
// drive it (assigned, add, revoked), on a recording client.
type harness struct {
	t      *testing.T
	m      *Manager
	g      *group
	client *fakeClient
	prod   *fakeProducer
	mr     *miniredis.Miniredis // with dedupe
	store  *dedupe.Store
}

type harnessOptions struct {
	ackTimeout  time.Duration
	ordering    Ordering
	maxAttempts int
	dedupe      bool
	claims      func(Claims) Claims // wraps the store, to delay or fail it
	cfg         func(*Config)
	group       string
	// with is another harness whose Manager (and Redis) this group joins.
	with *harness
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	if o.ackTimeout == 0 {
		o.ackTimeout = 30 * time.Second
	}
	if o.ordering == 0 {
		o.ordering = OrderingPartition
	}
	if o.maxAttempts == 0 {
		o.maxAttempts = 100
	}
	if o.group == "" {
		o.group = "g"
	}
	h := &harness{t: t, client: newFakeClient(), prod: &fakeProducer{}}
	if o.with != nil {
		h.m, h.mr, h.store, h.prod = o.with.m, o.with.mr, o.with.store, o.with.prod
	} else {
		cfg := DefaultConfig()
		if o.cfg != nil {
			o.cfg(&cfg)
		}
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		h.m = &Manager{cfg: cfg, logger: logger, messageIDHeader: "message-id", producer: h.prod, now: time.Now,
			signer: newAckSigner(), groups: map[string]*group{}, counters: map[string]*counters{}}
		if o.dedupe {
			h.mr = miniredis.RunT(t)
			rdb := redis.NewClient(&redis.Options{Addr: h.mr.Addr()})
			t.Cleanup(func() { rdb.Close() })
			h.store = dedupe.NewStore(rdb, "t:", time.Hour, dedupe.NewOwner("gw"))
			var c Claims = h.store
			if o.claims != nil {
				c = o.claims(c)
			}
			h.m.dd = &Dedupe{Claims: c, HoldRetry: 20 * time.Millisecond}
		}
	}
	s := Settings{Group: o.group, Topics: []string{"t"}, Ordering: o.ordering, StartPosition: StartEarliest, AckTimeout: o.ackTimeout, MaxAttempts: o.maxAttempts}
	h.m.mu.Lock()
	h.g = newGroup(h.m, s, false)
	h.g.client = h.client
	h.m.groups[o.group] = h.g
	h.m.mu.Unlock()
	h.m.active.Add(1)
	h.g.startWorkers()
	t.Cleanup(func() {
		h.g.timers.stop()
		h.g.dlq.stop()
		h.g.settle.stop()
		h.g.wg.Wait()
	})
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func tps(parts ...int32) []TopicPartition {
	out := make([]TopicPartition, len(parts))
	for i, p := range parts {
		out[i] = TopicPartition{Topic: "t", Partition: p}
	}
	return out
}

func (h *harness) assign(parts ...int32) { h.g.assigned(tps(parts...)) }

func (h *harness) revoke(lost bool, parts ...int32) { h.g.revoked(tps(parts...), lost) }

// rec is a fetched record of partition part with message ID id.
func rec(part int32, offset int64, id string, value string) fetched {
	return fetched{topic: "t", partition: part, r: &record{offset: offset, key: []byte(id), value: []byte(value),
		messageID: id, size: int32(len(id) + len(value)), headers: []Header{{Key: "message-id", Value: []byte(id)}}}}
}

func (h *harness) add(fs ...fetched) { h.g.add(fs) }

func (h *harness) stream(max int) *Stream {
	s := &Stream{g: h.g, maxInFlight: max, notify: make(chan struct{}, 1)}
	h.g.attach(s)
	return s
}

// next returns the next delivery s gets within d, or nil.
func next(s *Stream, d time.Duration) *Delivery {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		f, err := s.Next(ctx)
		if err != nil {
			return nil
		}
		if len(f.Deliveries) > 0 {
			dl := f.Deliveries[0]
			if len(f.Deliveries) > 1 {
				// Put the rest back in front, for the next call.
				s.g.mu.Lock()
				s.frames = append([]Frame{{Deliveries: f.Deliveries[1:]}}, s.frames...)
				s.g.mu.Unlock()
			}
			return &dl
		}
	}
}

// must returns the next delivery of s within 5 s, or fails the test.
func (h *harness) must(s *Stream) *Delivery {
	h.t.Helper()
	d := next(s, 5*time.Second)
	if d == nil {
		h.t.Fatal("no delivery within 5s")
	}
	return d
}

func (h *harness) ack(ids ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.m.Ack(ctx, h.g.settings.Group, ids)
}

func (h *harness) nack(opts NackOptions, ids ...string) error {
	return h.m.Nack(h.g.settings.Group, ids, opts)
}

// log returns the partition's log (nil when not owned).
func (h *harness) log(part int32) *partitionLog {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	return h.g.parts[tpKey{"t", part}]
}

func (h *harness) committable(part int32) int64 {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	if l := h.g.parts[tpKey{"t", part}]; l != nil {
		return l.committable()
	}
	return -2
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// redisValue is what Redis holds under the dedupe key of message id.
func (h *harness) redisValue(id string) string {
	v, _ := h.mr.Get("t:dedupe:" + h.g.settings.Group + ":t:" + id)
	return v
}
