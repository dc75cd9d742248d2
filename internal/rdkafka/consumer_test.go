package rdkafka

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// newConsumer makes a consumer of group on boot, subscribed to topics; it is
// destroyed when the test ends.
func newConsumer(t testing.TB, boot, group string, topics ...string) *Consumer {
	t.Helper()
	c, err := NewConsumer(map[string]string{
		"bootstrap.servers":                  boot,
		"group.id":                           group,
		"auto.offset.reset":                  "earliest",
		"enable.auto.commit":                 "false",
		"enable.auto.offset.store":           "false",
		"partition.assignment.strategy":      "cooperative-sticky",
		"session.timeout.ms":                 "6000",
		"heartbeat.interval.ms":              "200",
		"topic.metadata.refresh.interval.ms": "1000",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Destroy)
	if err := c.Subscribe(topics); err != nil {
		t.Fatal(err)
	}
	return c
}

// member polls a consumer and applies its rebalances, as a group member
// does, keeping what it saw.
type member struct {
	c        *Consumer
	records  []Fetched
	assigned map[string]bool // "topic/partition"
	events   []EventKind
}

func newMember(c *Consumer) *member { return &member{c: c, assigned: make(map[string]bool)} }

func (m *member) poll(t testing.TB) {
	t.Helper()
	var ev *ConsumerEvent
	m.records, ev = m.c.Poll(50*time.Millisecond, 512, m.records)
	if ev == nil {
		return
	}
	m.events = append(m.events, ev.Kind)
	switch ev.Kind {
	case Assigned:
		for _, tp := range ev.Partitions {
			m.assigned[fmt.Sprintf("%s/%d", tp.Topic, tp.Partition)] = true
		}
		if err := m.c.IncrementalAssign(ev.Partitions); err != nil {
			t.Fatalf("incremental assign: %v", err)
		}
	case Revoked:
		for _, tp := range ev.Partitions {
			delete(m.assigned, fmt.Sprintf("%s/%d", tp.Topic, tp.Partition))
		}
		if err := m.c.IncrementalUnassign(ev.Partitions); err != nil {
			t.Fatalf("incremental unassign: %v", err)
		}
	}
}

// until polls the members until done holds, failing after a minute.
func until(t testing.TB, what string, done func() bool, ms ...*member) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %s", what)
		}
		for _, m := range ms {
			m.poll(t)
		}
	}
}

// A record's key, value and header values come back exactly: null is not
// empty, bytes are the record's own, headers keep their order, and the
// timestamp is the one produced.
func TestAConsumerFetchesRecordsAsTheyWereWritten(t *testing.T) {
	_, boot := newCluster(t, 1, "t")
	p := newProducer(t, boot, nil)
	ts := time.UnixMilli(1_700_000_000_123)
	msgs := []Message{
		{Partition: 0, Key: nil, Value: []byte("v0"), Timestamp: ts.UnixMilli()},
		{Partition: 0, Key: []byte{}, Value: []byte{}, Timestamp: ts.UnixMilli()},
		{Partition: 0, Key: []byte("k2"), Value: nil, Timestamp: ts.UnixMilli(),
			Headers: []Header{{Key: "message-id", Value: []byte("id-2")}, {Key: "null", Value: nil}, {Key: "empty", Value: []byte{}}}},
	}
	for i := range 300 {
		msgs = append(msgs, Message{Partition: 0, Key: []byte(fmt.Sprintf("k%d", i+3)), Value: bytes.Repeat([]byte{byte(i)}, i), Timestamp: ts.UnixMilli()})
	}
	for i := range msgs {
		msgs[i].Opaque = uint64(i)
	}
	if n, err := p.Produce("t", msgs); err != nil || n != len(msgs) {
		t.Fatalf("produce: %d, %v", n, err)
	}
	for _, r := range reportsFor(t, p, len(msgs)) {
		if r.Err != ErrNoError {
			t.Fatalf("report %+v", r)
		}
	}

	m := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "every record fetched", func() bool { return len(m.records) >= len(msgs) }, m)
	if len(m.records) != len(msgs) {
		t.Fatalf("%d records, want %d", len(m.records), len(msgs))
	}
	for i, r := range m.records {
		w := msgs[i]
		if r.Topic != "t" || r.Partition != 0 || r.Offset != int64(i) {
			t.Fatalf("record %d at %s/%d@%d", i, r.Topic, r.Partition, r.Offset)
		}
		if (r.Key == nil) != (w.Key == nil) || !bytes.Equal(r.Key, w.Key) {
			t.Errorf("record %d key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, w.Key, w.Key == nil)
		}
		if (r.Value == nil) != (w.Value == nil) || !bytes.Equal(r.Value, w.Value) {
			t.Errorf("record %d value %q (nil %v), want %q (nil %v)", i, r.Value, r.Value == nil, w.Value, w.Value == nil)
		}
		if !r.Timestamp.Equal(ts) {
			t.Errorf("record %d timestamp %v, want %v", i, r.Timestamp, ts)
		}
		if len(r.Headers) != len(w.Headers) {
			t.Fatalf("record %d headers %v, want %v", i, r.Headers, w.Headers)
		}
		for j, h := range r.Headers {
			wh := w.Headers[j]
			if h.Key != wh.Key || (h.Value == nil) != (wh.Value == nil) || !bytes.Equal(h.Value, wh.Value) {
				t.Errorf("record %d header %d %q=%q (nil %v), want %q=%q", i, j, h.Key, h.Value, h.Value == nil, wh.Key, wh.Value)
			}
		}
	}
	// A record's bytes are its own: writing one record's value leaves the
	// next record's key as it was.
	a, b := m.records[10], m.records[11]
	for i := range a.Value {
		a.Value[i] = 0xff
	}
	if string(b.Key) != "k11" {
		t.Fatalf("changing one record's value changed the next one's key to %q", b.Key)
	}
}

// Offsets committed with metadata come back with it through
// CommittedOffsets, to this member and to the next member of the group.
func TestCommittedOffsetsKeepTheirMetadata(t *testing.T) {
	_, boot := newCluster(t, 2, "t")
	m := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "both partitions assigned", func() bool { return len(m.assigned) == 2 }, m)
	res, err := m.c.Commit([]TopicPartition{{Topic: "t", Partition: 0, Offset: 0, Metadata: "kg1:some-gaps"}, {Topic: "t", Partition: 1, Offset: 0}})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	for _, r := range res {
		if r.Err != ErrNoError {
			t.Fatalf("commit of %s/%d: %v", r.Topic, r.Partition, r.Err)
		}
	}
	got, err := m.c.CommittedOffsets([]TopicPartition{{Topic: "t", Partition: 0}, {Topic: "t", Partition: 1}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Offset != 0 || got[0].Metadata != "kg1:some-gaps" || got[1].Offset != 0 || got[1].Metadata != "" {
		t.Fatalf("committed %+v", got)
	}

	// StoreOffsets of an assigned partition is accepted; of one not
	// assigned, refused per partition.
	res, err = m.c.StoreOffsets([]TopicPartition{{Topic: "t", Partition: 0, Offset: 0, Metadata: "kg1:x"}, {Topic: "t", Partition: 7, Offset: 0}})
	if err == nil && res[1].Err == ErrNoError {
		t.Fatalf("storing the offset of a partition not assigned succeeded: %+v", res)
	}
	if res[0].Err != ErrNoError {
		t.Fatalf("storing the offset of an assigned partition: %v", res[0].Err)
	}
}

// A second member makes the group rebalance: the first gets a revocation
// and the second an assignment, in Poll's events; when the first leaves
// (BeginClose, polling and applying what Poll returns until Closed), the
// second gets every partition.
func TestRebalancesArriveAsEventsAndCloseLeavesTheGroup(t *testing.T) {
	_, boot := newCluster(t, 4, "t")
	a := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "a owns all four partitions", func() bool { return len(a.assigned) == 4 }, a)
	if a.c.RebalanceProtocol() != "COOPERATIVE" {
		t.Fatalf("rebalance protocol %q", a.c.RebalanceProtocol())
	}
	b := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "the partitions split between a and b", func() bool {
		return len(a.assigned) > 0 && len(b.assigned) > 0 && len(a.assigned)+len(b.assigned) == 4
	}, a, b)
	if len(a.events) < 2 || a.events[0] != Assigned || a.events[1] != Revoked {
		t.Fatalf("a's events %v: want an assignment then a revocation", a.events)
	}
	if err := a.c.BeginClose(); err != nil {
		t.Fatal(err)
	}
	// librdkafka hands the closing member its revocation only when the
	// group was not between an assignment and its assign call; either way
	// the member closes, and the group gives b what a held.
	until(t, "a closed", a.c.Closed, a)
	a.c.Destroy()
	until(t, "b owns all four partitions", func() bool { return len(b.assigned) == 4 }, b)
}

// A paused partition is not fetched until it is resumed; Seek moves an
// assigned partition back; watermarks are read from the broker.
func TestPauseResumeSeekAndWatermarks(t *testing.T) {
	_, boot := newCluster(t, 2, "t")
	p := newProducer(t, boot, nil)
	produce := func(part int32, n int) {
		msgs := make([]Message, n)
		for i := range msgs {
			msgs[i] = Message{Partition: part, Value: []byte("v"), Opaque: uint64(i)}
		}
		if _, err := p.Produce("t", msgs); err != nil {
			t.Fatal(err)
		}
		reportsFor(t, p, n)
	}
	produce(0, 5)
	produce(1, 5)
	m := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "10 records", func() bool { return len(m.records) == 10 }, m)
	if err := m.c.Pause([]TopicPartition{{Topic: "t", Partition: 1}}); err != nil {
		t.Fatal(err)
	}
	produce(0, 3)
	produce(1, 3)
	until(t, "partition 0's new records", func() bool { return len(m.records) == 13 }, m)
	for range 20 {
		m.poll(t)
	}
	for _, r := range m.records[10:] {
		if r.Partition == 1 {
			t.Fatalf("a record of the paused partition was fetched: offset %d", r.Offset)
		}
	}
	if err := m.c.Resume([]TopicPartition{{Topic: "t", Partition: 1}}); err != nil {
		t.Fatal(err)
	}
	until(t, "partition 1's new records after resume", func() bool { return len(m.records) == 16 }, m)

	res, err := m.c.Seek([]TopicPartition{{Topic: "t", Partition: 0, Offset: 2}}, 5*time.Second)
	if err != nil || len(res) != 1 || res[0].Err != ErrNoError {
		t.Fatalf("seek: %+v, %v", res, err)
	}
	until(t, "partition 0 read again from offset 2", func() bool { return len(m.records) == 22 }, m)
	if r := m.records[16]; r.Partition != 0 || r.Offset != 2 {
		t.Fatalf("after the seek, first record %d@%d", r.Partition, r.Offset)
	}
	pos, err := m.c.Position([]TopicPartition{{Topic: "t", Partition: 0}})
	if err != nil || pos[0].Offset != 8 {
		t.Fatalf("position %+v, %v; want 8", pos, err)
	}
	lo, hi, err := m.c.QueryWatermarks("t", 0, 5*time.Second)
	if err != nil || lo != 0 || hi != 8 {
		t.Fatalf("watermarks %d %d %v; want 0 8", lo, hi, err)
	}
	if _, hi, err := m.c.CachedWatermarks("t", 0); err != nil || hi < 0 {
		t.Fatalf("cached watermarks %d, %v", hi, err)
	}
}

// A resume wakes the broker thread that fetches the partition. librdkafka
// applies a resume on its main thread and leaves that broker thread asleep
// until its periodic wakeup, up to a second later, when every partition it
// fetches was paused; Resume therefore asks each resumed partition's leader
// for its watermarks, which wakes the thread. The request must reach the
// broker for every resumed partition, and the consumer must fetch the
// resumed partitions' new records.
func TestResumeWakesTheFetchingThread(t *testing.T) {
	cluster, boot := newCluster(t, 2, "t")
	var mu sync.Mutex
	asked := map[int32]int{} // ListOffsets requests per partition
	counting := false
	cluster.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if counting {
			for _, tt := range req.(*kmsg.ListOffsetsRequest).Topics {
				for _, p := range tt.Partitions {
					asked[p.Partition]++
				}
			}
		}
		return nil, nil, false
	})
	p := newProducer(t, boot, nil)
	produce := func(n int) {
		var msgs []Message
		for part := range int32(2) {
			for i := range n {
				msgs = append(msgs, Message{Partition: part, Value: []byte("v"), Opaque: uint64(i)})
			}
		}
		if _, err := p.Produce("t", msgs); err != nil {
			t.Fatal(err)
		}
		reportsFor(t, p, len(msgs))
	}
	produce(2)
	m := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "4 records", func() bool { return len(m.records) == 4 }, m)
	both := []TopicPartition{{Topic: "t", Partition: 0}, {Topic: "t", Partition: 1}}
	if err := m.c.Pause(both); err != nil {
		t.Fatal(err)
	}
	produce(3)
	for range 10 {
		m.poll(t)
	}
	if len(m.records) != 4 {
		t.Fatalf("paused partitions were fetched: %d records", len(m.records))
	}
	mu.Lock()
	counting = true
	mu.Unlock()
	if err := m.c.Resume(both); err != nil {
		t.Fatal(err)
	}
	until(t, "the resumed partitions' records", func() bool { return len(m.records) == 10 }, m)
	until(t, "a watermark request for each resumed partition", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return asked[0] >= 1 && asked[1] >= 1
	}, m)
}

// The waker of a destroyed consumer is gone, and a Resume of a destroyed
// consumer fails without starting another.
func TestDestroyStopsTheWaker(t *testing.T) {
	_, boot := newCluster(t, 1, "t")
	m := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "the assignment", func() bool { return len(m.assigned) == 1 }, m)
	tp := []TopicPartition{{Topic: "t", Partition: 0}}
	if err := m.c.Pause(tp); err != nil {
		t.Fatal(err)
	}
	if err := m.c.Resume(tp); err != nil {
		t.Fatal(err)
	}
	m.c.Destroy()
	select {
	case <-m.c.wake.done:
	default:
		t.Fatal("the waker outlived Destroy")
	}
	var e *Error
	if err := m.c.Resume(tp); !errors.As(err, &e) || e.Code != ErrDestroy {
		t.Fatalf("resume after destroy: %v, want ErrDestroy", err)
	}
	m.c.wake.mu.Lock()
	defer m.c.wake.mu.Unlock()
	if len(m.c.wake.pending) != 0 {
		t.Fatalf("a destroyed consumer keeps wake requests: %v", m.c.wake.pending)
	}
}

// Destroy does not wait for the waker to go through all its partitions:
// with a leader slow to answer (down, say), it waits for the request under
// way and no more.
func TestDestroyWaitsForOneWakeRequestAtMost(t *testing.T) {
	const partitions = 12
	cluster, boot := newCluster(t, partitions, "t")
	// A record in each partition, consumed, so that every fetch position
	// is an offset (a resume of a partition without one makes librdkafka
	// look it up with requests of its own).
	p := newProducer(t, boot, nil)
	var all []TopicPartition
	var msgs []Message
	for part := range int32(partitions) {
		all = append(all, TopicPartition{Topic: "t", Partition: part})
		msgs = append(msgs, Message{Partition: part, Value: []byte("v")})
	}
	if _, err := p.Produce("t", msgs); err != nil {
		t.Fatal(err)
	}
	reportsFor(t, p, partitions)
	m := newMember(newConsumer(t, boot, "g", "t"))
	until(t, "a record of each partition", func() bool { return len(m.records) == partitions }, m)
	if err := m.c.Pause(all); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	cluster.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		asked.Add(1)
		time.Sleep(200 * time.Millisecond) // a leader slow to answer
		return nil, nil, false
	})
	if err := m.c.Resume(all); err != nil {
		t.Fatal(err)
	}
	until(t, "the first wake request", func() bool { return asked.Load() > 0 })
	m.c.Destroy()
	// One watermark query is two requests (the earliest and the latest
	// offset).
	if n := asked.Load(); n > 2 {
		t.Fatalf("Destroy waited for %d requests, the waker had %d to send", n, 2*partitions)
	}
}

// Bad input gets a clear error; a destroyed consumer answers every call
// with ErrDestroy and Poll returns nothing.
func TestConsumerErrors(t *testing.T) {
	_, err := NewConsumer(map[string]string{"group.id": "g", "no.such.property": "1"})
	var e *Error
	if !errors.As(err, &e) || e.Code != ErrInvalidArg || !bytes.Contains([]byte(e.Message), []byte("no.such.property")) {
		t.Fatalf("unknown property: %v", err)
	}
	if _, err := NewConsumer(map[string]string{"group.id": "g", "go.logs.channel.enable": "true"}); err == nil {
		t.Fatal("a go.* property was accepted")
	}
	_, boot := newCluster(t, 1, "t")
	c := newConsumer(t, boot, "g", "t")
	if err := c.Subscribe([]string{""}); err == nil {
		t.Fatal("an empty topic name was accepted")
	}
	c.Destroy()
	recs, ev := c.Poll(0, 10, nil)
	if len(recs) != 0 || ev != nil {
		t.Fatalf("a destroyed consumer's poll returned %v, %v", recs, ev)
	}
	for name, err := range map[string]error{
		"pause":  c.Pause([]TopicPartition{{Topic: "t"}}),
		"commit": func() error { _, err := c.Commit([]TopicPartition{{Topic: "t"}}); return err }(),
		"close":  c.BeginClose(),
	} {
		if !errors.As(err, &e) || e.Code != ErrDestroy {
			t.Errorf("%s after destroy: %v, want ErrDestroy", name, err)
		}
	}
}

// Errors reach Events: a subscription to a topic the cluster does not have
// is reported as a client error, not dropped.
func TestConsumerErrorsReachEvents(t *testing.T) {
	_, boot := newCluster(t, 1, "t")
	m := newMember(newConsumer(t, boot, "g", "no-such-topic"))
	var got []ClientError
	until(t, "an error about the missing topic", func() bool {
		_, _, errs := m.c.Events()
		got = append(got, errs...)
		for _, e := range got {
			if e.Code == ErrUnknownTopicOrPart || e.Code == ErrUnknownTopic {
				return true
			}
		}
		return false
	}, m)
}
