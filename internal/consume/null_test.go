package consume

// Null keys and values (a null value is a tombstone on a compacted topic)
// kept apart from empty ones, from the fetched record to the Delivery and
// to its dead letter.

import (
	"context"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkagate/gateway/internal/rdkafka"
)

// nullOrEmpty names a key or value: "null" for nil, else its text in quotes
// ("" for a non-nil empty slice).
func nullOrEmpty(b []byte) string {
	if b == nil {
		return "null"
	}
	return `"` + string(b) + `"`
}

// nullCases are records written with each combination of a null and an
// empty key and value; franz-go writes a nil slice as null and a non-nil
// empty one as empty.
var nullCases = []struct {
	name       string
	key, value []byte
}{
	{"null key, null value", nil, nil},
	{"empty key, empty value", []byte{}, []byte{}},
	{"null key, empty value", nil, []byte{}},
	{"empty key, null value", []byte{}, nil},
	{"a key, null value", []byte("k"), nil},
}

// writeNullCases writes nullCases, in order, to partition 0 of topic t.
func writeNullCases(t *testing.T, boot string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(boot), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for _, tc := range nullCases {
		recs = append(recs, &kgo.Record{Topic: "t", Partition: 0, Key: tc.key, Value: tc.value})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// What the gateway relies on: confluent-kafka-go's consumer hands a null
// key or value over as a nil slice and an empty one as a non-nil empty
// slice (librdkafka points an empty field at its data, and cgo's GoBytes
// of no bytes is an empty, non-nil slice). If an upgrade collapsed the
// two, tombstones could no longer be told from empty values: this test
// would say so.
func TestTheKafkaClientKeepsANullKeyOrValueApartFromAnEmptyOne(t *testing.T) {
	t.Parallel()
	boot := newCluster(t, 1, 0)
	writeNullCases(t, boot)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": boot, "group.id": "raw", "log_level": 0})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topic := "t"
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range nullCases {
		m, err := c.ReadMessage(20 * time.Second)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if k, v := nullOrEmpty(m.Key), nullOrEmpty(m.Value); k != nullOrEmpty(tc.key) || v != nullOrEmpty(tc.value) {
			t.Errorf("%s: the client gave key %s, value %s", tc.name, k, v)
		}
	}
}

// A consumer of a compacted topic must see a tombstone as one: a record
// whose value is null is delivered with a nil value, an empty value with a
// non-nil empty one, and likewise for keys, from the poll loop through the
// partition log to the Delivery.
func TestDeliveriesKeepANullKeyOrValueApartFromAnEmptyOne(t *testing.T) {
	t.Parallel()
	boot := newCluster(t, 1, 0)
	writeNullCases(t, boot)
	m := newManager(t, boot, nil)
	st, err := m.Subscribe(context.Background(), SubscribeRequest{Group: "g", Topics: []string{"t"}, Ordering: OrderingPartition, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i, tc := range nullCases {
		d := next(st, 20*time.Second)
		if d == nil {
			t.Fatalf("record %d not delivered", i)
		}
		if d.Offset != int64(i) {
			t.Fatalf("delivered offset %d, want %d", d.Offset, i)
		}
		if k, v := nullOrEmpty(d.Key), nullOrEmpty(d.Value); k != nullOrEmpty(tc.key) || v != nullOrEmpty(tc.value) {
			t.Errorf("%s: delivered key %s, value %s", tc.name, k, v)
		}
		if err := m.Ack(context.Background(), "g", []string{d.AckID}); err != nil {
			t.Fatal(err)
		}
	}
}

// A fetched record's size (what flow control and the buffered-bytes gauge
// count) counts a null key or value as zero bytes.
func TestANullKeyOrValueCountsAsZeroBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range nullCases {
		msg := &rdkafka.Fetched{Topic: "t", Partition: 0, Offset: 7, Key: tc.key, Value: tc.value,
			Headers: []rdkafka.Header{{Key: "message-id", Value: []byte("m")}}}
		f := toFetched(msg, "message-id", "", 0)
		if int(f.r.size) != len(tc.key)+len(tc.value)+len("message-id")+len("m") {
			t.Errorf("%s: size %d", tc.name, f.r.size)
		}
		if k, v := nullOrEmpty(f.r.key), nullOrEmpty(f.r.value); k != nullOrEmpty(tc.key) || v != nullOrEmpty(tc.value) {
			t.Errorf("%s: fetched as key %s, value %s", tc.name, k, v)
		}
	}
}

// Under KEY ordering, records without a key (null) and records with an
// empty key are one "no key": the second waits for the first.
func TestKeyOrderingTreatsANullKeyAndAnEmptyKeyAsOneKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{ordering: OrderingKey})
	s := h.stream(10)
	h.assign(0)
	nullKey, emptyKey, other := rec(0, 0, "a", "1"), rec(0, 1, "b", "2"), rec(0, 2, "c", "3")
	nullKey.r.key, emptyKey.r.key = nil, []byte{}
	h.add(nullKey, emptyKey, other)
	first, second := h.must(s), h.must(s)
	if first.Offset != 0 || second.Offset != 2 {
		t.Fatalf("delivered offsets %d and %d first, want 0 and 2 (the empty key waits for the null one)", first.Offset, second.Offset)
	}
	if d := next(s, 200*time.Millisecond); d != nil {
		t.Fatalf("offset %d delivered while the null-key record is in flight", d.Offset)
	}
	if err := h.ack(first.AckID); err != nil {
		t.Fatal(err)
	}
	if d := h.must(s); d.Offset != 1 || d.Key == nil || len(d.Key) != 0 {
		t.Fatalf("after the ack: offset %d key %s, want offset 1 with its empty key", d.Offset, nullOrEmpty(d.Key))
	}
}

// A dead letter keeps its record's key and value as they are: the dead
// letter of a tombstone is a tombstone (null value), of an empty value an
// empty value, so a replay writes back what was read.
func TestADeadLetterKeepsANullKeyOrValueApartFromAnEmptyOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	s := h.stream(10)
	h.assign(0)
	for i, tc := range nullCases {
		f := rec(0, int64(i), "m"+string(rune('0'+i)), "")
		f.r.key, f.r.value = tc.key, tc.value
		h.add(f)
	}
	for range nullCases {
		d := h.must(s)
		if err := h.nack(NackOptions{DeadLetter: true, Reason: "poison"}, d.AckID); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every dead letter", func() bool { return len(h.prod.records("t.dlq")) == len(nullCases) })
	for i, dl := range h.prod.records("t.dlq") {
		tc := nullCases[i]
		if k, v := nullOrEmpty(dl.Key), nullOrEmpty(dl.Value); k != nullOrEmpty(tc.key) || v != nullOrEmpty(tc.value) {
			t.Errorf("%s: dead letter with key %s, value %s", tc.name, k, v)
		}
	}
}
