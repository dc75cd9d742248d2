package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/embedded"
	"github.com/kafkagate/gateway/internal/testenv"
)

// sent is what the client knows about a record it produced.
type sent struct {
	record *gatewayv1.Record
	result *gatewayv1.RecordResult
}

func makeRecords(prefix string, n int) []*gatewayv1.Record {
	recs := make([]*gatewayv1.Record, n)
	for i := range recs {
		recs[i] = &gatewayv1.Record{
			Key:   fmt.Appendf(nil, "key-%d", i%17),
			Value: fmt.Appendf(nil, "%s-value-%d", prefix, i),
			Headers: []*gatewayv1.Header{
				{Key: "trace", Value: fmt.Appendf(nil, "t-%d", i)},
				{Key: "empty"},
			},
		}
	}
	return recs
}

// requireAllWrittenOnce reads the topic back with a plain librdkafka consumer
// and checks that each sent record is there exactly once, at the partition
// and offset its result named, with its message ID, headers, key and value.
func requireAllWrittenOnce(t *testing.T, bootstrap, topic string, all []sent) {
	t.Helper()
	msgs := testenv.ReadTopic(t, bootstrap, topic)
	byID := map[string][]*kafka.Message{}
	for _, m := range msgs {
		id, ok := testenv.Header(m, "message-id")
		if !ok {
			t.Errorf("record %s has no message-id header", testenv.String(m))
		}
		byID[id] = append(byID[id], m)
	}
	if len(msgs) != len(all) {
		t.Errorf("topic holds %d records, %d were produced", len(msgs), len(all))
	}
	for _, s := range all {
		if s.result.GetError() != nil {
			t.Fatalf("record %s failed: %v", s.record.GetValue(), s.result.GetError())
		}
		got := byID[s.result.GetMessageId()]
		if len(got) != 1 {
			t.Errorf("message %s found %d times, want once", s.result.GetMessageId(), len(got))
			continue
		}
		m := got[0]
		if m.TopicPartition.Partition != s.result.GetPartition() || int64(m.TopicPartition.Offset) != s.result.GetOffset() {
			t.Errorf("message %s is at %d@%d, its result said %d@%d", s.result.GetMessageId(),
				m.TopicPartition.Partition, m.TopicPartition.Offset, s.result.GetPartition(), s.result.GetOffset())
		}
		if !bytes.Equal(m.Key, s.record.GetKey()) || !bytes.Equal(m.Value, s.record.GetValue()) {
			t.Errorf("message %s: key/value %q/%q, want %q/%q", s.result.GetMessageId(), m.Key, m.Value, s.record.GetKey(), s.record.GetValue())
		}
		// The gateway's message-id header comes first, then the app's, in order.
		want := []string{"message-id=" + s.result.GetMessageId()}
		for _, h := range s.record.GetHeaders() {
			want = append(want, h.GetKey()+"="+string(h.GetValue()))
		}
		var have []string
		for _, h := range m.Headers {
			have = append(have, h.Key+"="+string(h.Value))
		}
		if fmt.Sprint(have) != fmt.Sprint(want) {
			t.Errorf("message %s headers = %v, want %v", s.result.GetMessageId(), have, want)
		}
		if !m.Timestamp.Equal(s.result.GetTimestamp().AsTime()) {
			t.Errorf("message %s timestamp = %v, result said %v", s.result.GetMessageId(), m.Timestamp, s.result.GetTimestamp().AsTime())
		}
	}
}

func TestProduceWritesEveryRecordOnceWhereItsResultSays(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 4)
	h := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		mu  sync.Mutex
		all []sent
		wg  sync.WaitGroup
	)
	for c := range 4 {
		wg.Go(func() {
			recs := makeRecords(fmt.Sprintf("unary%d", c), 50)
			resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
			if err != nil {
				t.Errorf("Produce: %v", err)
				return
			}
			if len(resp.GetResults()) != len(recs) {
				t.Errorf("%d results for %d records", len(resp.GetResults()), len(recs))
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for i, r := range resp.GetResults() {
				all = append(all, sent{recs[i], r})
			}
		})
	}
	wg.Wait()
	// Offsets within a partition follow request order for one call.
	requireAllWrittenOnce(t, bootstrap, topic, all)
}

func TestProduceStreamAnswersEveryBatchAndWritesEveryRecordOnce(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 4)
	h := startGateway(t, func(c *config.Config) { c.Server.MaxStreamInflight = 8 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	stream, err := h.producer.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const batches = 40
	sentBatches := map[string][]*gatewayv1.Record{}
	for b := range batches {
		id := fmt.Sprintf("batch-%d", b)
		recs := makeRecords(id, 25)
		sentBatches[id] = recs
	}
	sendErr := make(chan error, 1)
	go func() {
		for b := range batches {
			id := fmt.Sprintf("batch-%d", b)
			if err := stream.Send(&gatewayv1.ProduceStreamRequest{RequestId: id, Topic: topic, Records: sentBatches[id]}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	var all []sent
	answered := map[string]bool{}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break // the server ends the stream with OK after the half-close
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		recs, ok := sentBatches[resp.GetRequestId()]
		if !ok || answered[resp.GetRequestId()] {
			t.Fatalf("unexpected or repeated response for %q", resp.GetRequestId())
		}
		answered[resp.GetRequestId()] = true
		for i, r := range resp.GetResults() {
			all = append(all, sent{recs[i], r})
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if len(answered) != batches {
		t.Fatalf("%d of %d batches answered", len(answered), batches)
	}
	requireAllWrittenOnce(t, bootstrap, topic, all)
}

// Vectors computed with the Java client (kafka-clients 4.3.1,
// Utils.toPositive(Utils.murmur2(utf8(key))) % n): gateway producers and
// Java producers must send a key to the same partition. The empty key is a
// key like any other: it was sent as no key, spread at random, until the
// API could tell an empty key from none.
var javaMurmur2 = []struct {
	key         string
	p3, p4, p12 int32
}{
	{"", 0, 1, 9},
	{"a", 1, 0, 4},
	{"key-0", 1, 1, 1},
	{"key-1", 0, 0, 0},
	{"key-2", 2, 2, 2},
	{"key-3", 2, 3, 11},
	{"key-4", 0, 1, 9},
	{"key-5", 2, 0, 8},
	{"key-6", 2, 0, 8},
	{"key-7", 1, 3, 7},
	{"key-8", 1, 3, 7},
	{"key-9", 0, 1, 9},
	{"order-42", 0, 0, 0},
	{"customer/17", 1, 1, 1},
	{"héllo", 0, 2, 6},
	{"21", 0, 0, 0},
	{"foobar", 0, 2, 6},
	{"a-little-bit-long-string", 2, 0, 8},
	{"a-little-bit-longer-string", 2, 3, 11},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 2, 1, 5},
}

// TestTheFirstProduceToANewTopicWithAutoCreateIsWritten pins a newcomer's
// first call against a real cluster: with producer.auto_create_topics on,
// Kafka 4 (KRaft) creates the topic but answers "unknown topic or
// partition" to metadata requests for a second or two meanwhile. The
// gateway answered NOT_FOUND, and the same call succeeded 1.5 s later; the
// first call must get its partition and offset.
func TestTheFirstProduceToANewTopicWithAutoCreateIsWritten(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.UniqueName("autocreated")
	testenv.DeleteTopicAtCleanup(t, bootstrap, topic)
	h := startGateway(t, func(c *config.Config) { c.Producer.AutoCreateTopics = true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Key: []byte("k"), Value: []byte("first")}}})
	if err != nil {
		t.Fatalf("first Produce to a topic never seen: %v", err)
	}
	r := resp.GetResults()[0]
	if r.GetError() != nil || r.GetOffset() != 0 {
		t.Fatalf("first record: %v, want it written at offset 0", r)
	}
	if msgs := testenv.ReadTopic(t, bootstrap, topic); len(msgs) != 1 || string(msgs[0].Value) != "first" {
		t.Fatalf("topic holds %d records, want the first one", len(msgs))
	}
}

func TestKeysGoToTheSamePartitionAsWithTheJavaClient(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	h := startGateway(t, nil)
	for _, n := range []int{3, 4, 12} {
		t.Run(fmt.Sprintf("%d partitions", n), func(t *testing.T) {
			topic := testenv.CreateTopic(t, bootstrap, n)
			var recs []*gatewayv1.Record
			for _, v := range javaMurmur2 {
				recs = append(recs, &gatewayv1.Record{Key: []byte(v.key), Value: []byte(v.key)})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range javaMurmur2 {
				want := map[int]int32{3: v.p3, 4: v.p4, 12: v.p12}[n]
				if got := resp.GetResults()[i].GetPartition(); got != want {
					t.Errorf("key %q: partition %d, Java's murmur2 gives %d", v.key, got, want)
				}
			}
		})
	}
}

func TestProduceHonoursExplicitPartitionTimestampAndIdempotencyKey(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	h := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	rec := &gatewayv1.Record{Key: []byte("key-3"), Value: []byte("v"), Partition: proto.Int32(2),
		Timestamp: timestamppb.New(ts), IdempotencyKey: "order-1234/attempt"}
	resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{rec}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetResults()[0]
	if r.GetPartition() != 2 || r.GetMessageId() != "order-1234/attempt" || !r.GetTimestamp().AsTime().Equal(ts) {
		t.Errorf("result = %v; want partition 2, message ID from the idempotency key, timestamp %v", r, ts)
	}
	requireAllWrittenOnce(t, bootstrap, topic, []sent{{rec, r}})
}

func TestBadInputGetsAPreciseErrorAndTheGatewayStaysHealthy(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	h := startGateway(t, func(c *config.Config) {
		c.Producer.MaxRecordBytes = 1000
		c.Producer.MaxRecordsPerRequest = 5
		c.Producer.AutoCreateTopics = false
	})
	rec := func(v string) *gatewayv1.Record { return &gatewayv1.Record{Value: []byte(v)} }
	cases := []struct {
		name  string
		req   *gatewayv1.ProduceRequest
		code  codes.Code
		field string // the field the status must name, if any
	}{
		{"empty topic", &gatewayv1.ProduceRequest{Records: []*gatewayv1.Record{rec("x")}}, codes.InvalidArgument, "topic"},
		{"illegal topic name", &gatewayv1.ProduceRequest{Topic: "no spaces", Records: []*gatewayv1.Record{rec("x")}}, codes.InvalidArgument, "topic"},
		{"no records", &gatewayv1.ProduceRequest{Topic: topic}, codes.InvalidArgument, "records"},
		{"too many records", &gatewayv1.ProduceRequest{Topic: topic, Records: makeRecords("x", 6)}, codes.InvalidArgument, "records"},
		{"record too large", &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{rec("ok"), rec(string(make([]byte, 1001)))}}, codes.InvalidArgument, "records[1]"},
		{"reserved header", &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Headers: []*gatewayv1.Header{{Key: "message-id"}}}}}, codes.InvalidArgument, "records[0].headers[0].key"},
		{"partition out of range", &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Partition: proto.Int32(2)}}}, codes.InvalidArgument, "records[0].partition"},
		{"invalid timestamp", &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Timestamp: &timestamppb.Timestamp{Nanos: -1}}}}, codes.InvalidArgument, "records[0].timestamp"},
		{"unknown topic", &gatewayv1.ProduceRequest{Topic: testenv.UniqueName("missing"), Records: []*gatewayv1.Record{rec("x")}}, codes.NotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := h.producer.Produce(ctx, tc.req)
			st := requireCode(t, err, tc.code)
			if tc.field != "" && !bytes.HasPrefix([]byte(st.Message()), []byte(tc.field+":")) {
				t.Errorf("message %q does not start with the field %q", st.Message(), tc.field)
			}
			h.requireHealthy(t, topic)
		})
	}
	// Nothing of a rejected request was written, not even its valid records.
	msgs := testenv.ReadTopic(t, bootstrap, topic)
	for _, m := range msgs {
		if string(m.Value) != "still healthy" {
			t.Errorf("a rejected request wrote %s (%q)", testenv.String(m), m.Value)
		}
	}
}

func TestProduceStreamAnswersAnInvalidBatchAndKeepsTheStreamOpen(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := startGateway(t, func(c *config.Config) { c.Producer.MaxRecordBytes = 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := h.producer.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := &gatewayv1.ProduceStreamRequest{RequestId: "bad", Topic: topic, Records: []*gatewayv1.Record{
		{Value: []byte("fine")}, {Value: make([]byte, 200)},
	}}
	good := &gatewayv1.ProduceStreamRequest{RequestId: "good", Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("after")}}}
	for _, req := range []*gatewayv1.ProduceStreamRequest{bad, good} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := map[string]*gatewayv1.ProduceStreamResponse{}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stream ended with %v, want OK after the half-close", err)
		}
		got[resp.GetRequestId()] = resp
	}
	for i, r := range got["bad"].GetResults() {
		if codes.Code(r.GetError().GetCode()) != codes.InvalidArgument {
			t.Errorf("bad batch record %d: error %v, want INVALID_ARGUMENT", i, r.GetError())
		}
	}
	if len(got["bad"].GetResults()) != 2 {
		t.Errorf("bad batch has %d results, want 2", len(got["bad"].GetResults()))
	}
	if r := got["good"].GetResults(); len(r) != 1 || r[0].GetError() != nil {
		t.Fatalf("good batch after the bad one: %v", r)
	}
	requireAllWrittenOnce(t, bootstrap, topic, []sent{{good.GetRecords()[0], got["good"].GetResults()[0]}})
}

// stalledGateway holds records in the local queue for 5 s (linger) and
// has room for 256 KiB, so the queue fills and deadlines pass before any
// delivery report. The room is well below message.max.bytes (1 MB), which
// would otherwise send a full batch before the linger ends.
func stalledGateway(t *testing.T) *harness {
	return startGateway(t, func(c *config.Config) {
		c.Producer.QueueMaxBytes = 256 << 10
		c.Producer.QueueFullWait = 300 * time.Millisecond
		c.Producer.Properties = map[string]string{"linger.ms": "5000", "batch.size": "100000000"}
	})
}

func TestFullQueueWaitsThenFailsWithResourceExhausted(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := stalledGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// 30 records of 20 kB: about twelve fit, the rest wait for room, then fail.
	const size = 20_000
	var recs []*gatewayv1.Record
	for i := range 30 {
		recs = append(recs, &gatewayv1.Record{Key: []byte("k"), Value: bytes.Repeat([]byte{byte(i)}, size)})
	}
	firstDone := make(chan *gatewayv1.ProduceResponse, 1)
	go func() {
		resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
		if err != nil {
			t.Errorf("first Produce: %v", err)
		}
		firstDone <- resp
	}()

	// While the queue is full, a call with one record fails as a whole.
	// A probe that runs before the queue is full is enqueued and lingers: its
	// short deadline ends it, and the next probe tries again.
	testenv.Eventually(t, 20*time.Second, "a call to find the queue full", func() bool {
		probeCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := h.producer.Produce(probeCtx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: make([]byte, size)}}})
		return codes.ResourceExhausted == statusCode(err)
	})

	resp := <-firstDone
	var ok, exhausted int
	for i, r := range resp.GetResults() {
		switch {
		case r.GetError() == nil:
			if exhausted > 0 {
				t.Errorf("record %d written after an earlier record failed: key order broken", i)
			}
			ok++
		case codes.Code(r.GetError().GetCode()) == codes.ResourceExhausted:
			exhausted++
		default:
			t.Errorf("record %d: %v", i, r.GetError())
		}
	}
	if ok == 0 || exhausted == 0 {
		t.Fatalf("%d written, %d RESOURCE_EXHAUSTED; want some of each", ok, exhausted)
	}
	msgs := testenv.ReadTopic(t, bootstrap, topic)
	written := 0
	for _, m := range msgs {
		if len(m.Value) == size && m.Value[0] < 30 && bytes.Equal(m.Key, []byte("k")) {
			written++
		}
	}
	if written != ok {
		t.Errorf("topic holds %d of the first call's records, %d were reported written", written, ok)
	}
	h.requireHealthy(t, topic)
}

// TestProduceStreamEndsAfterABatchWhoseTailDidNotFitTheQueue pins key
// order across the batches of a stream: the tail of batch "a" fails with
// RESOURCE_EXHAUSTED (the local queue stayed full), and batch "b", sent
// right after with the same key, fits. The stream used to answer "a" and go
// on with "b", writing b's record before the client could resend a's tail.
// Now the stream answers "a", reads nothing more, and ends with
// RESOURCE_EXHAUSTED naming "a"; b's record is not written.
func TestProduceStreamEndsAfterABatchWhoseTailDidNotFitTheQueue(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := stalledGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := h.producer.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 30 records of 20 kB: about twelve fit, the rest wait for room, then
	// fail. b's one small record would fit after them.
	const size = 20_000
	var a []*gatewayv1.Record
	for i := range 30 {
		a = append(a, &gatewayv1.Record{Key: []byte("k"), Value: bytes.Repeat([]byte{byte(i)}, size)})
	}
	b := []*gatewayv1.Record{{Key: []byte("k"), Value: []byte("b")}}
	for _, req := range []*gatewayv1.ProduceStreamRequest{{RequestId: "a", Topic: topic, Records: a}, {RequestId: "b", Topic: topic, Records: b}} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}

	var written, exhausted int
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			t.Fatal("the stream ended with OK, want RESOURCE_EXHAUSTED after batch a")
		}
		if err != nil {
			st := requireCode(t, err, codes.ResourceExhausted)
			if !strings.Contains(st.Message(), `"a"`) {
				t.Errorf("stream error %q does not name batch a", st.Message())
			}
			break
		}
		if resp.GetRequestId() != "a" {
			t.Fatalf("batch %q answered after batch a's tail failed: it was enqueued", resp.GetRequestId())
		}
		for i, r := range resp.GetResults() {
			switch {
			case r.GetError() == nil:
				if exhausted > 0 {
					t.Errorf("record %d of a written after an earlier one failed", i)
				}
				written++
			case codes.Code(r.GetError().GetCode()) == codes.ResourceExhausted:
				exhausted++
			default:
				t.Errorf("record %d of a: %v", i, r.GetError())
			}
		}
	}
	if written == 0 || exhausted == 0 {
		t.Fatalf("batch a: %d written, %d RESOURCE_EXHAUSTED; want some of each", written, exhausted)
	}
	msgs := testenv.ReadTopic(t, bootstrap, topic)
	if len(msgs) != written {
		t.Errorf("topic holds %d records, want the %d of a reported written", len(msgs), written)
	}
	for _, m := range msgs {
		if string(m.Value) == "b" {
			t.Errorf("b's record was written at offset %d, before a's failed tail", m.TopicPartition.Offset)
		}
	}
}

func TestDeadlineBeforeDeliveryReportIsDeadlineExceeded(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := stalledGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("late")}}})
	requireCode(t, err, codes.DeadlineExceeded)
	h.requireHealthy(t, topic)
}

func TestUnreachableBrokerIsUnavailable(t *testing.T) {
	t.Parallel()
	h := startGateway(t, func(c *config.Config) {
		c.Kafka.BootstrapServers = "127.0.0.1:1" // nothing listens there
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: "orders", Records: []*gatewayv1.Record{{Value: []byte("x")}}})
	requireCode(t, err, codes.Unavailable)
	// Still answering, and still refusing bad input precisely.
	_, err = h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: ""})
	requireCode(t, err, codes.InvalidArgument)
}

func statusCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	type grpcStatus interface{ GRPCStatus() *status.Status }
	if s, ok := err.(grpcStatus); ok {
		return s.GRPCStatus().Code()
	}
	return codes.Unknown
}

// A broker that goes away after the topic is known: records wait in the
// queue until producer.delivery_timeout, then fail with UNAVAILABLE.
func TestRecordsFailUnavailableWhenTheBrokerGoesAway(t *testing.T) {
	t.Parallel()
	cfg := embedded.DefaultConfig()
	cfg.KafkaAddr, cfg.RedisAddr = "127.0.0.1:0", "127.0.0.1:0"
	broker, err := embedded.Start(cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	h := startGateway(t, func(c *config.Config) {
		c.Kafka.BootstrapServers = broker.KafkaBootstrap()
		c.Producer.AutoCreateTopics = true
		c.Producer.DeliveryTimeout = 2 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &gatewayv1.ProduceRequest{Topic: "orders", Records: []*gatewayv1.Record{{Value: []byte("x")}}}
	if _, err := h.producer.Produce(ctx, req); err != nil {
		t.Fatalf("produce while the broker is up: %v", err)
	}
	broker.Close()
	_, err = h.producer.Produce(ctx, req)
	requireCode(t, err, codes.Unavailable)
}
