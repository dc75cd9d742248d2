package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

// holder is an app stream that keeps every delivery unacknowledged until
// told otherwise; onRevoke, when set, runs when an Assignment frame revokes
// partitions (on the stream's goroutine, so within the revoke grace).
type holder struct {
	mu       sync.Mutex
	held     []*gatewayv1.Delivery
	revoked  map[int32]bool
	ackErrs  []error
	acked    map[[2]int64]bool // (partition, offset) acked OK
	onRevoke func(h *holder, revoked []int32)
	close    func() // ends the stream and waits for its reader
}

func openHolder(t *testing.T, client gatewayv1.ConsumerServiceClient, req *gatewayv1.SubscribeRequest, onRevoke func(*holder, []int32)) *holder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &holder{revoked: map[int32]bool{}, acked: map[[2]int64]bool{}, onRevoke: onRevoke}
	done := make(chan struct{})
	h.close = func() { cancel(); <-done }
	t.Cleanup(h.close)
	go func() {
		defer close(done)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			if a := resp.GetAssignment(); a != nil {
				var parts []int32
				h.mu.Lock()
				for _, tp := range a.GetRevoked() {
					h.revoked[tp.GetPartition()] = true
					parts = append(parts, tp.GetPartition())
				}
				h.mu.Unlock()
				if len(parts) > 0 && h.onRevoke != nil {
					h.onRevoke(h, parts)
				}
				continue
			}
			h.mu.Lock()
			h.held = append(h.held, resp.GetDeliveries().GetDeliveries()...)
			h.mu.Unlock()
		}
	}()
	return h
}

// ackWhere acks the held deliveries that keep selects, through client.
func (h *holder) ackWhere(client gatewayv1.ConsumerServiceClient, group string, keep func(*gatewayv1.Delivery) bool) int {
	h.mu.Lock()
	var ds, rest []*gatewayv1.Delivery
	for _, d := range h.held {
		if keep(d) {
			ds = append(ds, d)
		} else {
			rest = append(rest, d)
		}
	}
	h.held = rest
	h.mu.Unlock()
	if len(ds) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ackIDs(ds)})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.ackErrs = append(h.ackErrs, err)
		return 0
	}
	for _, d := range ds {
		h.acked[[2]int64{int64(d.GetPartition()), d.GetOffset()}] = true
	}
	return len(ds)
}

func (h *holder) heldCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// watchCommits reads the group's committed offsets every 50 ms until the
// test ends, and reports any that moved backwards.
func watchCommits(t *testing.T, offsets *offsetReader) func() []string {
	var mu sync.Mutex
	var backwards []string
	last := map[int32]int64{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for p, c := range offsets.committed() {
				if prev, ok := last[p]; ok && c >= 0 && c < prev {
					mu.Lock()
					backwards = append(backwards, fmt.Sprintf("partition %d: %d → %d", p, prev, c))
					mu.Unlock()
				}
				if c >= 0 {
					last[p] = c
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), backwards...)
	}
}

// The review found that at a rebalance the group's commit went backwards:
// the revoke committed the acked prefix, then librdkafka's unassign
// committed its older stored offset over it, so every ack taken during the
// revoke grace was undone and, without dedupe, the new owner delivered
// those records again. Here the app on gateway A acks everything it holds
// of a partition as soon as the partition is revoked (within the grace):
// the commit must reach the end of those partitions and never move back,
// and gateway B must deliver none of the records A's app acknowledged.
func TestAcksDuringTheRevokeGraceAreCommittedAndNeverUndone(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	const partitions, n = 4, 400
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	tune := func(c *config.Config) { c.Consumer.RevokeGrace = 5 * time.Second }
	hA := consumerGateway(t, tune)
	produceRecords(t, hA, topic, n, 40)
	ends := partitionEnds(t, bootstrap, topic, partitions)
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)
	backwards := watchCommits(t, offsets)
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE,
		MaxInFlight: n, AckTimeout: durationpb.New(time.Minute)}

	a := openHolder(t, hA.consumer(), req, func(h *holder, revoked []int32) {
		set := map[int32]bool{}
		for _, p := range revoked {
			set[p] = true
		}
		h.ackWhere(hA.consumer(), group, func(d *gatewayv1.Delivery) bool { return set[d.GetPartition()] })
	})
	testenv.Eventually(t, 30*time.Second, "gateway A to deliver every record", func() bool { return a.heldCount() == n })
	// The first half of every partition is acked before the rebalance, so
	// that librdkafka holds a stored offset (the middle) older than what
	// the revoke will commit (the end).
	half := map[int32]int64{}
	for p, e := range ends {
		half[p] = e / 2
	}
	a.ackWhere(hA.consumer(), group, func(d *gatewayv1.Delivery) bool { return d.GetOffset() < half[d.GetPartition()] })
	testenv.Eventually(t, 10*time.Second, "the first halves committed", func() bool {
		c := offsets.committed()
		for p, h := range half {
			if c[p] != h {
				return false
			}
		}
		return true
	})

	hB := consumerGateway(t, tune)
	ledB := newLedger()
	appB := openFaultStream(t, hB.consumer(), req, ledB, true)
	testenv.Eventually(t, 30*time.Second, "A to lose partitions to B", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.revoked) > 0 && len(appB.owned()) > 0
	})
	a.mu.Lock()
	revoked, ackErrs, ackedOnA := a.revoked, a.ackErrs, len(a.acked)
	a.mu.Unlock()
	if len(ackErrs) > 0 {
		t.Fatalf("acks during the revoke grace failed: %v", ackErrs)
	}
	if ackedOnA == 0 {
		t.Fatal("A acked nothing during the grace")
	}
	testenv.Eventually(t, 20*time.Second, "the revoked partitions committed at their ends", func() bool {
		c := offsets.committed()
		for p := range revoked {
			if c[p] != ends[p] {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // B would have delivered again by now
	ledB.mu.Lock()
	again := 0
	for k := range ledB.delivered {
		if revoked[int32(k[0])] && k[1] < ends[int32(k[0])] {
			again++
		}
	}
	ledB.mu.Unlock()
	if again > 0 {
		t.Errorf("gateway B delivered %d records of partitions %s that A's app acknowledged during the grace", again, setString(revoked))
	}
	if b := backwards(); len(b) > 0 {
		t.Errorf("the committed offset moved backwards: %v", b)
	}
	appB.requireNoAckErrors(t, "app on B")
}

// The review found that consumer.assignor "range" passed --check-config but
// never consumed: the rebalance callback always used the incremental calls,
// which librdkafka refuses under an eager protocol. With two gateways on
// the real broker, an eager assignor now consumes everything, splits the
// partitions, and hands them over at every rebalance.
func TestAnEagerAssignorConsumesAndRebalancesOnTheRealBroker(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	const partitions, n = 4, 400
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	eager := func(c *config.Config) { c.Consumer.Assignor = "range" }
	hA := consumerGateway(t, eager)
	produceRecords(t, hA, topic, n, 40)
	ends := partitionEnds(t, bootstrap, topic, partitions)
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE}
	ledA, ledB := newLedger(), newLedger()
	appA := openFaultStream(t, hA.consumer(), req, ledA, true)
	testenv.Eventually(t, 30*time.Second, "gateway A to consume and commit everything", func() bool {
		_, ok := ackedRange(map[int32]int64{}, ends, ledA)
		return ok && committedAtEnds(offsets, ends)
	})
	hB := consumerGateway(t, eager)
	appB := openFaultStream(t, hB.consumer(), req, ledB, true)
	testenv.Eventually(t, 30*time.Second, "the partitions split between A and B", func() bool {
		a, b := appA.owned(), appB.owned()
		for p := range a {
			if b[p] {
				return false
			}
		}
		return len(a) > 0 && len(b) > 0 && len(a)+len(b) == partitions
	})
	produceRecords(t, hA, topic, n, 40)
	newEnds := partitionEnds(t, bootstrap, topic, partitions)
	testenv.Eventually(t, 30*time.Second, "the new records consumed by A and B and committed", func() bool {
		_, ok := ackedRange(ends, newEnds, ledA, ledB)
		return ok && committedAtEnds(offsets, newEnds)
	})
	appA.requireNoAckErrors(t, "app on A")
	appB.requireNoAckErrors(t, "app on B")
}

// The review found that a partition paused for a full buffer stayed paused
// forever once it was revoked and given back to the same gateway (librdkafka
// keeps an application pause across the unassign). Here on the real broker:
// a slow app fills both partitions' buffers, a second gateway joins and
// leaves, and once the app catches up every record, old and new, arrives.
func TestAPausedPartitionIsFetchedAgainAfterItComesBackOnTheRealBroker(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	const partitions, n = 2, 200
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	small := func(c *config.Config) { c.Consumer.MaxBufferedRecords = 8 }
	hA := consumerGateway(t, small)
	produceRecords(t, hA, topic, n, 20)
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 2}
	// The app holds two records and acks nothing yet: both partitions fill
	// their buffers (8 records) and pause.
	a := openHolder(t, hA.consumer(), req, nil)
	testenv.Eventually(t, 30*time.Second, "the slow app to hold its two records", func() bool { return a.heldCount() == 2 })
	time.Sleep(time.Second) // the buffers fill and the partitions pause

	// A second gateway joins (a partition moves to it) and leaves (it comes
	// back to A, paused inside librdkafka before the fix).
	hB := consumerGateway(t, small)
	ledB := newLedger()
	appB := openFaultStream(t, hB.consumer(), req, ledB, false)
	testenv.Eventually(t, 30*time.Second, "a partition to move to B", func() bool { return len(appB.owned()) > 0 })
	if err := hB.stop(); err != nil {
		t.Fatal(err)
	}

	// The app catches up: from now on it acks everything it gets.
	led := newLedger()
	app := openFaultStream(t, hA.consumer(), req, led, true)
	a.ackWhere(hA.consumer(), group, func(*gatewayv1.Delivery) bool { return true })
	a.close()
	produceRecords(t, hA, topic, n, 20)
	ends := partitionEnds(t, bootstrap, topic, partitions)
	testenv.Eventually(t, 60*time.Second, "every record of both partitions consumed and committed", func() bool {
		return committedAtEnds(offsets, ends)
	})
	app.requireNoAckErrors(t, "app on A")
	// Fetched again because it was resumed on assignment, not rescued by
	// the stall detector (which would count a stall).
	if v, _ := sample(scrape(t, hA), "gateway_consumer_stalls_total", map[string]string{"group": group}); v != 0 {
		t.Errorf("gateway_consumer_stalls_total = %v: the partition had to be rescued by the stall detector", v)
	}
}
