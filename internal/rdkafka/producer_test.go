package rdkafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkagate/gateway/internal/testenv"
)

// newCluster starts an in-process broker with the given topics of
// partitions partitions each; it stops when the test ends.
func newCluster(t *testing.T, partitions int32, topics ...string) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

// newProducer makes a producer on boot with extra properties; it is closed
// when the test ends.
func newProducer(t testing.TB, boot string, extra map[string]string) *Producer {
	t.Helper()
	props := map[string]string{"bootstrap.servers": boot, "linger.ms": "1"}
	for k, v := range extra {
		props[k] = v
	}
	p, err := NewProducer(props)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// reportsFor polls p until n reports have arrived (failing after a minute)
// and returns them; it fails on a report whose opaque is not in want, or a
// second report for one.
func reportsFor(t testing.TB, p *Producer, n int) []Report {
	t.Helper()
	var out []Report
	deadline := time.Now().Add(time.Minute)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivery reports after a minute", len(out), n)
		}
		out = p.Poll(100*time.Millisecond, out)
	}
	// Anything more would be a second report.
	out = p.Poll(0, out)
	if len(out) != n {
		t.Fatalf("%d delivery reports, want %d", len(out), n)
	}
	return out
}

// byOpaque indexes reports by opaque, failing on a duplicate.
func byOpaque(t testing.TB, reps []Report) map[uint64]Report {
	t.Helper()
	m := make(map[uint64]Report, len(reps))
	for _, r := range reps {
		if _, dup := m[r.Opaque]; dup {
			t.Fatalf("two delivery reports for opaque %d", r.Opaque)
		}
		m[r.Opaque] = r
	}
	return m
}

// readBack reads every record of topic with franz-go, which keeps null apart
// from empty, until it has n.
func readBack(t testing.TB, boot, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(boot), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(recs), n, topic)
		}
		fs.EachError(func(topic string, part int32, err error) { t.Logf("fetch %s/%d: %v", topic, part, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

type partOffset struct {
	part   int32
	offset int64
}

// The round trip a caller relies on: every enqueued record gets exactly one
// report with its own opaque, the partition and offset it was written at,
// and what the broker holds there is what was sent: null keys, values and
// header values stay null, empty ones stay empty, headers keep their order,
// an explicit timestamp is kept.
func roundTrip(t *testing.T, boot, topic string, partitions int32) {
	p := newProducer(t, boot, nil)
	ts := time.Now().Add(-time.Hour).UnixMilli()
	var msgs []Message
	for i := range 60 {
		m := Message{Partition: PartitionAny, Opaque: uint64(1000 + i), Timestamp: ts + int64(i)}
		switch i % 6 {
		case 0:
			m.Key, m.Value = nil, nil // null key, tombstone
		case 1:
			m.Key, m.Value = []byte{}, []byte{} // empty key and value
		case 2:
			m.Key, m.Value = []byte(fmt.Sprintf("k%d", i)), bytes.Repeat([]byte{byte(i)}, 3*i)
		case 3:
			m.Value = []byte("explicit partition")
			m.Partition = int32(i) % partitions
		case 4:
			m.Key, m.Value = []byte("same"), []byte("now")
			m.Timestamp = 0
		case 5:
			m.Value = []byte("headers")
		}
		if i%2 == 1 {
			m.Headers = []Header{
				{Key: "message-id", Value: []byte(fmt.Sprintf("%036d", i))},
				{Key: "null", Value: nil},
				{Key: "empty", Value: []byte{}},
				{Key: "message-id", Value: []byte("second of the same name")},
				{Key: "", Value: []byte("empty name")},
			}
		}
		msgs = append(msgs, m)
	}
	before := time.Now().Add(-time.Minute).UnixMilli()
	// Two calls, so the second reuses the first's buffers.
	for _, part := range [][]Message{msgs[:25], msgs[25:]} {
		if n, err := p.Produce(topic, part); n != len(part) || err != nil {
			t.Fatalf("Produce = %d, %v; want %d, nil", n, err, len(part))
		}
	}
	reps := byOpaque(t, reportsFor(t, p, len(msgs)))
	at := map[partOffset]Message{}
	for _, m := range msgs {
		r, ok := reps[m.Opaque]
		if !ok {
			t.Fatalf("no report for opaque %d", m.Opaque)
		}
		if r.Err != ErrNoError || r.Status != Persisted || r.Offset < 0 {
			t.Fatalf("report %+v: want a persisted message", r)
		}
		if m.Partition != PartitionAny && r.Partition != m.Partition {
			t.Fatalf("opaque %d reported on partition %d, sent to %d", m.Opaque, r.Partition, m.Partition)
		}
		at[partOffset{r.Partition, r.Offset}] = m
	}
	if len(at) != len(msgs) {
		t.Fatalf("%d distinct partition/offset pairs for %d messages", len(at), len(msgs))
	}
	logEnds := map[int32]int64{}
	for po := range at {
		logEnds[po.part] = max(logEnds[po.part], po.offset+1)
	}
	checkLogEnds(t, boot, topic, partitions, logEnds)
	for _, rec := range readBack(t, boot, topic, len(msgs)) {
		m, ok := at[partOffset{rec.Partition, rec.Offset}]
		if !ok {
			t.Fatalf("record at %d/%d was never reported", rec.Partition, rec.Offset)
		}
		what := fmt.Sprintf("opaque %d at %d/%d", m.Opaque, rec.Partition, rec.Offset)
		sameBytes(t, what+" key", rec.Key, m.Key)
		sameBytes(t, what+" value", rec.Value, m.Value)
		if len(rec.Headers) != len(m.Headers) {
			t.Fatalf("%s: %d headers, sent %d", what, len(rec.Headers), len(m.Headers))
		}
		for i, h := range m.Headers {
			if rec.Headers[i].Key != h.Key {
				t.Fatalf("%s: header %d is %q, sent %q", what, i, rec.Headers[i].Key, h.Key)
			}
			sameBytes(t, fmt.Sprintf("%s header %d", what, i), rec.Headers[i].Value, h.Value)
		}
		got := rec.Timestamp.UnixMilli()
		if m.Timestamp != 0 && got != m.Timestamp {
			t.Fatalf("%s: timestamp %d, sent %d", what, got, m.Timestamp)
		}
		if m.Timestamp == 0 && got < before {
			t.Fatalf("%s: timestamp %d, want the time it was sent", what, got)
		}
	}
}

// checkLogEnds asks, for every partition at once, the offset of "the
// latest" (OffsetsForTimes with OffsetEnd, as the consumer's fetch watcher
// does): each is the partition's log end, want's (0 for a partition
// without records).
func checkLogEnds(t *testing.T, boot, topic string, partitions int32, want map[int32]int64) {
	t.Helper()
	c, err := NewConsumer(map[string]string{"bootstrap.servers": boot, "group.id": "log-ends", "log_level": "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	tps := make([]TopicPartition, partitions)
	for i := range tps {
		tps[i] = TopicPartition{Topic: topic, Partition: int32(i), Offset: OffsetEnd}
	}
	ends, err := c.OffsetsForTimes(tps, 10*time.Second)
	if err != nil || len(ends) != len(tps) {
		t.Fatalf("OffsetsForTimes(latest) = %+v, %v", ends, err)
	}
	for _, e := range ends {
		if e.Err != ErrNoError || e.Offset != want[e.Partition] {
			t.Errorf("partition %d: latest offset %d (err %v), want its log end %d", e.Partition, e.Offset, e.Err, want[e.Partition])
		}
	}
}

// sameBytes fails unless got and want are equal and both null or both not.
func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if (got == nil) != (want == nil) || !bytes.Equal(got, want) {
		t.Fatalf("%s: got %s, sent %s", what, show(got), show(want))
	}
}

func show(b []byte) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprintf("%q", b)
}

func TestEveryRecordIsReportedOnceAndReadsBackAsSent(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 3, "t")
	roundTrip(t, boot, "t", 3)
}

func TestEveryRecordIsReportedOnceAndReadsBackAsSentOnTheRealBroker(t *testing.T) {
	t.Parallel()
	boot := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, boot, 3)
	roundTrip(t, boot, topic, 3)
}

// With a local queue of 10 messages, a call of 25 stops at index 10 with
// ErrQueueFull; the caller polls the reports and calls again with the rest,
// and every record ends up written once, in the order of the calls.
func TestQueueFullStopsAtItsIndexAndTheRestGoesInOnRetry(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 1, "t")
	p := newProducer(t, boot, map[string]string{"queue.buffering.max.messages": "10"})
	msgs := make([]Message, 25)
	for i := range msgs {
		msgs[i] = Message{Partition: 0, Value: []byte(fmt.Sprint(i)), Opaque: uint64(i)}
	}
	var reps []Report
	rest := msgs
	for calls := 0; len(rest) > 0; calls++ {
		n, err := p.Produce("t", rest)
		if n < len(rest) {
			var e *Error
			if !errors.As(err, &e) || e.Code != ErrQueueFull {
				t.Fatalf("Produce stopped at %d with %v; want ErrQueueFull", n, err)
			}
			if n != 10 {
				t.Fatalf("Produce stopped at %d of %d; the queue holds 10", n, len(rest))
			}
		} else if err != nil {
			t.Fatalf("Produce = %d, %v", n, err)
		}
		if calls == 0 && n != 10 {
			t.Fatalf("the first call enqueued %d, want 10", n)
		}
		rest = rest[n:]
		// Wait for the queue to empty before calling again.
		for p.Len() > 0 {
			reps = p.Poll(50*time.Millisecond, reps)
		}
		reps = p.Poll(0, reps)
	}
	if len(byOpaque(t, reps)) != len(msgs) {
		t.Fatalf("%d reports for %d messages", len(reps), len(msgs))
	}
	for i, r := range reps {
		if r.Opaque != uint64(i) || r.Offset != int64(i) || r.Err != ErrNoError {
			t.Fatalf("report %d = %+v; want opaque and offset %d, no error", i, r, i)
		}
	}
	for i, rec := range readBack(t, boot, "t", len(msgs)) {
		if string(rec.Value) != fmt.Sprint(i) {
			t.Fatalf("record %d holds %q", i, rec.Value)
		}
	}
}

// A message for a partition the topic does not have is refused at its
// index once the topic's partitions are known; the messages before it are
// enqueued and reported, nothing after it is enqueued.
func TestAnUnknownExplicitPartitionIsRefusedAtItsIndex(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 2, "t")
	p := newProducer(t, boot, nil)
	if n, err := p.Partitions("t", 10*time.Second); n != 2 || err != nil {
		t.Fatalf("Partitions = %d, %v; want 2", n, err)
	}
	msgs := []Message{{Partition: 1, Opaque: 1}, {Partition: 7, Opaque: 2}, {Partition: 0, Opaque: 3}}
	n, err := p.Produce("t", msgs)
	var e *Error
	if n != 1 || !errors.As(err, &e) || e.Code != ErrUnknownPartition {
		t.Fatalf("Produce = %d, %v; want 1, unknown partition", n, err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "unknown partition") {
		t.Fatalf("error %q does not describe the refusal", err)
	}
	reps := reportsFor(t, p, 1)
	if reps[0].Opaque != 1 || reps[0].Err != ErrNoError {
		t.Fatalf("report %+v; want the first message written", reps[0])
	}
}

// A message larger than message.max.bytes is refused at its index with
// ErrMsgSizeTooLarge.
func TestAMessageTooLargeIsRefusedAtItsIndex(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 1, "t")
	p := newProducer(t, boot, map[string]string{"message.max.bytes": "2000"})
	msgs := []Message{{Value: []byte("small"), Opaque: 1}, {Value: make([]byte, 5000), Opaque: 2}}
	n, err := p.Produce("t", msgs)
	var e *Error
	if n != 1 || !errors.As(err, &e) || e.Code != ErrMsgSizeTooLarge {
		t.Fatalf("Produce = %d, %v; want 1, message size too large", n, err)
	}
	reportsFor(t, p, 1)
}

// A header key with a NUL byte cannot be passed to librdkafka (it would be
// cut short): the message is refused at its index before any cgo call sees it.
func TestAHeaderKeyWithANULByteIsRefusedAtItsIndex(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 1, "t")
	p := newProducer(t, boot, nil)
	msgs := []Message{{Opaque: 1}, {Opaque: 2}, {Opaque: 3, Headers: []Header{{Key: "a\x00b"}}}}
	n, err := p.Produce("t", msgs)
	var e *Error
	if n != 2 || !errors.As(err, &e) || e.Code != ErrInvalidArg {
		t.Fatalf("Produce = %d, %v; want 2, invalid argument", n, err)
	}
	reportsFor(t, p, 2)
}

// An empty topic name is refused before librdkafka sees it: producing to
// one made a librdkafka thread crash the process against the in-process
// broker. A name with a NUL byte is refused too: C would cut it short.
func TestAnInvalidTopicNameIsRefused(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 1, "t")
	p := newProducer(t, boot, nil)
	for _, name := range []string{"", "t\x00x"} {
		n, err := p.Produce(name, []Message{{Opaque: 1}})
		var e *Error
		if n != 0 || !errors.As(err, &e) || e.Code != ErrInvalidArg {
			t.Fatalf("Produce(%q) = %d, %v; want invalid argument", name, n, err)
		}
		if _, err := p.Partitions(name, time.Second); !errors.As(err, &e) || e.Code != ErrInvalidArg {
			t.Fatalf("Partitions(%q) = %v; want invalid argument", name, err)
		}
	}
	if reps := p.Poll(100*time.Millisecond, nil); len(reps) != 0 {
		t.Fatalf("reports %+v for refused messages", reps)
	}
}

func TestRefusedPropertiesAreNamed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  []string // in the error
	}{
		{"unknown key", map[string]string{"no.such.property": "1"}, []string{`"no.such.property"`}},
		{"bad value", map[string]string{"linger.ms": "soon"}, []string{`"linger.ms"`}},
		{"first bad key of several", map[string]string{"acks": "all", "zz.unknown": "1", "linger.ms": "x"}, []string{`"linger.ms"`}},
		{"go.* key", map[string]string{"go.delivery.reports": "false"}, []string{`"go.delivery.reports"`}},
		{"callback property", map[string]string{"dr_msg_cb": "x"}, []string{`"dr_msg_cb"`}},
		{"reports only for errors", map[string]string{"delivery.report.only.error": "true"}, []string{`"delivery.report.only.error"`}},
		{"idempotence with acks=1", map[string]string{"enable.idempotence": "true", "acks": "1"}, []string{"acks", "idempotence"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewProducer(tc.props)
			if err == nil {
				p.Close()
				t.Fatal("NewProducer accepted the properties")
			}
			var e *Error
			if !errors.As(err, &e) || e.Code == ErrNoError {
				t.Fatalf("error %v (%T) carries no code", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

// Purge accounts for every message: those still queued are reported as
// purged and certainly not written; those sent and waiting for an answer as
// purged in flight, possibly written. Nothing is lost silently, and Close
// then returns although the broker never answered.
func TestPurgeReportsEveryMessage(t *testing.T) {
	t.Parallel()
	c, boot := newCluster(t, 1, "t")
	// The broker swallows every produce request: it never answers. It
	// tells how many records the first one carried (librdkafka may send
	// the first request before all ten records are queued).
	sent := make(chan int, 1)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n := 0
		for _, tt := range req.(*kmsg.ProduceRequest).Topics {
			for _, pp := range tt.Partitions {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(pp.Records); err == nil {
					n += int(b.NumRecords)
				}
			}
		}
		select {
		case sent <- n:
		default:
		}
		return nil, nil, true
	})
	p, err := NewProducer(map[string]string{"bootstrap.servers": boot, "linger.ms": "0",
		"max.in.flight.requests.per.connection": "1", "message.timeout.ms": "300000"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	first := make([]Message, 10)
	for i := range first {
		first[i] = Message{Partition: 0, Value: []byte("in flight"), Opaque: uint64(i)}
	}
	if n, err := p.Produce("t", first); n != 10 || err != nil {
		t.Fatalf("Produce = %d, %v", n, err)
	}
	var inFlight int
	select {
	case inFlight = <-sent:
	case <-time.After(time.Minute):
		t.Fatal("no produce request reached the broker")
	}
	if inFlight < 1 || inFlight > 10 {
		t.Fatalf("the first produce request carried %d records", inFlight)
	}
	second := make([]Message, 10)
	for i := range second {
		second[i] = Message{Partition: 0, Value: []byte("queued"), Opaque: uint64(100 + i)}
	}
	if n, err := p.Produce("t", second); n != 10 || err != nil {
		t.Fatalf("Produce = %d, %v", n, err)
	}
	if err := p.Purge(true); err != nil {
		t.Fatal(err)
	}
	reps := byOpaque(t, reportsFor(t, p, 20))
	for _, r := range reps {
		switch r.Err {
		case ErrPurgeInflight:
			if r.Status != PossiblyPersisted {
				t.Fatalf("purged in flight %+v: want possibly persisted", r)
			}
		case ErrPurgeQueue:
			if r.Status != NotPersisted {
				t.Fatalf("purged from the queue %+v: want not persisted", r)
			}
		default:
			t.Fatalf("report %+v: want a purge", r)
		}
		if r.Offset != -1 {
			t.Fatalf("report %+v: a purged message has no offset", r)
		}
	}
	for op := range uint64(inFlight) {
		if reps[op].Err != ErrPurgeInflight {
			t.Fatalf("opaque %d, sent and unanswered, reported %v", op, reps[op].Err)
		}
	}
	for op := uint64(inFlight); op < 10; op++ {
		if reps[op].Err != ErrPurgeQueue {
			t.Fatalf("opaque %d, queued behind the request in flight, reported %v", op, reps[op].Err)
		}
	}
	for op := uint64(100); op < 110; op++ {
		if reps[op].Err != ErrPurgeQueue {
			t.Fatalf("opaque %d, queued behind the request in flight, reported %v", op, reps[op].Err)
		}
	}
	if p.Len() != 0 {
		t.Fatalf("Len = %d after every report", p.Len())
	}
	p.Close()
	p.Close() // idempotent
	if n, err := p.Produce("t", first); n != 0 || err == nil {
		t.Fatalf("Produce after Close = %d, %v; want an error", n, err)
	}
	if got := p.Poll(0, nil); len(got) != 0 {
		t.Fatalf("Poll after Close = %v", got)
	}
}

// Close with messages still held (the broker never answers) purges them and
// returns; it does not wait for message.timeout.ms.
func TestCloseReturnsWithMessagesStillHeld(t *testing.T) {
	t.Parallel()
	c, boot := newCluster(t, 1, "t")
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, true
	})
	p, err := NewProducer(map[string]string{"bootstrap.servers": boot, "message.timeout.ms": "300000"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Produce("t", make([]Message, 100)); n != 100 || err != nil {
		t.Fatalf("Produce = %d, %v", n, err)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Close did not return")
	}
}

// Statistics documents and log lines reach the caller through Events.
func TestStatisticsAndLogsArriveThroughEvents(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 1, "t")
	p := newProducer(t, boot, map[string]string{"statistics.interval.ms": "100", "debug": "msg,broker"})
	if n, err := p.Produce("t", []Message{{Value: []byte("v"), Opaque: 7}}); n != 1 || err != nil {
		t.Fatalf("Produce = %d, %v", n, err)
	}
	var logs []LogLine
	var stats []string
	deadline := time.Now().Add(time.Minute)
	for len(stats) == 0 || len(logs) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d log lines, %d statistics documents", len(logs), len(stats))
		}
		p.Poll(100*time.Millisecond, nil)
		l, s, _ := p.Events()
		logs, stats = append(logs, l...), append(stats, s...)
	}
	if !strings.HasPrefix(stats[0], "{") || !strings.Contains(stats[0], `"type": "producer"`) && !strings.Contains(stats[0], `"type":"producer"`) {
		t.Fatalf("statistics document %.200q is not a producer's", stats[0])
	}
	for _, l := range logs {
		if l.Facility == "" || l.Message == "" || l.Level < 0 || l.Level > 7 {
			t.Fatalf("log line %+v", l)
		}
	}
	// Events clears what it returned.
	for range 3 {
		l, _, _ := p.Events()
		if len(l) > 0 && l[0] == logs[0] {
			t.Fatal("Events returned a line twice")
		}
	}
}

// Client errors reach the caller through Events: a broker that cannot be
// reached is a transport error; a fatal error names its real cause.
func TestClientErrorsArriveThroughEvents(t *testing.T) {
	t.Parallel()
	t.Run("unreachable broker", func(t *testing.T) {
		t.Parallel()
		p := newProducer(t, "127.0.0.1:1", nil)
		errs := waitErrors(t, p, func(e ClientError) bool { return e.Code == ErrTransport || e.Code == ErrAllBrokersDown })
		for _, e := range errs {
			if e.Fatal {
				t.Fatalf("%+v: an unreachable broker is not fatal", e)
			}
		}
	})
	t.Run("fatal", func(t *testing.T) {
		t.Parallel()
		_, boot := newCluster(t, 1, "t")
		p := newProducer(t, boot, map[string]string{"enable.idempotence": "true"})
		if code := p.testFatalError(ErrOutOfOrderSequenceNumber, "sequence gap for the test"); code != ErrNoError {
			t.Fatalf("raising a fatal error: %v", code)
		}
		errs := waitErrors(t, p, func(e ClientError) bool { return e.Fatal })
		for _, e := range errs {
			if e.Fatal && (e.Code != ErrOutOfOrderSequenceNumber || !strings.Contains(e.Message, "sequence gap for the test")) {
				t.Fatalf("fatal error %+v: want its real code and reason", e)
			}
		}
		// A producer in a fatal state refuses to produce, with the fatal
		// error's code.
		n, err := p.Produce("t", []Message{{Opaque: 1}})
		var e *Error
		if n != 0 || !errors.As(err, &e) || e.Code != ErrOutOfOrderSequenceNumber {
			t.Fatalf("Produce after a fatal error = %d, %v; want the fatal error", n, err)
		}
	})
}

// waitErrors polls until a client error matches, and returns every one seen.
func waitErrors(t *testing.T, p *Producer, match func(ClientError) bool) []ClientError {
	t.Helper()
	var all []ClientError
	deadline := time.Now().Add(time.Minute)
	for !slices.ContainsFunc(all, match) {
		if time.Now().After(deadline) {
			t.Fatalf("no matching client error after a minute; saw %+v", all)
		}
		p.Poll(100*time.Millisecond, nil)
		_, _, errs := p.Events()
		all = append(all, errs...)
	}
	return all
}

func TestPartitionsOfAKnownAndAnUnknownTopic(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 5, "t")
	p := newProducer(t, boot, nil)
	if n, err := p.Partitions("t", 10*time.Second); n != 5 || err != nil {
		t.Fatalf("Partitions(t) = %d, %v; want 5", n, err)
	}
	n, err := p.Partitions("missing", 10*time.Second)
	var e *Error
	if n != 0 || !errors.As(err, &e) || (e.Code != ErrUnknownTopicOrPart && e.Code != ErrUnknownTopic) {
		t.Fatalf("Partitions(missing) = %d, %v; want unknown topic", n, err)
	}
	if !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("error %q does not name the topic", err)
	}
}

// Brokers lists the cluster's brokers, and fails with a call-level error
// when none answers in time.
func TestBrokersOfAReachableAndAnUnreachableCluster(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	p := newProducer(t, c.ListenAddrs()[0], nil)
	if n, err := p.Brokers(10 * time.Second); n != 3 || err != nil {
		t.Fatalf("Brokers() = %d, %v; want 3", n, err)
	}

	// A port nothing listens on.
	down := newProducer(t, "127.0.0.1:1", nil)
	n, err := down.Brokers(300 * time.Millisecond)
	var e *Error
	if n != 0 || !errors.As(err, &e) || e.Code == ErrNoError {
		t.Fatalf("Brokers() with no broker = %d, %v; want an error", n, err)
	}
}

// Several goroutines produce at once while one goroutine polls: every
// record gets exactly one report, with its own opaque.
func TestConcurrentProducersWhileOnePolls(t *testing.T) {
	t.Parallel()
	_, boot := newCluster(t, 4, "a", "b")
	p := newProducer(t, boot, map[string]string{"queue.buffering.max.messages": "500", "debug": "msg"})
	const writers, batches, per = 4, 50, 100
	total := writers * batches * per
	var enqueued atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := []string{"a", "b"}[w%2]
			msgs := make([]Message, per)
			for b := range batches {
				for i := range msgs {
					op := uint64((w*batches+b)*per + i)
					msgs[i] = Message{Partition: PartitionAny, Key: []byte(fmt.Sprint(op)), Value: []byte("v"),
						Headers: []Header{{Key: "w", Value: []byte(fmt.Sprint(w))}}, Opaque: op}
				}
				rest := msgs
				for len(rest) > 0 {
					n, err := p.Produce(topic, rest)
					enqueued.Add(int64(n))
					rest = rest[n:]
					var e *Error
					if errors.As(err, &e) && e.Code == ErrQueueFull {
						time.Sleep(time.Millisecond)
					} else if err != nil {
						t.Errorf("Produce: %v", err)
						return
					}
				}
			}
		}()
	}
	// Another goroutine takes events and asks for the queue length meanwhile.
	stop := make(chan struct{})
	var side sync.WaitGroup
	side.Add(1)
	go func() {
		defer side.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.Events()
			if p.Len() < 0 {
				t.Error("negative Len")
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); side.Wait() }()
	seen := make(map[uint64]bool, total)
	var reps []Report
	deadline := time.Now().Add(2 * time.Minute)
	for len(seen) < total && time.Now().Before(deadline) {
		reps = p.Poll(20*time.Millisecond, reps[:0])
		for _, r := range reps {
			if seen[r.Opaque] {
				t.Fatalf("second report for opaque %d", r.Opaque)
			}
			if r.Err != ErrNoError {
				t.Fatalf("report %+v", r)
			}
			seen[r.Opaque] = true
		}
	}
	wg.Wait()
	if len(seen) != total || enqueued.Load() != int64(total) {
		t.Fatalf("%d reports, %d enqueued, want %d", len(seen), enqueued.Load(), total)
	}
	if extra := p.Poll(0, nil); len(extra) != 0 {
		t.Fatalf("%d reports more than messages", len(extra))
	}
}
