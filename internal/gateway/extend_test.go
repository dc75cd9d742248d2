package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestASlowAppThatExtendsKeepsItsRecordAndOneThatStopsLosesIt: against the
// real broker and Redis, with dedupe on, an app that takes three times its
// ack timeout but extends its lease gets no redelivery, on its stream or on
// another app's, and its claim in Redis moves with the deadline; an app
// that stops extending sees the record go out again once its last deadline
// passes.
func TestASlowAppThatExtendsKeepsItsRecordAndOneThatStopsLosesIt(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	var prefix string
	h := dedupeGateway(t, redisAddr, func(c *config.Config) { prefix = c.Dedupe.KeyPrefix })
	produceRecords(t, h, topic, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ackTimeout = time.Second
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE,
		MaxInFlight: 1, AckTimeout: durationpb.New(ackTimeout)}
	deliveries := func(name string) <-chan *gatewayv1.Delivery {
		st, err := h.consumer().Subscribe(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		out := make(chan *gatewayv1.Delivery, 10)
		go func() {
			for {
				resp, err := st.Recv()
				if err != nil {
					return
				}
				for _, d := range resp.GetDeliveries().GetDeliveries() {
					out <- d
				}
			}
		}()
		return out
	}
	// Two apps, one record in flight each.
	a, b := deliveries("a"), deliveries("b")
	var slow, quitter *gatewayv1.Delivery
	for range 2 {
		select {
		case d := <-a:
			slow = d
		case d := <-b:
			quitter = d
		case <-ctx.Done():
			t.Fatal("not both records delivered")
		}
	}
	if slow == nil || quitter == nil {
		t.Fatalf("each app should hold one record: a %v, b %v", slow, quitter)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	claim := prefix + "dedupe:" + group + ":" + topic + ":" + slow.GetMessageId()

	extend := func(d *gatewayv1.Delivery, by time.Duration) *gatewayv1.ExtendResponse {
		t.Helper()
		resp, err := h.consumer().Extend(ctx, &gatewayv1.ExtendRequest{Group: group, AckIds: []string{d.GetAckId()}, Extension: durationpb.New(by)})
		if err != nil {
			t.Fatalf("Extend: %v", err)
		}
		return resp
	}
	// The quitter extends once, then stops.
	extend(quitter, ackTimeout)
	// The slow app works for three ack timeouts, extending every half.
	for end := time.Now().Add(3 * ackTimeout); time.Now().Before(end); {
		time.Sleep(ackTimeout / 2)
		resp := extend(slow, ackTimeout)
		if until := time.Until(resp.GetAckDeadlines()[0].AsTime()); until < ackTimeout/2 || until > ackTimeout {
			t.Fatalf("the new ack deadline is %v away, want about %v", until, ackTimeout)
		}
		if ttl := rdb.PTTL(ctx, claim).Val(); ttl < ackTimeout {
			t.Fatalf("the claim in Redis lives %v more, less than the deadline just granted", ttl)
		}
	}
	// Meanwhile the quitter's record went out again (to either app, and
	// again each time its new delivery's deadline passed), and the slow
	// app's did not.
	var again *gatewayv1.Delivery
	checkRedelivery := func(d *gatewayv1.Delivery) {
		t.Helper()
		if d.GetOffset() != quitter.GetOffset() || d.GetAttempt() < 2 {
			t.Fatalf("redelivered offset %d attempt %d; only the quitter's record (%d) should go out again", d.GetOffset(), d.GetAttempt(), quitter.GetOffset())
		}
		again = d
	}
	for again == nil {
		select {
		case d := <-a:
			checkRedelivery(d)
		case d := <-b:
			checkRedelivery(d)
		case <-ctx.Done():
			t.Fatal("the record of the app that stopped extending was not redelivered")
		}
	}
	if _, err := h.consumer().Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{slow.GetAckId()}}); err != nil {
		t.Fatalf("the slow app's ack after extending: %v", err)
	}
	if v := rdb.Get(ctx, claim).Val(); !dedupe.IsDone(v) {
		t.Fatalf("the slow app's message holds %q in Redis, want the done marker", v)
	}
	// The quitter's late Extend and Ack are refused: its record went out again.
	_, err := h.consumer().Extend(ctx, &gatewayv1.ExtendRequest{Group: group, AckIds: []string{quitter.GetAckId()}, Extension: durationpb.New(ackTimeout)})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("the quitter's late Extend: %v, want FAILED_PRECONDITION", err)
	}
	_, err = h.consumer().Extend(ctx, &gatewayv1.ExtendRequest{Group: group, AckIds: []string{again.GetAckId()}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "extension") {
		t.Fatalf("Extend without an extension: %v, want INVALID_ARGUMENT naming extension", err)
	}
	for {
		select {
		case d := <-a:
			checkRedelivery(d)
		case d := <-b:
			checkRedelivery(d)
		default:
			return
		}
	}
}
