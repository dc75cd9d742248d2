package gateway_test

// Null keys and values (a null value is a tombstone on a compacted topic)
// kept apart from empty ones between the API and the real broker, both
// ways. Records are written and read behind the gateway's back with
// franz-go, which writes a nil slice as null and a non-nil empty slice as
// empty, and reads them back the same way.

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// shown is a key or value as a test prints it: null, or its text quoted
// ("" when set and empty).
func shown(b []byte) string {
	if b == nil {
		return "null"
	}
	return strconv.Quote(string(b))
}

// presenceCases are the keys and values whose presence must survive: each
// combination of null and empty, and the plain tombstone of a key.
var presenceCases = []struct {
	name       string
	key, value []byte
}{
	{"null key, null value", nil, nil},
	{"empty key, empty value", []byte{}, []byte{}},
	{"null key, empty value", nil, []byte{}},
	{"empty key, null value", []byte{}, nil},
	{"key, null value (a tombstone)", []byte("k"), nil},
	{"key, empty value", []byte("k"), []byte{}},
}

// caseHeader names the case a record was written for.
const caseHeader = "case"

func caseOf(headers []*gatewayv1.Header) int {
	for _, h := range headers {
		if h.GetKey() == caseHeader {
			if n, err := strconv.Atoi(string(h.GetValue())); err == nil {
				return n
			}
		}
	}
	return -1
}

func kgoCaseOf(r *kgo.Record) int {
	for _, h := range r.Headers {
		if h.Key == caseHeader {
			if n, err := strconv.Atoi(string(h.Value)); err == nil {
				return n
			}
		}
	}
	return -1
}

// writeWithKgo writes one record per presence case to partition 0 of topic.
func writeWithKgo(t *testing.T, bootstrap, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i, tc := range presenceCases {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Key: tc.key, Value: tc.value,
			Headers: []kgo.RecordHeader{{Key: caseHeader, Value: []byte(strconv.Itoa(i))}}})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("write with franz-go: %v", err)
	}
}

// readWithKgo reads the first n records of partition 0 of topic.
func readWithKgo(t *testing.T, bootstrap, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read with franz-go: %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// subscribeAll subscribes a new group to topic and returns n deliveries,
// each acked, indexed by their case header.
func subscribeAll(t *testing.T, h *harness, topic string, n int) map[int]*gatewayv1.Delivery {
	t.Helper()
	group := testenv.UniqueName("g")
	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100}, newLedger(), true)
	got := map[int]*gatewayv1.Delivery{}
	for _, d := range waitDeliveries(t, s, n) {
		got[caseOf(d.GetHeaders())] = d
	}
	s.requireNoAckErrors(t, group)
	return got
}

// An app reading a compacted topic must see a tombstone as one, and a
// record without a key apart from one with an empty key. The API's bytes
// fields had no presence, so null and empty both arrived as empty. Records
// written straight to Kafka with a null or empty key and value now come out
// of Subscribe with the key and value unset for null, set and empty for
// empty.
func TestNullAndEmptyKeysAndValuesInKafkaAreDeliveredAsTheyAre(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	writeWithKgo(t, bootstrap, topic)
	h := consumerGateway(t, nil)
	got := subscribeAll(t, h, topic, len(presenceCases))
	for i, tc := range presenceCases {
		d := got[i]
		if d == nil {
			t.Errorf("%s: not delivered", tc.name)
			continue
		}
		// Direct field access: for an optional bytes field, nil is unset.
		if k, v := shown(d.Key), shown(d.Value); k != shown(tc.key) || v != shown(tc.value) {
			t.Errorf("%s: delivered key %s, value %s; want key %s, value %s", tc.name, k, v, shown(tc.key), shown(tc.value))
		}
	}
}

// A dead letter of a tombstone must stay a tombstone, or a replay would
// write an empty value where the source had deleted its key. The dead
// letter of each record keeps its null or empty key and value, and a replay
// writes them back to the source topic as they were.
func TestDeadLettersAndTheirReplayKeepANullKeyOrValueApartFromAnEmptyOne(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	dlqTopic := topic + ".dlq"
	testenv.DeleteTopicAtCleanup(t, bootstrap, dlqTopic)
	writeWithKgo(t, bootstrap, topic)
	h := consumerGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	group := testenv.UniqueName("g")
	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_PARTITION}, newLedger(), false)
	// One at a time (PARTITION ordering), so the dead letters land in
	// case order.
	for i := range presenceCases {
		ds := waitDeliveries(t, s, i+1)
		if _, err := h.consumer().Nack(ctx, &gatewayv1.NackRequest{Group: group, AckIds: []string{ds[i].GetAckId()}, DeadLetter: true, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	n := len(presenceCases)
	check := func(where string, recs []*kgo.Record) {
		t.Helper()
		if len(recs) != n {
			t.Fatalf("%s holds %d records, want %d", where, len(recs), n)
		}
		for _, r := range recs {
			i := kgoCaseOf(r)
			if i < 0 || i >= n {
				t.Errorf("%s: a record without its case header", where)
				continue
			}
			tc := presenceCases[i]
			if k, v := shown(r.Key), shown(r.Value); k != shown(tc.key) || v != shown(tc.value) {
				t.Errorf("%s, %s: key %s, value %s; want key %s, value %s", where, tc.name, k, v, shown(tc.key), shown(tc.value))
			}
		}
	}
	check("the dead-letter topic", readWithKgo(t, bootstrap, dlqTopic, n))

	res, err := replay(ctx, h, &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqTopic})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if res.GetReplayed() != int64(n) {
		t.Fatalf("replay = %v; want %d replayed", res, n)
	}
	check("the source topic after the replay", readWithKgo(t, bootstrap, topic, 2*n)[n:])
}

// A compacted topic deletes a key with a tombstone: a record whose value is
// null. Through the API an app could not write one: an unset value was
// written as an empty value (and an empty key as no key). Now a Record's
// unset key or value is written as null and a set one, even empty, as it
// is; what Kafka then holds, and what Subscribe delivers, says which it was.
//
// The produce leg depends on the producer engine: it must write a nil key
// or value as null and a non-nil empty one as empty.
func TestTombstonesAndEmptyValuesRoundTripThroughProduceAndSubscribe(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := consumerGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []*gatewayv1.Record
	for i, tc := range presenceCases {
		recs = append(recs, &gatewayv1.Record{Key: tc.key, Value: tc.value,
			Headers: []*gatewayv1.Header{{Key: caseHeader, Value: []byte(strconv.Itoa(i))}}})
	}
	resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	for i, r := range resp.GetResults() {
		if r.GetError() != nil {
			t.Fatalf("%s: %v", presenceCases[i].name, r.GetError())
		}
	}

	for _, r := range readWithKgo(t, bootstrap, topic, len(presenceCases)) {
		tc := presenceCases[kgoCaseOf(r)]
		if k, v := shown(r.Key), shown(r.Value); k != shown(tc.key) || v != shown(tc.value) {
			t.Errorf("in Kafka, %s: key %s, value %s", tc.name, k, v)
		}
	}
	got := subscribeAll(t, h, topic, len(presenceCases))
	for i, tc := range presenceCases {
		d := got[i]
		if d == nil {
			t.Errorf("%s: not delivered", tc.name)
			continue
		}
		if k, v := shown(d.Key), shown(d.Value); k != shown(tc.key) || v != shown(tc.value) {
			t.Errorf("delivered, %s: key %s, value %s", tc.name, k, v)
		}
	}
}
