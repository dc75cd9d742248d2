package gateway_test

// Fault tests of the consumer side against the real broker: two gateways
// sharing a group (cooperative rebalance, stale acks, hand-over on leave), an
// app slower than max.poll.interval.ms, and a group declared in config that
// holds records until an app attaches.

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/testenv"
)

// faultStream is one Subscribe stream read in the background. It keeps
// every Assignment frame and every delivery; with ack set it acknowledges
// each Deliveries frame as it arrives (in shuffled chunks, recorded in the
// ledger before each Ack call, as app does), otherwise it only collects.
type faultStream struct {
	client gatewayv1.ConsumerServiceClient
	group  string
	led    *ledger
	ack    bool
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	assignments []*gatewayv1.Assignment
	deliveries  []*gatewayv1.Delivery
	ackErrs     []error
	endErr      error
}

func openFaultStream(t *testing.T, client gatewayv1.ConsumerServiceClient, req *gatewayv1.SubscribeRequest, led *ledger, ack bool) *faultStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	s := &faultStream{client: client, group: req.GetGroup(), led: led, ack: ack, cancel: cancel, done: make(chan struct{})}
	t.Cleanup(s.close)
	go s.read(ctx, stream)
	return s
}

func (s *faultStream) read(ctx context.Context, stream gatewayv1.ConsumerService_SubscribeClient) {
	defer close(s.done)
	rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
	for {
		resp, err := stream.Recv()
		if err != nil {
			s.mu.Lock()
			s.endErr = err
			s.mu.Unlock()
			return
		}
		if a := resp.GetAssignment(); a != nil {
			s.mu.Lock()
			s.assignments = append(s.assignments, a)
			s.mu.Unlock()
			continue
		}
		ds := resp.GetDeliveries().GetDeliveries()
		s.mu.Lock()
		s.deliveries = append(s.deliveries, ds...)
		s.mu.Unlock()
		for _, d := range ds {
			s.led.deliver(d)
		}
		if !s.ack {
			continue
		}
		ds = slices.Clone(ds)
		rng.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
		for len(ds) > 0 {
			n := min(len(ds), 1+rng.IntN(50))
			s.led.ack(ds[:n])
			if _, err := s.client.Ack(ctx, &gatewayv1.AckRequest{Group: s.group, AckIds: ackIDs(ds[:n])}); err != nil && ctx.Err() == nil {
				s.mu.Lock()
				s.ackErrs = append(s.ackErrs, err)
				s.mu.Unlock()
			}
			ds = ds[n:]
		}
	}
}

// close ends the stream (detaching it from its group) and waits for the
// reader.
func (s *faultStream) close() {
	s.cancel()
	<-s.done
}

func ackIDs(ds []*gatewayv1.Delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.GetAckId()
	}
	return ids
}

// owned applies the stream's Assignment frames in order.
func (s *faultStream) owned() map[int32]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ownedPartitions(s.assignments)
}

// ownedPartitions applies Assignment frames in order.
func ownedPartitions(frames []*gatewayv1.Assignment) map[int32]bool {
	own := map[int32]bool{}
	for _, a := range frames {
		for _, tp := range a.GetAssigned() {
			own[tp.GetPartition()] = true
		}
		for _, tp := range a.GetRevoked() {
			delete(own, tp.GetPartition())
		}
	}
	return own
}

// revoked is every partition named in a revocation so far.
func (s *faultStream) revoked() map[int32]bool {
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

// assignedSince is every partition assigned by the frames from index i on.
func (s *faultStream) assignedSince(i int) map[int32]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int32]bool{}
	for _, a := range s.assignments[min(i, len(s.assignments)):] {
		for _, tp := range a.GetAssigned() {
			out[tp.GetPartition()] = true
		}
	}
	return out
}

func (s *faultStream) frameCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.assignments)
}

func (s *faultStream) delivered() []*gatewayv1.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

func (s *faultStream) deliveredCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.deliveries)
}

// requireNoAckErrors fails the test if any Ack of an acking stream failed.
func (s *faultStream) requireNoAckErrors(t *testing.T, name string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.ackErrs {
		t.Errorf("%s: ack failed: %v", name, err)
	}
}

// partitionEnds returns the high watermark of each partition of topic.
func partitionEnds(t *testing.T, bootstrap, topic string, partitions int) map[int32]int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": testenv.UniqueName("wm"), "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ends := map[int32]int64{}
	for p := range int32(partitions) {
		_, high, err := c.QueryWatermarkOffsets(topic, p, 10_000)
		if err != nil {
			t.Fatalf("watermarks of %s/%d: %v", topic, p, err)
		}
		ends[p] = high
	}
	return ends
}

// committedAtEnds reports whether every partition's committed offset is
// its end.
func committedAtEnds(offsets *offsetReader, ends map[int32]int64) bool {
	got := offsets.committed()
	for p, end := range ends {
		if got[p] != end {
			return false
		}
	}
	return true
}

// ackedRange reports whether every offset in [from[p], to[p]) of every
// partition is acked in one of the ledgers, and returns the first missing.
func ackedRange(from, to map[int32]int64, leds ...*ledger) (missing string, ok bool) {
	for _, led := range leds {
		led.mu.Lock()
		defer led.mu.Unlock()
	}
	for _, p := range slices.Sorted(maps.Keys(to)) {
		for o := from[p]; o < to[p]; o++ {
			k := [2]int64{int64(p), o}
			found := false
			for _, led := range leds {
				found = found || led.acked[k]
			}
			if !found {
				return fmt.Sprintf("%d@%d", p, o), false
			}
		}
	}
	return "", true
}

// describeGroup describes a consumer group: its members and what they own.
// members is -1 when the group could not be described.
func describeGroup(bootstrap, group string) (desc string, members int) {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		return err.Error(), -1
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := admin.DescribeConsumerGroups(ctx, []string{group})
	if err != nil || len(res.ConsumerGroupDescriptions) != 1 {
		return fmt.Sprintf("describe: %v", err), -1
	}
	d := res.ConsumerGroupDescriptions[0]
	if d.Error.Code() != kafka.ErrNoError {
		return fmt.Sprintf("describe: %v", d.Error), -1
	}
	desc = fmt.Sprintf("state %v, %d members", d.State, len(d.Members))
	for _, m := range d.Members {
		var ps []int32
		for _, tp := range m.Assignment.TopicPartitions {
			ps = append(ps, tp.Partition)
		}
		slices.Sort(ps)
		desc += fmt.Sprintf("; member %s owns %v", m.ConsumerID, ps)
	}
	return desc, len(d.Members)
}

func setString(m map[int32]bool) string { return fmt.Sprint(slices.Sorted(maps.Keys(m))) }

// TestTwoGatewaysInOneGroupSplitPartitionsAndHandThemBackWithoutLoss runs
// two gateways in one consumer group (dynamic membership, cooperative-sticky).
// Gateway A holds every record unacknowledged when B joins: A must be told
// which partitions it lost, B which it gained, the split must be exact, an
// ack of a lost partition's record must fail FAILED_PRECONDITION without
// moving its offset, and B must redeliver what A held there. When B leaves,
// A must get its partitions back and consume what follows.
func TestTwoGatewaysInOneGroupSplitPartitionsAndHandThemBackWithoutLoss(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	const partitions, n = 4, 2000
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	hA := consumerGateway(t, nil)
	produceRecords(t, hA, topic, n, 100)
	ends := partitionEnds(t, bootstrap, topic, partitions)
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)
	all := map[int32]bool{}
	for p := range int32(partitions) {
		all[p] = true
	}
	// Both gateways run the group with the same settings. The ack timeout
	// is long: any redelivery seen here comes from the rebalance.
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE,
		MaxInFlight: n, AckTimeout: durationpb.New(time.Minute)}

	// A takes every record and acks none of them.
	ledA, ledB := newLedger(), newLedger()
	collector := openFaultStream(t, hA.consumer(), req, ledA, false)
	testenv.Eventually(t, 30*time.Second, "gateway A to deliver every record to its collecting stream", func() bool {
		return collector.deliveredCount() >= n && len(collector.owned()) == partitions
	})

	// B joins the group with an acking app.
	hB := consumerGateway(t, nil)
	appB := openFaultStream(t, hB.consumer(), req, ledB, true)
	testenv.Eventually(t, 30*time.Second, "A to report revoked partitions and B assigned ones", func() bool {
		return len(collector.revoked()) > 0 && len(collector.owned())+len(appB.owned()) == partitions
	})
	ownedA, ownedB, revokedA := collector.owned(), appB.owned(), collector.revoked()
	t.Logf("after B joined: A owns %s (revoked %s), B owns %s", setString(ownedA), setString(revokedA), setString(ownedB))
	for p := range ownedA {
		if ownedB[p] {
			t.Fatalf("partition %d owned by both gateways: A %s, B %s", p, setString(ownedA), setString(ownedB))
		}
	}
	union := maps.Clone(ownedA)
	maps.Copy(union, ownedB)
	if !maps.Equal(union, all) {
		t.Fatalf("partitions split as A %s + B %s, want all of %s", setString(ownedA), setString(ownedB), setString(all))
	}
	if !maps.Equal(revokedA, ownedB) {
		t.Errorf("A lost %s but B gained %s", setString(revokedA), setString(ownedB))
	}
	if len(ownedA) == 0 || len(ownedB) == 0 {
		t.Fatalf("one gateway got nothing: A %s, B %s", setString(ownedA), setString(ownedB))
	}

	// An ack on A of a record A held in a partition it lost is stale.
	var stale *gatewayv1.Delivery
	held := collector.delivered()
	for _, d := range held {
		if revokedA[d.GetPartition()] && (stale == nil || d.GetOffset() > stale.GetOffset()) {
			stale = d
		}
	}
	if stale == nil {
		t.Fatalf("A held no record of its revoked partitions %s", setString(revokedA))
	}
	sp := stale.GetPartition()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := hA.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{stale.GetAckId()}})
	requireCode(t, err, codes.FailedPrecondition)
	// The stale ack moved nothing: partition sp's commit never passes a
	// record B has not acknowledged (B's acks are in ledB before they are
	// sent). The stale ack named the last offset of sp, so had it been
	// applied anywhere, the commit could jump past B's progress.
	for range 10 {
		if c, first := offsets.committed()[sp], ledB.firstUnacked(sp); c > first {
			t.Fatalf("partition %d committed at %d after the stale ack of offset %d, past B's first unacknowledged offset %d",
				sp, c, stale.GetOffset(), first)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A acks what it holds of the partitions it still owns: every such ack
	// is valid.
	var keep []*gatewayv1.Delivery
	for _, d := range held {
		if ownedA[d.GetPartition()] {
			keep = append(keep, d)
		}
	}
	ledA.ack(keep)
	if _, err := hA.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ackIDs(keep)}); err != nil {
		t.Fatalf("A's ack of %d records of the partitions it still owns (%s): %v", len(keep), setString(ownedA), err)
	}
	// From now on A runs an acking app; the collecting stream goes away.
	appA := openFaultStream(t, hA.consumer(), req, ledA, true)
	collector.close()

	testenv.Eventually(t, 30*time.Second, "every record to be acknowledged on A or B and committed", func() bool {
		_, ok := ackedRange(map[int32]int64{}, ends, ledA, ledB)
		return ok && committedAtEnds(offsets, ends)
	})
	appA.requireNoAckErrors(t, "app on A")
	appB.requireNoAckErrors(t, "app on B")

	// B leaves: A gets B's partitions back.
	_, before := describeGroup(bootstrap, group)
	mark := appA.frameCount()
	stopped := time.Now()
	if err := hB.stop(); err != nil {
		t.Fatalf("stop gateway B: %v", err)
	}
	t.Logf("gateway B stopped in %v", time.Since(stopped).Round(time.Millisecond))
	var desc string
	defer func() {
		if t.Failed() {
			appA.mu.Lock()
			defer appA.mu.Unlock()
			t.Logf("Assignment frames of the app on A since B stopped: %v; stream end %v", appA.assignments[min(mark, len(appA.assignments)):], appA.endErr)
			t.Logf("group %v after the stop began: %s", time.Since(stopped).Round(time.Millisecond), desc)
		}
	}()
	// A stopped gateway leaves its consumer groups (LeaveGroup): the broker
	// must not keep its member, and its partitions, until session.timeout.ms
	// (45 s) evicts it. The deadline is well below that.
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("gateway B's member to leave the group (%d members before the stop)", before), func() bool {
		var members int
		desc, members = describeGroup(bootstrap, group)
		return members == 1
	})
	testenv.Eventually(t, 20*time.Second, "A to be assigned B's partitions back", func() bool {
		desc, _ = describeGroup(bootstrap, group)
		back := appA.assignedSince(mark)
		for p := range ownedB {
			if !back[p] {
				return false
			}
		}
		return len(appA.owned()) == partitions
	})
	t.Logf("A got B's partitions back %v after the stop began", time.Since(stopped).Round(time.Millisecond))
	const more = 200
	produceRecords(t, hA, topic, more, 50)
	newEnds := partitionEnds(t, bootstrap, topic, partitions)
	testenv.Eventually(t, 30*time.Second, "A to acknowledge and commit every record written after B left", func() bool {
		_, ok := ackedRange(ends, newEnds, ledA)
		return ok && committedAtEnds(offsets, newEnds)
	})
	appA.requireNoAckErrors(t, "app on A")
	ledA.mu.Lock()
	ledB.mu.Lock()
	dupA, dupB := 0, 0
	for _, c := range ledA.delivered {
		dupA += c - 1
	}
	for _, c := range ledB.delivered {
		dupB += c - 1
	}
	redelivered := 0
	for k := range ledB.delivered {
		if k[1] < ends[int32(k[0])] && revokedA[int32(k[0])] {
			redelivered++
		}
	}
	ledB.mu.Unlock()
	ledA.mu.Unlock()
	t.Logf("%d+%d records; B redelivered %d records of the partitions A lost; repeated deliveries on A %d, on B %d",
		n, more, redelivered, dupA, dupB)
}

// TestAnAppSlowerThanMaxPollIntervalCausesNoRebalance is field failure F2:
// an app that holds its acks for three max.poll.interval.ms must not get the
// gateway kicked out of its group, because the gateway keeps polling: no
// revocation, no record delivered twice, and the commit reaches the end once
// the acks come.
func TestAnAppSlowerThanMaxPollIntervalCausesNoRebalance(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	const partitions, n = 2, 300
	const pollInterval = 7 * time.Second
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, func(c *config.Config) {
		// librdkafka requires max.poll.interval.ms >= session.timeout.ms,
		// and the broker's group.min.session.timeout.ms is 6 s.
		c.Consumer.Properties = map[string]string{
			"max.poll.interval.ms": fmt.Sprint(pollInterval.Milliseconds()),
			"session.timeout.ms":   "6000",
		}
	})
	produceRecords(t, h, topic, n, 20)
	ends := partitionEnds(t, bootstrap, topic, partitions)
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)

	led := newLedger()
	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 2 * n, AckTimeout: durationpb.New(60 * time.Second)}, led, false)
	testenv.Eventually(t, 30*time.Second, "every record to be delivered", func() bool { return s.deliveredCount() >= n })
	// Hold every ack for three poll intervals; the stream keeps reading, so
	// a revocation or a redelivery in the meantime is recorded.
	hold := 3 * pollInterval
	t.Logf("holding %d acks for %v (max.poll.interval.ms %v)", n, hold, pollInterval)
	time.Sleep(hold)

	held := s.delivered()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	led.ack(held)
	if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ackIDs(held)}); err != nil {
		t.Fatalf("ack of the %d held records after %v: %v", len(held), hold, err)
	}
	testenv.Eventually(t, 20*time.Second, "commits to reach the end of every partition", func() bool {
		return committedAtEnds(offsets, ends)
	})
	if r := s.revoked(); len(r) > 0 {
		t.Errorf("partitions %s were revoked while the app held its acks: the gateway left the group", setString(r))
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	for k, c := range led.delivered {
		if c != 1 {
			t.Errorf("record %d@%d delivered %d times", k[0], k[1], c)
		}
	}
	for p, end := range ends {
		for o := range end {
			if !led.acked[[2]int64{int64(p), o}] {
				t.Errorf("record %d@%d never acknowledged", p, o)
			}
		}
	}
}

// TestADeclaredSubscriptionHoldsRecordsUntilAnAppAttaches is field failure
// F1: a group declared in config with start_position latest joins at
// start-up; records written once it is in the group must wait there for the
// first app, however late it attaches.
//
// Settings must match: a Subscribe to a declared group must ask for the
// declared settings. The declared start_position here is "latest", so the
// Subscribe must pass START_POSITION_LATEST; UNSPECIFIED means the
// configured default (earliest) and is refused FAILED_PRECONDITION. Ordering,
// ack_timeout and max_attempts are left at their defaults on both sides.
func TestADeclaredSubscriptionHoldsRecordsUntilAnAppAttaches(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	const partitions, n = 3, 100
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, func(c *config.Config) {
		c.Consumer.Subscriptions = []consume.SubscriptionConfig{{Group: group, Topics: []string{topic}, StartPosition: "latest"}}
	})

	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var state string
	testenv.Eventually(t, 30*time.Second, "the declared group to be Stable with its member assigned every partition", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := admin.DescribeConsumerGroups(ctx, []string{group})
		if err != nil || len(res.ConsumerGroupDescriptions) != 1 {
			state = fmt.Sprintf("describe: %v", err)
			return false
		}
		d := res.ConsumerGroupDescriptions[0]
		state = fmt.Sprintf("state %v, %d members", d.State, len(d.Members))
		if d.Error.Code() != kafka.ErrNoError || d.State != kafka.ConsumerGroupStateStable || len(d.Members) != 1 {
			return false
		}
		got := map[int32]bool{}
		for _, tp := range d.Members[0].Assignment.TopicPartitions {
			if *tp.Topic == topic {
				got[tp.Partition] = true
			}
		}
		state += fmt.Sprintf(", assigned %s", setString(got))
		return len(got) == partitions
	})
	t.Logf("group: %s", state)

	produceRecords(t, h, topic, n, 10)
	ends := partitionEnds(t, bootstrap, topic, partitions)
	time.Sleep(2 * time.Second) // the app attaches late

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The declared start_position is latest: a Subscribe asking for
	// earliest conflicts (one leaving it unspecified takes the group's).
	conflicting, err := h.consumer().Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		StartPosition: gatewayv1.StartPosition_START_POSITION_EARLIEST})
	if err != nil {
		t.Fatal(err)
	}
	_, err = conflicting.Recv()
	requireCode(t, err, codes.FailedPrecondition)

	led := newLedger()
	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		StartPosition: gatewayv1.StartPosition_START_POSITION_LATEST}, led, true)
	offsets := newOffsetReader(t, bootstrap, group, topic, partitions)
	var progress string
	defer func() {
		if t.Failed() {
			t.Logf("partition ends %v; %s", ends, progress)
		}
	}()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("all %d records written before the app attached to be delivered", n), func() bool {
		missing, ok := ackedRange(map[int32]int64{}, ends, led)
		progress = fmt.Sprintf("%d delivered to the app, first missing %s, committed %v, app owns %s",
			s.deliveredCount(), missing, offsets.committed(), setString(s.owned()))
		return ok && committedAtEnds(offsets, ends)
	})
	s.requireNoAckErrors(t, "app")
	if got := s.owned(); len(got) != partitions {
		t.Errorf("the app's Assignment frames leave it owning %s, want all %d partitions", setString(got), partitions)
	}
}
