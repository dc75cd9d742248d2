package gateway_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

// consumerGateway is a gateway tuned for consume tests: quick commits and
// a short grace on revoke.
func consumerGateway(t *testing.T, mutate func(*config.Config)) *harness {
	return startGateway(t, func(c *config.Config) {
		c.Consumer.CommitInterval = 100 * time.Millisecond
		c.Consumer.RevokeGrace = time.Second
		c.Consumer.DrainTimeout = 2 * time.Second
		if mutate != nil {
			mutate(c)
		}
	})
}

func (h *harness) consumer() gatewayv1.ConsumerServiceClient {
	return gatewayv1.NewConsumerServiceClient(h.conn)
}

// produceRecords writes n records (keys key-0..key-(keys-1), values
// "i") in batches and waits for them.
func produceRecords(t *testing.T, h *harness, topic string, n, keys int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for start := 0; start < n; start += 1000 {
		var recs []*gatewayv1.Record
		for i := start; i < min(n, start+1000); i++ {
			recs = append(recs, &gatewayv1.Record{Key: fmt.Appendf(nil, "key-%d", i%keys), Value: []byte(strconv.Itoa(i))})
		}
		resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		for _, r := range resp.GetResults() {
			if r.GetError() != nil {
				t.Fatalf("produce: %v", r.GetError())
			}
		}
	}
}

// offsetReader reads a group's committed offsets without joining it.
type offsetReader struct {
	t      *testing.T
	c      *kafka.Consumer
	topic  string
	nparts int
}

func newOffsetReader(t *testing.T, bootstrap, group, topic string, partitions int) *offsetReader {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &offsetReader{t: t, c: c, topic: topic, nparts: partitions}
}

// committed returns the committed offset per partition (negative: none).
func (r *offsetReader) committed() map[int32]int64 {
	var tps []kafka.TopicPartition
	for p := range r.nparts {
		tps = append(tps, kafka.TopicPartition{Topic: &r.topic, Partition: int32(p)})
	}
	got, err := r.c.Committed(tps, 10_000)
	if err != nil {
		r.t.Logf("read committed offsets: %v", err)
		return nil
	}
	out := map[int32]int64{}
	for _, tp := range got {
		out[tp.Partition] = int64(tp.Offset)
	}
	return out
}

// ledger is what the test's apps processed: every delivery, and every ack
// sent (recorded before the Ack call, so a commit can never legitimately
// include an offset missing here).
type ledger struct {
	mu        sync.Mutex
	delivered map[[2]int64]int // (partition, offset) → deliveries
	acked     map[[2]int64]bool
}

func newLedger() *ledger {
	return &ledger{delivered: map[[2]int64]int{}, acked: map[[2]int64]bool{}}
}

func (l *ledger) deliver(d *gatewayv1.Delivery) {
	l.mu.Lock()
	l.delivered[[2]int64{int64(d.GetPartition()), d.GetOffset()}]++
	l.mu.Unlock()
}

func (l *ledger) ack(ds []*gatewayv1.Delivery) {
	l.mu.Lock()
	for _, d := range ds {
		l.acked[[2]int64{int64(d.GetPartition()), d.GetOffset()}] = true
	}
	l.mu.Unlock()
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// firstUnacked returns the lowest offset of partition p not acked.
func (l *ledger) firstUnacked(p int32) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := int64(0)
	for l.acked[[2]int64{int64(p), o}] {
		o++
	}
	return o
}

// app runs one Subscribe stream that acks what it receives, in random
// order, in small batches. It stops when ctx ends.
func app(ctx context.Context, t *testing.T, client gatewayv1.ConsumerServiceClient, req *gatewayv1.SubscribeRequest, led *ledger) error {
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		ds := resp.GetDeliveries().GetDeliveries()
		if len(ds) == 0 {
			continue
		}
		for _, d := range ds {
			led.deliver(d)
		}
		rng.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
		for len(ds) > 0 {
			n := min(len(ds), 1+rng.IntN(20))
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond) // "processing"
			led.ack(ds[:n])
			ids := make([]string, n)
			for i, d := range ds[:n] {
				ids[i] = d.GetAckId()
			}
			if _, err := client.Ack(ctx, &gatewayv1.AckRequest{Group: req.GetGroup(), AckIds: ids}); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
			ds = ds[n:]
		}
	}
}

func TestConcurrentStreamsAckEveryRecordAndCommitsNeverPassAnUnackedOne(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	const partitions, n = 4, 10_000
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	produceRecords(t, h, topic, n, 100)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	led := newLedger()
	var wg sync.WaitGroup
	appCtx, stopApps := context.WithCancel(ctx)
	for range 3 {
		wg.Go(func() {
			req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 300}
			if err := app(appCtx, t, h.consumer(), req, led); err != nil && appCtx.Err() == nil {
				t.Errorf("app: %v", err)
			}
		})
	}

	// While the apps work, the committed offset of every partition must
	// stay at or below its first unacknowledged record.
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)
	checks := 0
	for led.ackedCount() < n {
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d records acknowledged", led.ackedCount(), n)
		}
		for p, c := range offsets.committed() {
			if first := led.firstUnacked(p); c > first {
				t.Fatalf("partition %d committed at %d, past unacknowledged offset %d", p, c, first)
			}
		}
		checks++
		time.Sleep(5 * time.Millisecond)
	}
	ends := map[int32]int64{}
	for _, m := range testenv.ReadTopic(t, bootstrap, topic) {
		ends[m.TopicPartition.Partition] = int64(m.TopicPartition.Offset) + 1
	}
	testenv.Eventually(t, 20*time.Second, "commits to reach the end of every partition", func() bool {
		got := offsets.committed()
		for p, end := range ends {
			if got[p] != end {
				return false
			}
		}
		return true
	})
	stopApps()
	wg.Wait()
	led.mu.Lock()
	defer led.mu.Unlock()
	for p, end := range ends {
		for o := range end {
			if led.delivered[[2]int64{int64(p), o}] == 0 {
				t.Errorf("record %d@%d never delivered", p, o)
			}
		}
	}
	t.Logf("%d records acknowledged, %d commit checks during the run", n, checks)
}

func TestAStreamThatDiesHasItsUnackedRecordsRedeliveredToAnother(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	produceRecords(t, h, topic, 200, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 50,
		AckTimeout: durationpb.New(time.Minute)} // redelivery must come from the stream's end, not a timeout

	// The doomed stream takes records and never acks them.
	doomedCtx, kill := context.WithCancel(ctx)
	doomed, err := h.consumer().Subscribe(doomedCtx, req)
	if err != nil {
		t.Fatal(err)
	}
	held := map[[2]int64]bool{}
	for len(held) < 50 {
		resp, err := doomed.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetDeliveries().GetDeliveries() {
			held[[2]int64{int64(d.GetPartition()), d.GetOffset()}] = true
		}
	}
	kill()

	led := newLedger()
	appCtx, stopApp := context.WithCancel(ctx)
	defer stopApp()
	go app(appCtx, t, h.consumer(), req, led)
	testenv.Eventually(t, 30*time.Second, "every record to be acknowledged by the surviving stream", func() bool {
		return led.ackedCount() == 200
	})
	led.mu.Lock()
	defer led.mu.Unlock()
	for k := range held {
		if !led.acked[k] {
			t.Errorf("record %v held by the dead stream was not redelivered", k)
		}
	}
}

// orderedApp processes with random delays on several streams and checks
// that no record is delivered while an earlier one of its key (or, for
// PARTITION, of its partition) is still unacknowledged.
func TestOrderingModesKeepOrderUnderConcurrency(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	for _, tc := range []struct {
		name     string
		ordering gatewayv1.Ordering
		scope    func(d *gatewayv1.Delivery) string
	}{
		{"key", gatewayv1.Ordering_ORDERING_KEY, func(d *gatewayv1.Delivery) string { return string(d.GetKey()) }},
		{"partition", gatewayv1.Ordering_ORDERING_PARTITION, func(d *gatewayv1.Delivery) string { return strconv.Itoa(int(d.GetPartition())) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			topic := testenv.CreateTopic(t, bootstrap, 2)
			group := testenv.UniqueName("g")
			h := consumerGateway(t, nil)
			const n = 600
			produceRecords(t, h, topic, n, 20)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()

			var mu sync.Mutex
			last := map[string]int{}      // scope → value of the last record processed
			inflight := map[string]bool{} // scope → a record is being processed
			processed := 0
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					stream, err := h.consumer().Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: tc.ordering, MaxInFlight: 10})
					if err != nil {
						t.Error(err)
						return
					}
					for {
						resp, err := stream.Recv()
						if err != nil {
							return
						}
						for _, d := range resp.GetDeliveries().GetDeliveries() {
							v, _ := strconv.Atoi(string(d.GetValue()))
							scope := tc.scope(d)
							mu.Lock()
							if inflight[scope] {
								t.Errorf("record %d delivered while an earlier record of %s %q is in flight", v, tc.name, scope)
							}
							if prev, ok := last[scope]; ok && v < prev {
								t.Errorf("%s %q: record %d after %d", tc.name, scope, v, prev)
							}
							inflight[scope] = true
							mu.Unlock()
							time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
							mu.Lock()
							inflight[scope] = false
							last[scope] = v
							processed++
							mu.Unlock()
							if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId()}}); err != nil && ctx.Err() == nil { // the test may end between processing and ack
								t.Errorf("ack: %v", err)
							}
						}
					}
				})
			}
			testenv.Eventually(t, 60*time.Second, "every record to be processed", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return processed >= n
			})
			cancel()
			wg.Wait()
		})
	}
}

func TestAPoisonRecordIsDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	produceRecords(t, h, topic, 20, 1) // one key, so value 7 blocks everything after it
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := h.consumer().Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_PARTITION, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	offsets := newOffsetReader(t, bootstrap, group, topic, 1)
	attempts := 0
	processed := map[string]bool{}
	for len(processed) < 19 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetDeliveries().GetDeliveries() {
			if string(d.GetValue()) == "7" {
				attempts++
				if d.GetAttempt() != int32(attempts) {
					t.Errorf("poison delivery attempt = %d, want %d", d.GetAttempt(), attempts)
				}
				if _, err := h.consumer().Nack(ctx, &gatewayv1.NackRequest{Group: group, AckIds: []string{d.GetAckId()}, Reason: "cannot parse"}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			processed[string(d.GetValue())] = true
			if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId()}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if attempts != 3 {
		t.Errorf("poison record delivered %d times, want max_attempts = 3", attempts)
	}
	testenv.Eventually(t, 20*time.Second, "the commit to pass the poison record", func() bool {
		return offsets.committed()[0] == 20
	})
	var dlq []*kafka.Message
	testenv.Eventually(t, 20*time.Second, "the dead-letter record", func() bool {
		dlq = testenv.ReadTopic(t, bootstrap, topic+".dlq")
		return len(dlq) == 1
	})
	m := dlq[0]
	want := map[string]string{"dlq-source-topic": topic, "dlq-source-partition": "0", "dlq-source-offset": "7",
		"dlq-attempts": "3", "dlq-reason": "cannot parse", "dlq-group": group}
	for k, v := range want {
		if got, _ := testenv.Header(m, k); got != v {
			t.Errorf("dead-letter header %s = %q, want %q", k, got, v)
		}
	}
	if string(m.Value) != "7" {
		t.Errorf("dead-letter value = %q, want the poison record's", m.Value)
	}
	if _, ok := testenv.Header(m, "message-id"); !ok {
		t.Errorf("dead-letter record lost its message-id")
	}
}

func TestConsumerBadInputGetsPreciseErrors(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	produceRecords(t, h, topic, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	subscribeErr := func(req *gatewayv1.SubscribeRequest) error {
		stream, err := h.consumer().Subscribe(ctx, req)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	for _, tc := range []struct {
		name string
		req  *gatewayv1.SubscribeRequest
		code codes.Code
	}{
		{"empty group", &gatewayv1.SubscribeRequest{Topics: []string{topic}}, codes.InvalidArgument},
		{"empty topics", &gatewayv1.SubscribeRequest{Group: group}, codes.InvalidArgument},
		{"illegal topic", &gatewayv1.SubscribeRequest{Group: group, Topics: []string{"a b"}}, codes.InvalidArgument},
		{"negative max_in_flight", &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, MaxInFlight: -1}, codes.InvalidArgument},
		{"negative max_attempts", &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, MaxAttempts: -1}, codes.InvalidArgument},
		{"topic that does not exist", &gatewayv1.SubscribeRequest{Group: group, Topics: []string{testenv.UniqueName("missing")}}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) { requireCode(t, subscribeErr(tc.req), tc.code) })
	}

	// A real subscription, then settings that contradict it.
	stream, err := h.consumer().Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	var d *gatewayv1.Delivery
	for d == nil {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ds := resp.GetDeliveries().GetDeliveries(); len(ds) > 0 {
			d = ds[0]
		}
	}
	t.Run("conflicting settings", func(t *testing.T) {
		requireCode(t, subscribeErr(&gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE}), codes.FailedPrecondition)
	})
	ackCases := []struct {
		name  string
		group string
		ids   []string
		code  codes.Code
	}{
		{"group not running here", testenv.UniqueName("nobody"), []string{d.GetAckId()}, codes.FailedPrecondition},
		{"empty ack ids", group, nil, codes.InvalidArgument},
		{"malformed ack id", group, []string{"not-an-ack-id"}, codes.InvalidArgument},
		// IDs the gateway did not issue get the answer of a stale one, so
		// that no answer tells which records exist: an issued ID with its
		// offset changed, one made up, and a real one named for another
		// group.
		{"altered offset", group, []string{strings.Replace(d.GetAckId(), fmt.Sprintf("/%d/%d/", d.GetPartition(), d.GetOffset()), fmt.Sprintf("/%d/999/", d.GetPartition()), 1)}, codes.FailedPrecondition},
		{"made up", group, []string{fmt.Sprintf("%s/0/0/1/1/%s", topic, strings.Repeat("0", 24))}, codes.FailedPrecondition},
	}
	for _, tc := range ackCases {
		t.Run("ack: "+tc.name, func(t *testing.T) {
			_, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: tc.group, AckIds: tc.ids})
			requireCode(t, err, tc.code)
		})
	}
	// A bad ID in a batch applies nothing; then a good ack works, twice.
	_, err = h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId(), "bad"}})
	requireCode(t, err, codes.InvalidArgument)
	for range 2 {
		if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId()}}); err != nil {
			t.Fatalf("ack (idempotent): %v", err)
		}
	}
	_, err = h.consumer().Nack(ctx, &gatewayv1.NackRequest{Group: group, AckIds: []string{d.GetAckId()}})
	requireCode(t, err, codes.FailedPrecondition)
	h.requireHealthy(t, topic)
}

// TestASecondStreamThatLeavesSettingsUnspecifiedTakesTheGroups: a stream
// attaching to a group that runs here already, with no ordering,
// ack_timeout, max_attempts or start_position of its own, joins it with
// the group's settings; one that asks for other settings is refused.
func TestASecondStreamThatLeavesSettingsUnspecifiedTakesTheGroups(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := func(req *gatewayv1.SubscribeRequest) error {
		stream, err := h.consumer().Subscribe(ctx, req)
		if err != nil {
			return err
		}
		_, err = stream.Recv() // the assignment frame, or the refusal
		return err
	}
	if err := first(&gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_KEY,
		AckTimeout: durationpb.New(7 * time.Second), MaxAttempts: 3, StartPosition: gatewayv1.StartPosition_START_POSITION_LATEST}); err != nil {
		t.Fatalf("the group's first stream: %v", err)
	}
	if err := first(&gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}}); err != nil {
		t.Fatalf("a second stream with nothing but group and topics: %v, want it to join", err)
	}
	requireCode(t, first(&gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, MaxAttempts: 4}), codes.FailedPrecondition)
}
