package gateway_test

// Fault tests of consumer-side dedupe against the real broker and the real
// Redis: a rebalance between two gateways of one group while records are in
// flight.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

// idTally counts, per message ID, what the apps of every stream (of both
// gateways) saw: deliveries, successful acks (processed), and acks refused as
// stale (FAILED_PRECONDITION: the partition moved while the app held it).
type idTally struct {
	mu        sync.Mutex
	delivered map[string]int
	acked     map[string]int
	stale     map[string]int
	// ackedBy is where each successful ack went: "A" or "B" and the record.
	ackedBy map[string][]string
}

func newIDTally() *idTally {
	return &idTally{delivered: map[string]int{}, acked: map[string]int{}, stale: map[string]int{}, ackedBy: map[string][]string{}}
}

func (c *idTally) ackedIDs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked)
}

// ackedAll reports whether every ID in want has been acked, and names the
// first (sorted) one that has not.
func (c *idTally) ackedAll(want map[string]bool) (missing string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if c.acked[id] == 0 {
			return id, false
		}
	}
	return "", true
}

// slowAcker is one Subscribe stream whose app processes each delivery for
// a few milliseconds and acks it alone (so a stale ack refuses only its own
// record), recording everything by message ID in the tally.
type slowAcker struct {
	name   string
	client gatewayv1.ConsumerServiceClient
	group  string
	tally  *idTally
	delay  time.Duration
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	assignments []*gatewayv1.Assignment
	ackErrs     []error // acks refused other than as stale
}

func openSlowAcker(t *testing.T, name string, client gatewayv1.ConsumerServiceClient, req *gatewayv1.SubscribeRequest, tally *idTally, delay time.Duration) *slowAcker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	s := &slowAcker{name: name, client: client, group: req.GetGroup(), tally: tally, delay: delay, cancel: cancel, done: make(chan struct{})}
	t.Cleanup(s.close)
	go s.read(ctx, stream)
	return s
}

func (s *slowAcker) read(ctx context.Context, stream gatewayv1.ConsumerService_SubscribeClient) {
	defer close(s.done)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		if a := resp.GetAssignment(); a != nil {
			s.mu.Lock()
			s.assignments = append(s.assignments, a)
			s.mu.Unlock()
			continue
		}
		ds := resp.GetDeliveries().GetDeliveries()
		s.tally.mu.Lock()
		for _, d := range ds {
			s.tally.delivered[d.GetMessageId()]++
		}
		s.tally.mu.Unlock()
		for _, d := range ds {
			select {
			case <-time.After(s.delay): // "processing"
			case <-ctx.Done():
				return
			}
			_, err := s.client.Ack(ctx, &gatewayv1.AckRequest{Group: s.group, AckIds: []string{d.GetAckId()}})
			if ctx.Err() != nil {
				return
			}
			id := d.GetMessageId()
			s.tally.mu.Lock()
			switch {
			case err == nil:
				s.tally.acked[id]++
				s.tally.ackedBy[id] = append(s.tally.ackedBy[id], fmt.Sprintf("%s %d@%d attempt %d", s.name, d.GetPartition(), d.GetOffset(), d.GetAttempt()))
			case status.Code(err) == codes.FailedPrecondition:
				s.tally.stale[id]++
			}
			s.tally.mu.Unlock()
			if err != nil && status.Code(err) != codes.FailedPrecondition {
				s.mu.Lock()
				s.ackErrs = append(s.ackErrs, err)
				s.mu.Unlock()
			}
		}
	}
}

func (s *slowAcker) close() {
	s.cancel()
	<-s.done
}

// revoked is every partition named in a revocation so far.
func (s *slowAcker) revoked() map[int32]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int32]bool{}
	for _, a := range s.assignments {
		for _, tp := range a.GetRevoked() {
			out[tp.GetPartition()] = true
		}
	}
	return out
}

// owned applies the stream's Assignment frames in order.
func (s *slowAcker) owned() map[int32]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ownedPartitions(s.assignments)
}

func (s *slowAcker) requireNoAckErrors(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.ackErrs {
		t.Errorf("%s: ack failed: %v", s.name, err)
	}
}

// produceSplitDuplicates writes n messages (IDs "split-0".."split-(n-1)"),
// each twice with the same message-id header, the copies in neighbouring
// partitions: after the rebalance the two copies of many of them are on
// different gateways at the same time.
func produceSplitDuplicates(t *testing.T, bootstrap, topic string, partitions, n int) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3, "go.delivery.reports": false})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range n {
		for copyNo := range 2 {
			err := p.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: int32((i + copyNo) % partitions)},
				Key:            fmt.Appendf(nil, "split-%d", i),
				Value:          fmt.Appendf(nil, "split %d/copy%d", i, copyNo),
				Headers:        []kafka.Header{{Key: "message-id", Value: fmt.Appendf(nil, "split-%d", i)}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if left := p.Flush(30_000); left > 0 {
		t.Fatalf("%d records not flushed", left)
	}
}

// TestWithDedupeARebalanceMidRunProcessesEveryMessageOnce runs two gateways
// with dedupe on, on one Redis and key prefix, in one consumer group. A
// works through a 4-partition topic (2000 records with unique message IDs,
// plus 200 messages written twice each into one partition and 200 written
// twice each into two neighbouring partitions) with apps that ack slowly, one
// record at a time; B joins mid-run, so A loses partitions with records in
// flight. The revoke grace is short, so A's apps still hold records of the
// lost partitions when A lets them go: their claims stay, B holds its copies
// meanwhile, and their late acks on A succeed (writing the done markers), so
// B drops its copies as duplicates. Records queued on A but never sent to
// its apps are released at once, for B to deliver. Each duplicated message
// must be processed once, whichever gateway meets its copies, even both at
// once. Every message ID must be delivered to one app once and acked once
// across all streams of both gateways, none missing, and the group's
// commits must reach the end of every partition.
func TestWithDedupeARebalanceMidRunProcessesEveryMessageOnce(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	const partitions, n, dups = 4, 2000, 200
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	prefix := testenv.UniqueName("test") + ":"
	shared := func(c *config.Config) {
		c.Dedupe.KeyPrefix = prefix // both gateways dedupe in the same keys
		// A short grace, so that A leaves in-flight records of the
		// partitions it loses behind.
		c.Consumer.RevokeGrace = 200 * time.Millisecond
	}
	hA := dedupeGateway(t, redisAddr, shared)
	produceRecords(t, hA, topic, n, 100)
	produceDuplicated(t, bootstrap, topic, dups)
	produceSplitDuplicates(t, bootstrap, topic, partitions, dups)
	ends := partitionEnds(t, bootstrap, topic, partitions)
	want := map[string]bool{}
	for _, m := range testenv.ReadTopic(t, bootstrap, topic) {
		id, ok := testenv.Header(m, "message-id")
		if !ok {
			t.Fatalf("record %s has no message-id", testenv.String(m))
		}
		want[id] = true
	}
	if len(want) != n+2*dups {
		t.Fatalf("topic holds %d distinct message IDs, want %d", len(want), n+2*dups)
	}
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)

	// Each record takes its app 5 ms, so a stream works through its 100
	// in flight in about half a second, far within the ack timeout: no
	// record is redelivered for lack of an ack.
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE,
		MaxInFlight: 100, AckTimeout: durationpb.New(30 * time.Second)}
	const delay = 5 * time.Millisecond
	tally := newIDTally()
	a1 := openSlowAcker(t, "A1", hA.consumer(), req, tally, delay)
	testenv.Eventually(t, 30*time.Second, "gateway A to be under way", func() bool { return tally.ackedIDs() >= 300 })

	hB := dedupeGateway(t, redisAddr, shared)
	b1 := openSlowAcker(t, "B1", hB.consumer(), req, tally, delay)
	b2 := openSlowAcker(t, "B2", hB.consumer(), req, tally, delay)
	testenv.Eventually(t, 30*time.Second, "A to lose partitions to B", func() bool {
		return len(a1.revoked()) > 0 && len(b1.owned()) > 0
	})
	atRebalance := tally.ackedIDs()
	t.Logf("rebalance with %d of %d message IDs acked: A lost %s, B owns %s", atRebalance, len(want), setString(a1.revoked()), setString(b1.owned()))
	if atRebalance >= len(want) {
		t.Fatalf("A acked every message before the rebalance: the test's premise is broken")
	}

	var progress string
	defer func() {
		if t.Failed() {
			t.Logf("progress: %s", progress)
		}
	}()
	testenv.Eventually(t, 35*time.Second, "every message ID to be acked and every partition committed to its end", func() bool {
		missing, ok := tally.ackedAll(want)
		progress = fmt.Sprintf("%d of %d IDs acked, first missing %q; committed %v, ends %v", tally.ackedIDs(), len(want), missing, offsets.committed(), ends)
		return ok && committedAtEnds(offsets, ends)
	})
	a1.requireNoAckErrors(t)
	b1.requireNoAckErrors(t)
	b2.requireNoAckErrors(t)

	tally.mu.Lock()
	defer tally.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(tally.acked)) {
		if !want[id] {
			t.Errorf("message %s acked but not in the topic", id)
		}
		if c := tally.acked[id]; c != 1 {
			t.Errorf("message %s processed (acked) %d times, want once: %v", id, c, tally.ackedBy[id])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(tally.delivered)) {
		if c := tally.delivered[id]; c != 1 {
			t.Errorf("message %s delivered to apps %d times, want once", id, c)
		}
		if c := tally.stale[id]; c != 0 {
			t.Errorf("message %s: %d acks refused as stale, want none (the claim was retained)", id, c)
		}
	}
	t.Logf("%d message IDs (%d records), each delivered and acked once", len(want), n+4*dups)
}
