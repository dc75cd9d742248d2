package produce

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/testenv"
)

// idemEnv is an in-process broker with one single-partition topic and a
// Redis-protocol server, shared by the producers of one test.
type idemEnv struct {
	cluster *kfake.Cluster
	rdb     *redis.Client
	topic   string
}

func newIdemEnv(t *testing.T) *idemEnv {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return &idemEnv{cluster: cluster, rdb: rdb, topic: "orders"}
}

// running is a producer with idempotency keys, running until stop.
type running struct {
	*Producer
	stop func() // shuts it down; Run has returned when stop returns
}

// start runs a producer (a gateway process) against the environment, with
// cfg changed by mutate, and warms it up: topic metadata and producer ID
// are known when it returns. It stops when the test ends.
func (e *idemEnv) start(t *testing.T, mutate func(*Config)) *running {
	t.Helper()
	cfg := DefaultConfig()
	cfg.FlushTimeout = 10 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := New(kafkaclient.Config{BootstrapServers: e.cluster.ListenAddrs()[0]}, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	p.EnableIdempotency(dedupe.NewStore(e.rdb, "t:", time.Hour, dedupe.NewOwner("gw")), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = p.Run(ctx)
	}()
	var once sync.Once
	r := &running{Producer: p, stop: func() { once.Do(func() { cancel(); <-ran }) }}
	t.Cleanup(r.stop)
	if _, err := p.Produce(t.Context(), e.topic, []Record{{Value: []byte("warm-up"), Partition: AnyPartition}}); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	return r
}

// holdProduce makes the broker hold every produce request until the
// returned release is called; a held request is then handled as usual
// (written and answered, if the client still waits for the answer).
func (e *idemEnv) holdProduce() (release func()) {
	ch := make(chan struct{})
	e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.SleepControl(func() { <-ch })
		return nil, nil, false
	})
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// refuseNextProduce makes the broker refuse the next produce request with
// MESSAGE_TOO_LARGE: a definite failure, nothing written.
func (e *idemEnv) refuseNextProduce() {
	e.cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		return refusal(kreq.(*kmsg.ProduceRequest), 10), nil, true // MESSAGE_TOO_LARGE
	})
}

// refusal is the answer to req that refuses every partition in it with
// the error code.
func refusal(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			sp.BaseOffset = -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// copies counts the records of the topic whose message ID is id.
func (e *idemEnv) copies(t *testing.T, id string) int {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  e.cluster.ListenAddrs()[0],
		"group.id":           "reader",
		"enable.auto.commit": false,
		"log_level":          0,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, high, err := c.QueryWatermarkOffsets(e.topic, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if high == 0 {
		return 0
	}
	if err := c.Assign([]kafka.TopicPartition{{Topic: &e.topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := c.ReadMessage(time.Until(deadline))
		if err != nil {
			t.Fatalf("read %s up to offset %d: %v", e.topic, high, err)
		}
		for _, h := range m.Headers {
			if h.Key == "message-id" && string(h.Value) == id {
				n++
			}
		}
		if int64(m.TopicPartition.Offset) >= high-1 {
			return n
		}
	}
}

func record(key string) []Record {
	return []Record{{Value: []byte("pay " + key), Partition: AnyPartition, IdempotencyKey: key}}
}

// TestARetryAfterTheCallerGaveUpReturnsTheFirstWrite pins the story of the
// documented retry: a Produce with an idempotency key ends before its
// delivery report (DEADLINE_EXCEEDED, or the client cancels), and the
// client retries with the same key. The first write lands after all; the
// retry must return its partition and offset and not write the record
// again. The gateway used to give the key up when the call ended, so the
// retry wrote a second copy.
func TestARetryAfterTheCallerGaveUpReturnsTheFirstWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		giveUp func() (context.Context, func())
		want   error
	}{
		{"deadline", func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, func()) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newIdemEnv(t)
			p := env.start(t, nil)
			release := env.holdProduce()
			defer release()

			ctx, cancel := tc.giveUp()
			_, err := p.Produce(ctx, env.topic, record("order-42"))
			cancel()
			if !errors.Is(err, tc.want) {
				t.Fatalf("first call: %v, want %v", err, tc.want)
			}

			// The retry comes while the first write is still in flight: it
			// waits for it rather than writing.
			type answer struct {
				res []Result
				err error
			}
			retried := make(chan answer, 1)
			go func() {
				res, err := p.Produce(t.Context(), env.topic, record("order-42"))
				retried <- answer{res, err}
			}()
			time.Sleep(200 * time.Millisecond) // let the retry find the key held
			release()
			a := <-retried
			if a.err != nil || a.res[0].Err != nil {
				t.Fatalf("retry: %v %+v", a.err, a.res)
			}
			// And a retry long after answers the same.
			again, err := p.Produce(t.Context(), env.topic, record("order-42"))
			if err != nil || again[0].Err != nil {
				t.Fatalf("second retry: %v %+v", err, again)
			}
			if again[0].Partition != a.res[0].Partition || again[0].Offset != a.res[0].Offset {
				t.Errorf("retries answered %d/%d and %d/%d, want the same write", a.res[0].Partition, a.res[0].Offset, again[0].Partition, again[0].Offset)
			}
			if n := env.copies(t, "order-42"); n != 1 {
				t.Errorf("topic holds %d records with idempotency key order-42, want 1", n)
			}
		})
	}
}

// TestARecordOfUnknownFateKeepsItsKeyReserved: the record times out while
// in flight to the broker (librdkafka's "possibly persisted": the broker
// may have written it). The gateway cannot know, so it keeps the key
// reserved: a retry soon after waits (here until its deadline) instead of
// writing a second copy. It used to give the key up, and the retry wrote
// the record again at once.
func TestARecordOfUnknownFateKeepsItsKeyReserved(t *testing.T) {
	t.Parallel()
	env := newIdemEnv(t)
	p := env.start(t, func(c *Config) { c.DeliveryTimeout = time.Second })
	release := env.holdProduce()
	defer release()

	res, err := p.Produce(t.Context(), env.topic, record("order-7"))
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if !errors.Is(res[0].Err, kafkaclient.ErrUnavailable) {
		t.Fatalf("first call: record error %v, want a timeout (UNAVAILABLE)", res[0].Err)
	}
	release() // the broker may write it now

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	res, err = p.Produce(ctx, env.topic, record("order-7"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("retry while the first write's fate is unknown: %v %+v, want DEADLINE_EXCEEDED (waiting for the key)", err, res)
	}
	if n := env.copies(t, "order-7"); n > 1 {
		t.Errorf("topic holds %d records with idempotency key order-7, want at most 1", n)
	}
}

// TestARefusedRecordGivesItsKeyUp: the broker refuses the record (too
// large, say): it is certainly not written, so a retry with the same key
// writes it.
func TestARefusedRecordGivesItsKeyUp(t *testing.T) {
	t.Parallel()
	env := newIdemEnv(t)
	p := env.start(t, nil)
	env.refuseNextProduce()
	res, err := p.Produce(t.Context(), env.topic, record("order-9"))
	if err != nil || !errors.Is(res[0].Err, kafkaclient.ErrRejected) {
		t.Fatalf("first call: %v %+v, want the record refused", err, res)
	}
	res, err = p.Produce(t.Context(), env.topic, record("order-9"))
	if err != nil || res[0].Err != nil {
		t.Fatalf("retry: %v %+v, want it written", err, res)
	}
	if n := env.copies(t, "order-9"); n != 1 {
		t.Errorf("topic holds %d records with idempotency key order-9, want 1", n)
	}
}

// TestShutdownSettlesTheKeysOfCallsThatWentAway: a call gives up while its
// record is in flight, and the gateway shuts down. The flush at shutdown
// gets the record's report; the gateway must store its result before it
// exits, so that the client's retry, reaching another gateway, returns it
// instead of writing the record again.
func TestShutdownSettlesTheKeysOfCallsThatWentAway(t *testing.T) {
	t.Parallel()
	env := newIdemEnv(t)
	first := env.start(t, nil)
	release := env.holdProduce()
	defer release()

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	_, err := first.Produce(ctx, env.topic, record("order-13"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first call: %v, want DEADLINE_EXCEEDED", err)
	}
	stopped := make(chan struct{})
	go func() {
		first.stop()
		close(stopped)
	}()
	time.Sleep(200 * time.Millisecond) // shutdown is flushing
	release()
	<-stopped

	second := env.start(t, nil)
	res, err := second.Produce(t.Context(), env.topic, record("order-13"))
	if err != nil || res[0].Err != nil {
		t.Fatalf("retry on another gateway: %v %+v", err, res)
	}
	if n := env.copies(t, "order-13"); n != 1 {
		t.Errorf("topic holds %d records with idempotency key order-13, want 1", n)
	}
}

// vanishedWriter reserves key as a gateway that dies right after: its
// reservation is never settled. With written, its record reached the topic
// before it died (the broker acknowledged it, the result never stored).
// It returns once the reservation is stale for the others.
func (e *idemEnv) vanishedWriter(t *testing.T, key string, written bool) {
	t.Helper()
	dead := dedupe.NewStore(e.rdb, "t:", time.Hour, dedupe.NewOwner("gw-dead"))
	st, err := dead.ReserveProduce(t.Context(), e.topic, []dedupe.Intent{{Key: key, Partition: -1}}, dedupe.ProduceTTL{Settle: time.Millisecond, Keep: time.Hour})
	if err != nil || !st[0].Reserved {
		t.Fatalf("reserve as the writer that dies: %+v %v", st, err)
	}
	if written {
		// Its record, as its producer wrote it: the idempotency key is the
		// message ID.
		plain, err := New(kafkaclient.Config{BootstrapServers: e.cluster.ListenAddrs()[0]}, DefaultConfig(), testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() { defer close(ran); _ = plain.Run(ctx) }()
		res, err := plain.Produce(t.Context(), e.topic, record(key))
		cancel()
		<-ran
		if err != nil || res[0].Err != nil {
			t.Fatalf("the vanished writer's record: %v %+v", err, res)
		}
	}
	// Past its settle time and the slack for clocks apart.
	time.Sleep(5*time.Second + 100*time.Millisecond)
}

// TestARetryAfterTheWriterDiedReturnsTheRecordItWrote pins the long chaos
// run's duplicates: a gateway was killed after the broker acknowledged a
// record with an idempotency key and before it stored the result. The
// client's retry waited out the reservation and then wrote the record a
// second time. Now the retry takes the stale reservation over, finds the
// record in the topic by its message ID, and returns it.
func TestARetryAfterTheWriterDiedReturnsTheRecordItWrote(t *testing.T) {
	t.Parallel()
	env := newIdemEnv(t)
	env.vanishedWriter(t, "order-77", true)
	p := env.start(t, nil)
	res, err := p.Produce(t.Context(), env.topic, record("order-77"))
	if err != nil || res[0].Err != nil {
		t.Fatalf("retry: %v %+v", err, res)
	}
	if n := env.copies(t, "order-77"); n != 1 {
		t.Errorf("topic holds %d records with idempotency key order-77, want 1", n)
	}
	again, err := p.Produce(t.Context(), env.topic, record("order-77"))
	if err != nil || again[0].Offset != res[0].Offset || again[0].Partition != res[0].Partition {
		t.Errorf("a later retry: %v %+v, want the same record as %+v", err, again, res)
	}
}

// TestARetryAfterTheWriterDiedBeforeWritingWritesTheRecord: the gateway
// died before its record reached the broker. The retry finds nothing in
// the topic and writes the record, once.
func TestARetryAfterTheWriterDiedBeforeWritingWritesTheRecord(t *testing.T) {
	t.Parallel()
	env := newIdemEnv(t)
	env.vanishedWriter(t, "order-78", false)
	p := env.start(t, nil)
	res, err := p.Produce(t.Context(), env.topic, record("order-78"))
	if err != nil || res[0].Err != nil {
		t.Fatalf("retry: %v %+v", err, res)
	}
	if n := env.copies(t, "order-78"); n != 1 {
		t.Errorf("topic holds %d records with idempotency key order-78, want 1", n)
	}
}
