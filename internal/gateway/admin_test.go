package gateway_test

// Admin service tests against the real broker: group lag, offset resets of
// groups without members and of a group this gateway consumes live, topic
// metadata, dead-letter replay, and access control.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

func (h *harness) admin() gatewayv1.AdminServiceClient {
	return gatewayv1.NewAdminServiceClient(h.conn)
}

// produceTo writes n records to one partition (values "p/i") and returns
// the offset after the last.
func produceTo(t *testing.T, h *harness, topic string, partition int32, n int) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]*gatewayv1.Record, n)
	for i := range recs {
		recs[i] = &gatewayv1.Record{Partition: &partition, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%d/%d", partition, i)}
	}
	resp, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	last := resp.GetResults()[n-1]
	if last.GetError() != nil {
		t.Fatalf("produce: %v", last.GetError())
	}
	return last.GetOffset() + 1
}

func describe(t *testing.T, h *harness, req *gatewayv1.DescribeGroupRequest) *gatewayv1.DescribeGroupResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.admin().DescribeGroup(ctx, req)
	if err != nil {
		t.Fatalf("DescribeGroup: %v", err)
	}
	return resp
}

// committedOf returns partition → committed offset from a description.
func committedOf(d *gatewayv1.DescribeGroupResponse) map[int32]int64 {
	out := map[int32]int64{}
	for _, p := range d.GetPartitions() {
		out[p.GetPartition()] = p.GetCommittedOffset()
	}
	return out
}

// waitDeliveries waits until s has received n deliveries in total.
func waitDeliveries(t *testing.T, s *faultStream, n int) []*gatewayv1.Delivery {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d deliveries", n), func() bool { return s.deliveredCount() >= n })
	return s.delivered()
}

func ack(t *testing.T, h *harness, group string, ds []*gatewayv1.Delivery) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ackIDs(ds)}); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

// pick returns the deliveries of partition p with offsets in [from, to).
func pick(ds []*gatewayv1.Delivery, p int32, from, to int64) []*gatewayv1.Delivery {
	var out []*gatewayv1.Delivery
	for _, d := range ds {
		if d.GetPartition() == p && d.GetOffset() >= from && d.GetOffset() < to {
			out = append(out, d)
		}
	}
	return out
}

func TestDescribeGroupLagMatchesWhatWasProducedAndAcked(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	ends := map[int32]int64{0: produceTo(t, h, topic, 0, 10), 1: produceTo(t, h, topic, 1, 20), 2: produceTo(t, h, topic, 2, 5)}

	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100, AckTimeout: durationpb.New(time.Minute)}, newLedger(), false)
	ds := waitDeliveries(t, s, 35)
	// All of partition 0, the first 12 of partition 1, nothing of partition 2.
	ack(t, h, group, append(pick(ds, 0, 0, 10), pick(ds, 1, 0, 12)...))
	want := map[int32]int64{0: 10, 1: 12, 2: -1}

	var d *gatewayv1.DescribeGroupResponse
	testenv.Eventually(t, 20*time.Second, "the acked prefixes to be committed", func() bool {
		d = describe(t, h, &gatewayv1.DescribeGroupRequest{Group: group})
		got := committedOf(d)
		return got[0] == 10 && got[1] == 12
	})
	if !d.GetRunningHere() || d.GetState() != "Stable" {
		t.Errorf("running_here = %v, state = %q; want true, Stable", d.GetRunningHere(), d.GetState())
	}
	if len(d.GetMembers()) != 1 || !d.GetMembers()[0].GetThisGateway() || len(d.GetMembers()[0].GetAssignment()) != 3 {
		t.Fatalf("members = %v; want this gateway owning 3 partitions", d.GetMembers())
	}
	member := d.GetMembers()[0].GetMemberId()
	// Without topics, the partitions shown are those committed or assigned:
	// all three, partition 2 without a committed offset.
	if len(d.GetPartitions()) != 3 {
		t.Fatalf("partitions = %v, want 3", d.GetPartitions())
	}
	for _, p := range d.GetPartitions() {
		i := p.GetPartition()
		wantLag := int64(-1)
		if want[i] >= 0 {
			wantLag = ends[i] - want[i]
		}
		if p.GetCommittedOffset() != want[i] || p.GetLogEndOffset() != ends[i] || p.GetLogStartOffset() != 0 || p.GetLag() != wantLag || p.GetMemberId() != member {
			t.Errorf("partition %d = %v; want committed %d, end %d, lag %d, member %s", i, p, want[i], ends[i], wantLag, member)
		}
	}
	if d.GetTotalLag() != 8 {
		t.Errorf("total lag = %d, want 8", d.GetTotalLag())
	}

	// With topics: every partition of them, the same figures.
	dt := describe(t, h, &gatewayv1.DescribeGroupRequest{Group: group, Topics: []string{topic}})
	if got := committedOf(dt); got[0] != 10 || got[1] != 12 || got[2] != -1 || dt.GetTotalLag() != 8 {
		t.Errorf("with topics: committed %v, total lag %d", got, dt.GetTotalLag())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		req  *gatewayv1.DescribeGroupRequest
		code codes.Code
	}{
		{"empty group", &gatewayv1.DescribeGroupRequest{}, codes.InvalidArgument},
		{"illegal topic", &gatewayv1.DescribeGroupRequest{Group: group, Topics: []string{"a b"}}, codes.InvalidArgument},
		{"unknown group", &gatewayv1.DescribeGroupRequest{Group: testenv.UniqueName("nobody")}, codes.NotFound},
		{"unknown topic", &gatewayv1.DescribeGroupRequest{Group: group, Topics: []string{testenv.UniqueName("missing")}}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.admin().DescribeGroup(ctx, tc.req)
			requireCode(t, err, tc.code)
		})
	}
}

// TestResetOffsetsOnALiveGroupRepositionsWithoutCommittingTheOldPosition
// pins the live reset: the group keeps running on this gateway, its
// in-flight records of the old position are dropped (their acks fail), it
// reads again from the target, and no commit of the old position follows,
// although the old position's offsets were stored for the background
// commit (every 50 ms here) when the reset came.
func TestResetOffsetsOnALiveGroupRepositionsWithoutCommittingTheOldPosition(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, func(c *config.Config) { c.Consumer.CommitInterval = 50 * time.Millisecond })
	produceTo(t, h, topic, 0, 20)
	produceTo(t, h, topic, 1, 20)

	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100, AckTimeout: durationpb.New(time.Minute)}, newLedger(), false)
	old := waitDeliveries(t, s, 40)
	ack(t, h, group, append(pick(old, 0, 0, 15), pick(old, 1, 0, 10)...))
	offsets := newOffsetReader(t, bootstrap, group, topic, 2)
	testenv.Eventually(t, 20*time.Second, "the acked prefixes (15, 10) to be committed", func() bool {
		c := offsets.committed()
		return c[0] == 15 && c[1] == 10
	})
	framesBefore := s.frameCount()

	// Watch the committed offsets from the end of the reset on: every
	// reading that starts after ResetOffsets returned.
	var mu sync.Mutex
	var resetDone bool
	var seen []map[int32]int64
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			mu.Lock()
			after := resetDone
			mu.Unlock()
			if c := offsets.committed(); c != nil && after {
				mu.Lock()
				seen = append(seen, c)
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := h.admin().ResetOffsets(ctx, &gatewayv1.ResetOffsetsRequest{Group: group, Topics: []string{topic},
		Target: &gatewayv1.ResetOffsetsRequest_ToOffset{ToOffset: 5}})
	mu.Lock()
	resetDone = true
	mu.Unlock()
	if err != nil {
		t.Fatalf("ResetOffsets: %v", err)
	}
	prev := map[int32]int64{0: 15, 1: 10}
	for _, p := range resp.GetPartitions() {
		if p.GetAction() != gatewayv1.ResetAction_RESET_ACTION_REPOSITIONED || p.GetTargetOffset() != 5 || p.GetPreviousOffset() != prev[p.GetPartition()] || p.GetClamped() {
			t.Errorf("partition %d: %v; want repositioned from %d to 5", p.GetPartition(), p, prev[p.GetPartition()])
		}
	}
	// The reset is committed when the call returns.
	if c := offsets.committed(); c[0] != 5 || c[1] != 5 {
		t.Fatalf("committed right after the reset = %v, want 5 and 5", c)
	}
	// Acks of the old position fail and move nothing.
	_, err = h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ackIDs(pick(old, 0, 15, 20))})
	requireCode(t, err, codes.FailedPrecondition)

	// The stream is told, then gets everything from offset 5 again.
	redelivered := waitDeliveries(t, s, 40+30)[40:]
	frames := func() []*gatewayv1.Assignment {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.Clone(s.assignments[framesBefore:])
	}()
	if len(frames) != 2 || len(frames[0].GetRevoked()) != 2 || len(frames[1].GetAssigned()) != 2 {
		t.Errorf("assignment frames after the reset = %v; want a revocation and an assignment of both partitions", frames)
	}
	for p := range int32(2) {
		got := pick(redelivered, p, 0, 100)
		if len(got) != 15 || got[0].GetOffset() != 5 || got[14].GetOffset() != 19 || got[0].GetAttempt() != 1 {
			t.Errorf("partition %d redelivered %v; want offsets 5..19, attempt 1", p, got)
		}
	}
	// Give the background commit many rounds to commit an old position.
	time.Sleep(time.Second)
	stopWatch()
	<-watched
	mu.Lock()
	for _, c := range seen {
		if c[0] > 5 || c[1] > 5 {
			t.Fatalf("committed %v after the reset to 5 (old position 15, 10), with nothing acked since", c)
		}
	}
	n := len(seen)
	mu.Unlock()

	// Acks of the new position move the commit from the target on.
	ack(t, h, group, pick(redelivered, 0, 5, 12))
	testenv.Eventually(t, 20*time.Second, "partition 0 committed at 12", func() bool {
		c := offsets.committed()
		return c[0] == 12 && c[1] == 5
	})
	t.Logf("%d commit checks between the reset and the first new ack", n)
}

func TestResetOffsetsToLatestDropsInFlightRecordsAndDeliversOnlyNewOnes(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	produceTo(t, h, topic, 0, 10)
	s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100, AckTimeout: durationpb.New(time.Minute)}, newLedger(), false)
	waitDeliveries(t, s, 10)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := h.admin().ResetOffsets(ctx, &gatewayv1.ResetOffsetsRequest{Group: group, Topics: []string{topic},
		Target: &gatewayv1.ResetOffsetsRequest_ToPosition{ToPosition: gatewayv1.ResetPosition_RESET_POSITION_LATEST}})
	if err != nil {
		t.Fatalf("ResetOffsets: %v", err)
	}
	if p := resp.GetPartitions()[0]; p.GetPreviousOffset() != -1 || p.GetTargetOffset() != 10 || p.GetAction() != gatewayv1.ResetAction_RESET_ACTION_REPOSITIONED {
		t.Errorf("plan = %v; want repositioned from none to 10", p)
	}
	produceTo(t, h, topic, 0, 3)
	got := waitDeliveries(t, s, 13)[10:]
	for i, d := range got {
		if d.GetOffset() != int64(10+i) {
			t.Errorf("delivery %d after the reset: offset %d, want %d", i, d.GetOffset(), 10+i)
		}
	}
	ack(t, h, group, got)
	offsets := newOffsetReader(t, bootstrap, group, topic, 1)
	testenv.Eventually(t, 20*time.Second, "commit at 13", func() bool { return offsets.committed()[0] == 13 })
	if n := s.deliveredCount(); n != 13 {
		t.Errorf("%d deliveries in all, want 13: the records dropped by the reset came back", n)
	}
}

// externalMember joins group with a plain librdkafka consumer and keeps
// polling until the test ends or stop is called.
func externalMember(t *testing.T, bootstrap, group, topic, clientID string) (stop func()) {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": group, "client.id": clientID,
		"log_level": 3, "enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	assigned := make(chan struct{})
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		once := sync.OnceFunc(func() { close(assigned) })
		for {
			select {
			case <-quit:
				c.Close()
				return
			default:
			}
			c.Poll(50)
			if a, _ := c.Assignment(); len(a) > 0 {
				once()
			}
		}
	}()
	select {
	case <-assigned:
	case <-time.After(30 * time.Second):
		t.Fatal("the external consumer got no assignment")
	}
	var stopOnce sync.Once
	stop = func() { stopOnce.Do(func() { close(quit); <-done }) }
	t.Cleanup(stop)
	return stop
}

func TestResetOffsetsOfAGroupThatRunsElsewhere(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	group := testenv.UniqueName("g")
	h := startGateway(t, nil)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*gatewayv1.Record
	for i := range 10 {
		p := int32(0)
		recs = append(recs, &gatewayv1.Record{Partition: &p, Value: []byte{byte(i)}, Timestamp: timestamppb.New(base.Add(time.Duration(i) * time.Minute))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs}); err != nil {
		t.Fatal(err)
	}
	var old []*gatewayv1.Record
	for range 4 {
		p := int32(1)
		old = append(old, &gatewayv1.Record{Partition: &p, Timestamp: timestamppb.New(base.Add(-10 * time.Minute))})
	}
	if _, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: old}); err != nil {
		t.Fatal(err)
	}
	reset := func(req *gatewayv1.ResetOffsetsRequest) (*gatewayv1.ResetOffsetsResponse, error) {
		req.Group = group
		return h.admin().ResetOffsets(ctx, req)
	}

	// A group nobody ran yet: a dry run plans, and changes nothing.
	plan, err := reset(&gatewayv1.ResetOffsetsRequest{Topics: []string{topic}, DryRun: true,
		Target: &gatewayv1.ResetOffsetsRequest_ToPosition{ToPosition: gatewayv1.ResetPosition_RESET_POSITION_LATEST}})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if !plan.GetDryRun() || len(plan.GetPartitions()) != 2 || plan.GetPartitions()[0].GetTargetOffset() != 10 || plan.GetPartitions()[1].GetTargetOffset() != 4 ||
		plan.GetPartitions()[0].GetAction() != gatewayv1.ResetAction_RESET_ACTION_COMMITTED {
		t.Errorf("dry-run plan = %v", plan)
	}
	_, err = h.admin().DescribeGroup(ctx, &gatewayv1.DescribeGroupRequest{Group: group})
	requireCode(t, err, codes.NotFound)

	// To a timestamp: the first record at or after it; none after: the end.
	resp, err := reset(&gatewayv1.ResetOffsetsRequest{Topics: []string{topic},
		Target: &gatewayv1.ResetOffsetsRequest_ToTimestamp{ToTimestamp: timestamppb.New(base.Add(5*time.Minute - time.Second))}})
	if err != nil {
		t.Fatalf("reset to a timestamp: %v", err)
	}
	if got := resp.GetPartitions(); got[0].GetTargetOffset() != 5 || got[1].GetTargetOffset() != 4 {
		t.Errorf("reset to a timestamp: %v; want 5 (partition 0) and 4 (partition 1: nothing after the time)", got)
	}
	if c := committedOf(describe(t, h, &gatewayv1.DescribeGroupRequest{Group: group})); c[0] != 5 || c[1] != 4 {
		t.Errorf("committed after the reset = %v", c)
	}

	// Explicit offsets: beyond the end is clamped.
	resp, err = reset(&gatewayv1.ResetOffsetsRequest{Target: &gatewayv1.ResetOffsetsRequest_ToOffsets{ToOffsets: &gatewayv1.PartitionOffsets{
		Offsets: []*gatewayv1.PartitionOffset{{Topic: topic, Partition: 0, Offset: 2}, {Topic: topic, Partition: 1, Offset: 99}}}}})
	if err != nil {
		t.Fatalf("reset to offsets: %v", err)
	}
	if got := resp.GetPartitions(); got[0].GetTargetOffset() != 2 || got[0].GetPreviousOffset() != 5 || got[1].GetTargetOffset() != 4 || !got[1].GetClamped() {
		t.Errorf("reset to offsets: %v", got)
	}

	for _, tc := range []struct {
		name  string
		req   *gatewayv1.ResetOffsetsRequest
		field string
	}{
		{"no target", &gatewayv1.ResetOffsetsRequest{Topics: []string{topic}}, "target"},
		{"no topics", &gatewayv1.ResetOffsetsRequest{Target: &gatewayv1.ResetOffsetsRequest_ToOffset{ToOffset: 1}}, "topics"},
		{"negative offset", &gatewayv1.ResetOffsetsRequest{Topics: []string{topic}, Target: &gatewayv1.ResetOffsetsRequest_ToOffset{ToOffset: -1}}, "to_offset"},
		{"unspecified position", &gatewayv1.ResetOffsetsRequest{Topics: []string{topic}, Target: &gatewayv1.ResetOffsetsRequest_ToPosition{}}, "to_position"},
		{"partition out of range", &gatewayv1.ResetOffsetsRequest{Target: &gatewayv1.ResetOffsetsRequest_ToOffsets{ToOffsets: &gatewayv1.PartitionOffsets{
			Offsets: []*gatewayv1.PartitionOffset{{Topic: topic, Partition: 2, Offset: 0}}}}}, "to_offsets.offsets[0].partition"},
		{"topics with offsets", &gatewayv1.ResetOffsetsRequest{Topics: []string{topic}, Target: &gatewayv1.ResetOffsetsRequest_ToOffsets{ToOffsets: &gatewayv1.PartitionOffsets{
			Offsets: []*gatewayv1.PartitionOffset{{Topic: topic, Partition: 0, Offset: 0}}}}}, "topics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reset(tc.req)
			st := requireCode(t, err, codes.InvalidArgument)
			if !strings.HasPrefix(st.Message(), tc.field+":") {
				t.Errorf("message %q does not name %s", st.Message(), tc.field)
			}
		})
	}
	_, err = reset(&gatewayv1.ResetOffsetsRequest{Topics: []string{testenv.UniqueName("missing")},
		Target: &gatewayv1.ResetOffsetsRequest_ToOffset{ToOffset: 0}})
	requireCode(t, err, codes.NotFound)

	// Another client consumes the group: refused, naming it; forced, Kafka
	// refuses; once it has left, the reset goes through.
	stop := externalMember(t, bootstrap, group, topic, "reset-test-client")
	toEarliest := &gatewayv1.ResetOffsetsRequest{Topics: []string{topic},
		Target: &gatewayv1.ResetOffsetsRequest_ToPosition{ToPosition: gatewayv1.ResetPosition_RESET_POSITION_EARLIEST}}
	_, err = reset(toEarliest)
	if st := requireCode(t, err, codes.FailedPrecondition); !strings.Contains(st.Message(), "reset-test-client") {
		t.Errorf("refusal %q does not name the member", st.Message())
	}
	toEarliest.Force = true
	_, err = reset(toEarliest)
	requireCode(t, err, codes.FailedPrecondition)
	if d := describe(t, h, &gatewayv1.DescribeGroupRequest{Group: group}); d.GetRunningHere() || len(d.GetMembers()) != 1 || d.GetMembers()[0].GetThisGateway() {
		t.Errorf("description with the external member: %v", d)
	}
	stop()
	toEarliest.Force = false
	testenv.Eventually(t, 30*time.Second, "the reset to go through once the member left", func() bool {
		_, err := reset(toEarliest)
		return err == nil
	})
	if c := committedOf(describe(t, h, &gatewayv1.DescribeGroupRequest{Group: group})); c[0] != 0 || c[1] != 0 {
		t.Errorf("committed after the reset to earliest = %v", c)
	}
}

// TestResetOffsetsLeavesPartitionsOfAnotherGatewayAlone: two gateways share
// a group; a reset through one moves only what that one consumes, and only
// when forced.
func TestResetOffsetsLeavesPartitionsOfAnotherGatewayAlone(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	group := testenv.UniqueName("g")
	h1, h2 := consumerGateway(t, nil), consumerGateway(t, nil)
	produceTo(t, h1, topic, 0, 10)
	produceTo(t, h1, topic, 1, 10)
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100}
	s1 := openFaultStream(t, h1.consumer(), req, newLedger(), true)
	s2 := openFaultStream(t, h2.consumer(), req, newLedger(), true)
	testenv.Eventually(t, 60*time.Second, "one partition on each gateway", func() bool {
		return len(s1.owned()) == 1 && len(s2.owned()) == 1
	})
	var mine int32
	for p := range s1.owned() {
		mine = p
	}
	offsets := newOffsetReader(t, bootstrap, group, topic, 2)
	testenv.Eventually(t, 30*time.Second, "everything acked and committed", func() bool {
		c := offsets.committed()
		return c[0] == 10 && c[1] == 10
	})

	before1, before2 := s1.deliveredCount(), s2.deliveredCount()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	toEarliest := &gatewayv1.ResetOffsetsRequest{Group: group, Topics: []string{topic},
		Target: &gatewayv1.ResetOffsetsRequest_ToPosition{ToPosition: gatewayv1.ResetPosition_RESET_POSITION_EARLIEST}}
	_, err := h1.admin().ResetOffsets(ctx, toEarliest)
	requireCode(t, err, codes.FailedPrecondition)
	toEarliest.Force = true
	resp, err := h1.admin().ResetOffsets(ctx, toEarliest)
	if err != nil {
		t.Fatalf("forced reset: %v", err)
	}
	for _, p := range resp.GetPartitions() {
		want := gatewayv1.ResetAction_RESET_ACTION_SKIPPED
		if p.GetPartition() == mine {
			want = gatewayv1.ResetAction_RESET_ACTION_REPOSITIONED
		}
		if p.GetAction() != want || (want == gatewayv1.ResetAction_RESET_ACTION_SKIPPED) != (p.GetMemberId() != "") {
			t.Errorf("partition %d: %v; want %v", p.GetPartition(), p, want)
		}
	}
	// Gateway 1's app processes its partition again; gateway 2's is untouched.
	testenv.Eventually(t, 30*time.Second, "the repositioned partition read again and committed", func() bool {
		return len(pick(s1.delivered()[before1:], mine, 0, 10)) == 10 && offsets.committed()[mine] == 10
	})
	if n := s1.deliveredCount() - before1; n != 10 {
		t.Errorf("gateway 1 got %d deliveries after the reset, want the 10 of its partition", n)
	}
	if n := s2.deliveredCount() - before2; n != 0 {
		t.Errorf("gateway 2 got %d deliveries after the reset, want none", n)
	}
	if c := offsets.committed(); c[1-mine] != 10 {
		t.Errorf("the other gateway's partition committed at %d, want 10", c[1-mine])
	}
	s1.requireNoAckErrors(t, "gateway 1")
	s2.requireNoAckErrors(t, "gateway 2")
}

func TestTopicsAreListedAndDescribed(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	h := startGateway(t, nil)
	produceTo(t, h, topic, 1, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	list, err := h.admin().ListTopics(ctx, &gatewayv1.ListTopicsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, tt := range list.GetTopics() {
		found = found || tt.GetName() == topic && tt.GetPartitions() == 3
		if strings.HasPrefix(tt.GetName(), "__") {
			t.Errorf("internal topic %s listed", tt.GetName())
		}
	}
	if !found {
		t.Errorf("topic %s with 3 partitions not in %v", topic, list.GetTopics())
	}
	all, err := h.admin().ListTopics(ctx, &gatewayv1.ListTopicsRequest{IncludeInternal: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all.GetTopics(), func(t *gatewayv1.TopicSummary) bool { return t.GetName() == "__consumer_offsets" && t.GetInternal() }) {
		t.Errorf("__consumer_offsets not listed with include_internal")
	}

	d, err := h.admin().DescribeTopic(ctx, &gatewayv1.DescribeTopicRequest{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetName() != topic || d.GetTopicId() == "" || len(d.GetPartitions()) != 3 {
		t.Fatalf("description = %v", d)
	}
	for i, p := range d.GetPartitions() {
		wantEnd := int64(0)
		if i == 1 {
			wantEnd = 7
		}
		if p.GetPartition() != int32(i) || p.GetLeader().GetId() != 1 || p.GetLeader().GetPort() == 0 ||
			!slices.Equal(p.GetReplicas(), []int32{1}) || !slices.Equal(p.GetIsr(), []int32{1}) || p.GetLogEndOffset() != wantEnd {
			t.Errorf("partition %d = %v; want leader 1, replicas [1], end %d", i, p, wantEnd)
		}
	}
	_, err = h.admin().DescribeTopic(ctx, &gatewayv1.DescribeTopicRequest{Topic: testenv.UniqueName("missing")})
	requireCode(t, err, codes.NotFound)
	_, err = h.admin().DescribeTopic(ctx, &gatewayv1.DescribeTopicRequest{Topic: "a/b"})
	requireCode(t, err, codes.InvalidArgument)
}

// replay runs a replay to its end and returns the last message.
func replay(ctx context.Context, h *harness, req *gatewayv1.ReplayDeadLettersRequest) (*gatewayv1.ReplayDeadLettersResponse, error) {
	stream, err := h.admin().ReplayDeadLetters(ctx, req)
	if err != nil {
		return nil, err
	}
	var last *gatewayv1.ReplayDeadLettersResponse
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return last, err
		}
		last = resp
	}
}

func TestReplayDeadLettersCountsWritesBackOnceAndTheGroupGetsThemAgain(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	groupA, groupB := testenv.UniqueName("a"), testenv.UniqueName("b")
	// Redis makes replayed records' writes idempotent.
	h := consumerGateway(t, func(c *config.Config) {
		c.Dedupe.Redis.Addrs = []string{testenv.Redis(t)}
		c.Dedupe.KeyPrefix = testenv.UniqueName("test") + ":"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var recs []*gatewayv1.Record
	for i := range 10 {
		recs = append(recs, &gatewayv1.Record{Key: []byte("k"), Value: fmt.Appendf(nil, "%d", i), Headers: []*gatewayv1.Header{{Key: "app", Value: []byte("x")}}})
	}
	if _, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs}); err != nil {
		t.Fatal(err)
	}

	// Group A dead-letters values 2, 5 and 7, group B value 8, one at a
	// time so that they land in that order.
	dlqTopic := topic + ".dlq"
	dead := 0
	deadLetter := func(group string, values ...string) *faultStream {
		s := openFaultStream(t, h.consumer(), &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic},
			Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100}, newLedger(), false)
		for _, d := range waitDeliveries(t, s, 10) {
			if !slices.Contains(values, string(d.GetValue())) {
				ack(t, h, group, []*gatewayv1.Delivery{d})
				continue
			}
			if _, err := h.consumer().Nack(ctx, &gatewayv1.NackRequest{Group: group, AckIds: []string{d.GetAckId()}, DeadLetter: true, Reason: "test"}); err != nil {
				t.Fatal(err)
			}
			dead++
			testenv.Eventually(t, 30*time.Second, fmt.Sprintf("dead letter %d", dead), func() bool {
				return len(testenv.ReadTopic(t, bootstrap, dlqTopic)) == dead
			})
		}
		return s
	}
	sA := deadLetter(groupA, "2", "5", "7")
	deadLetter(groupB, "8")
	deadLetters := testenv.ReadTopic(t, bootstrap, dlqTopic)
	aInFirstTwo := 0
	for _, m := range deadLetters[:2] {
		if g, _ := testenv.Header(m, "dlq-group"); g == groupA {
			aInFirstTwo++
		}
	}

	// A dry run counts and writes nothing.
	res, err := replay(ctx, h, &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqTopic, Group: groupA, DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if !res.GetDone() || res.GetTotal() != 4 || res.GetScanned() != 4 || res.GetReplayed() != 3 || res.GetSkipped() != 1 {
		t.Errorf("dry run = %v; want total 4, scanned 4, replayed 3, skipped 1", res)
	}
	if n := len(testenv.ReadTopic(t, bootstrap, topic)); n != 10 {
		t.Fatalf("the dry run wrote: %d records in the topic", n)
	}

	// An offset range.
	end := int64(2)
	res, err = replay(ctx, h, &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqTopic, Group: groupA, EndOffset: &end})
	if err != nil {
		t.Fatalf("replay of [0, 2): %v", err)
	}
	if res.GetTotal() != 2 || res.GetScanned() != 2 || res.GetReplayed() != int64(aInFirstTwo) {
		t.Errorf("replay of [0, 2) = %v; want 2 scanned, %d replayed", res, aInFirstTwo)
	}
	// All of group A's: the ones replayed already are not written again.
	res, err = replay(ctx, h, &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqTopic, Group: groupA})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if res.GetReplayed() != 3 || res.GetSkipped() != 1 {
		t.Errorf("replay = %v; want 3 replayed, 1 skipped", res)
	}
	back := testenv.ReadTopic(t, bootstrap, topic)
	if len(back) != 13 {
		t.Fatalf("%d records in the source topic after the replays, want 10 + 3 (each dead letter once)", len(back))
	}
	originals := map[string]string{} // value → message ID
	for _, m := range back[:10] {
		id, _ := testenv.Header(m, "message-id")
		originals[string(m.Value)] = id
	}
	var values []string
	for _, m := range back[10:] {
		values = append(values, string(m.Value))
		src, _ := testenv.Header(m, "replay-source")
		orig, _ := testenv.Header(m, "replay-original-message-id")
		id, _ := testenv.Header(m, "message-id")
		app, _ := testenv.Header(m, "app")
		if !strings.HasPrefix(src, dlqTopic+"/0/") || orig != originals[string(m.Value)] || id != "replay:"+src || app != "x" {
			t.Errorf("replayed record %s: replay-source %q, original id %q (want %q), message-id %q, app header %q",
				m.Value, src, orig, originals[string(m.Value)], id, app)
		}
		for _, h := range m.Headers {
			if strings.HasPrefix(h.Key, "dlq-") {
				t.Errorf("replayed record %s keeps header %s", m.Value, h.Key)
			}
		}
	}
	slices.Sort(values)
	if !slices.Equal(values, []string{"2", "5", "7"}) {
		t.Errorf("replayed values %v, want 2, 5, 7", values)
	}
	// Group A, still subscribed, receives them again.
	got := waitDeliveries(t, sA, 13)[10:]
	for _, d := range got {
		if !slices.Contains([]string{"2", "5", "7"}, string(d.GetValue())) {
			t.Errorf("group A got %s after the replay", d.GetValue())
		}
	}

	for _, tc := range []struct {
		name string
		req  *gatewayv1.ReplayDeadLettersRequest
		code codes.Code
	}{
		{"unknown topic", &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: testenv.UniqueName("missing")}, codes.NotFound},
		{"unknown target", &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqTopic, TargetTopic: testenv.UniqueName("missing")}, codes.NotFound},
		{"empty topic", &gatewayv1.ReplayDeadLettersRequest{}, codes.InvalidArgument},
		{"partition out of range", &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqTopic, Partition: new(int32(3))}, codes.InvalidArgument},
		{"end before start", &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqTopic, StartOffset: 3, EndOffset: new(int64(1))}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := replay(ctx, h, tc.req)
			requireCode(t, err, tc.code)
		})
	}
}

func TestAdminServiceAccessControl(t *testing.T) {
	t.Parallel()
	h := startGateway(t, func(c *config.Config) {
		c.Identity.Header = "x-gateway-identity"
		c.Admin.AllowedIdentities = []string{"ops"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	as := func(id string) context.Context {
		if id == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "x-gateway-identity", id)
	}
	_, err := h.admin().ListTopics(as(""), &gatewayv1.ListTopicsRequest{})
	if st := requireCode(t, err, codes.PermissionDenied); !strings.Contains(st.Message(), "x-gateway-identity") {
		t.Errorf("message %q does not say how to identify", st.Message())
	}
	_, err = h.admin().ListTopics(as("billing"), &gatewayv1.ListTopicsRequest{})
	requireCode(t, err, codes.PermissionDenied)
	if _, err := h.admin().ListTopics(as("ops"), &gatewayv1.ListTopicsRequest{}); err != nil {
		t.Errorf("ops: %v", err)
	}
	hc, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: gatewayv1.AdminService_ServiceDesc.ServiceName})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("admin health = %v, %v", hc.GetStatus(), err)
	}

	off := startGateway(t, func(c *config.Config) { c.Admin.Enabled = false })
	_, err = off.admin().ListTopics(ctx, &gatewayv1.ListTopicsRequest{})
	requireCode(t, err, codes.Unimplemented)
	_, err = off.health.Check(ctx, &healthpb.HealthCheckRequest{Service: gatewayv1.AdminService_ServiceDesc.ServiceName})
	requireCode(t, err, codes.NotFound)
}

func TestAdminCallsFailUnavailableWhenKafkaIsUnreachable(t *testing.T) {
	t.Parallel()
	h := startGateway(t, func(c *config.Config) {
		c.Kafka.BootstrapServers = "127.0.0.1:1" // nothing listens there
		c.Admin.RequestTimeout = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := h.admin().ListTopics(ctx, &gatewayv1.ListTopicsRequest{})
	requireCode(t, err, codes.Unavailable)
	_, err = h.admin().DescribeGroup(ctx, &gatewayv1.DescribeGroupRequest{Group: "g"})
	requireCode(t, err, codes.Unavailable)
}
