package gateway_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestAConsumeStreamDeliversWithinCreditAndSettlesInBand: against the real
// broker, a Consume stream is sent no more records than its app granted,
// each named by a token; the app acks them in the stream and hears each
// settle's outcome, in order; an unknown token is STALE while the rest of
// its settle applies; and the group's commit reaches the end of the topic.
func TestAConsumeStreamDeliversWithinCreditAndSettlesInBand(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	group := testenv.UniqueName("g")
	h := consumerGateway(t, nil)
	const n = 30
	produceRecords(t, h, topic, n, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := h.consumer().Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const window = 4
	err = st.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
		Subscription: &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100},
		Credit:       &gatewayv1.Credit{Records: window, Bytes: 1 << 20},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	var held []uint64
	seq := uint64(0)
	answered := uint64(0)
	for len(seen) < n || answered < seq {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d records: %v", len(seen), err)
		}
		switch f := resp.GetFrame().(type) {
		case *gatewayv1.ConsumeResponse_Deliveries:
			for _, d := range f.Deliveries.GetDeliveries() {
				if d.GetToken() == 0 || d.GetAckId() != "" {
					t.Fatalf("delivery %d/%d: token %x, ack_id %q; want a token and no ack_id", d.GetPartition(), d.GetOffset(), d.GetToken(), d.GetAckId())
				}
				seen[int64(d.GetPartition())<<32|d.GetOffset()] = true
				held = append(held, d.GetToken())
			}
			if len(held) > window {
				t.Fatalf("%d records held on a credit of %d", len(held), window)
			}
			if len(held) == window || len(seen) == n {
				seq++
				// Ack what is held, plus a made-up token; grant as much again.
				acks := append(held, held[0]^0x5a5a)
				if err := st.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Settle{Settle: &gatewayv1.Settle{
					Sequence: seq, Acks: acks, Credit: &gatewayv1.Credit{Records: int64(len(held)), Bytes: 1 << 20},
				}}}); err != nil {
					t.Fatal(err)
				}
				held = nil
			}
		case *gatewayv1.ConsumeResponse_Settled:
			answered++
			s := f.Settled
			if s.GetSequence() != answered {
				t.Fatalf("settled %d, want %d: out of order", s.GetSequence(), answered)
			}
			acks := s.GetAcks()
			for i, o := range acks[:len(acks)-1] {
				if o != gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED {
					t.Fatalf("settle %d ack %d: %v", s.GetSequence(), i, o)
				}
			}
			if o := acks[len(acks)-1]; o != gatewayv1.SettleOutcome_SETTLE_OUTCOME_STALE {
				t.Fatalf("settle %d: a made-up token got %v, want STALE", s.GetSequence(), o)
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records delivered, want %d", len(seen), n)
	}
	offsets := newOffsetReader(t, bootstrap, group, topic, 2)
	testenv.Eventually(t, 20*time.Second, "the commit at the end of the topic", func() bool {
		c := offsets.committed()
		return c[0]+c[1] == n
	})
}

// TestAConsumeStreamRefusesBadMessagesNamingTheField: each malformed
// message ends the stream with INVALID_ARGUMENT naming what was wrong.
func TestAConsumeStreamRefusesBadMessagesNamingTheField(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := consumerGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := func() *gatewayv1.ConsumeRequest {
		return &gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
			Subscription: &gatewayv1.SubscribeRequest{Group: testenv.UniqueName("g"), Topics: []string{topic}},
		}}}
	}
	for _, tc := range []struct {
		name  string
		msgs  []*gatewayv1.ConsumeRequest
		field string
	}{
		{"credit first", []*gatewayv1.ConsumeRequest{{Request: &gatewayv1.ConsumeRequest_Credit{Credit: &gatewayv1.Credit{Records: 1}}}}, "start"},
		{"negative credit", []*gatewayv1.ConsumeRequest{start(), {Request: &gatewayv1.ConsumeRequest_Credit{Credit: &gatewayv1.Credit{Records: -1}}}}, "credit.records"},
		{"a second start", []*gatewayv1.ConsumeRequest{start(), start()}, "start"},
		{"an extension too long", []*gatewayv1.ConsumeRequest{start(), {Request: &gatewayv1.ConsumeRequest_Settle{Settle: &gatewayv1.Settle{
			Extends: []uint64{1}, Extension: durationpb.New(48 * time.Hour)}}}}, "settle.extension"},
		{"a negative retry_after", []*gatewayv1.ConsumeRequest{start(), {Request: &gatewayv1.ConsumeRequest_Settle{Settle: &gatewayv1.Settle{
			Nacks: []uint64{1}, RetryAfter: durationpb.New(-time.Second)}}}}, "settle.retry_after"},
		{"a bad subscription", []*gatewayv1.ConsumeRequest{{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
			Subscription: &gatewayv1.SubscribeRequest{Topics: []string{topic}}}}}}, "group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := h.consumer().Consume(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.msgs {
				if err := st.Send(m); err != nil {
					break // the gateway ended the stream already
				}
			}
			for {
				_, err := st.Recv()
				if err == nil {
					continue // the assignment frame
				}
				requireCode(t, err, codes.InvalidArgument)
				if !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("%v does not name %s", err, tc.field)
				}
				return
			}
		})
	}
	// The gateway is healthy afterwards.
	if _, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("x")}}}); err != nil {
		t.Fatalf("a produce after the bad streams: %v", err)
	}
}

// TestLargeRecordsReachAClientWithGRPCsDefaultMessageLimit: a client that
// leaves gRPC's limit on received messages at its default (4 MiB) gets
// every record of 12 MiB of 512 KiB records with room for all of them in
// flight, on Subscribe and on Consume: the gateway spreads them over frames
// that fit, instead of one frame the client must refuse (which would end
// the stream and send the same frame again to the next one).
func TestLargeRecordsReachAClientWithGRPCsDefaultMessageLimit(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h := consumerGateway(t, nil)
	const n, size = 24, 512 << 10
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := 0; i < n; i += 4 {
		var recs []*gatewayv1.Record
		for j := i; j < i+4; j++ {
			recs = append(recs, &gatewayv1.Record{Key: []byte(strconv.Itoa(j)), Value: bytes.Repeat([]byte{byte('a' + j%26)}, size)})
		}
		if _, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs}); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	// readAll takes deliveries from next until every record has come, each
	// whole.
	readAll := func(t *testing.T, next func() (*gatewayv1.Deliveries, error)) {
		t.Helper()
		seen := map[int64]bool{}
		for len(seen) < n {
			ds, err := next()
			if err != nil {
				t.Fatalf("after %d of %d records: %v", len(seen), n, err)
			}
			for _, d := range ds.GetDeliveries() {
				if len(d.GetValue()) != size || d.GetValue()[0] != byte('a'+d.GetOffset()%26) {
					t.Fatalf("offset %d: %d bytes of %q, want %d of %q", d.GetOffset(), len(d.GetValue()), d.GetValue()[:1], size, byte('a'+d.GetOffset()%26))
				}
				seen[d.GetOffset()] = true
			}
		}
	}
	t.Run("subscribe", func(t *testing.T) {
		st, err := h.consumer().Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: testenv.UniqueName("g"), Topics: []string{topic},
			StartPosition: gatewayv1.StartPosition_START_POSITION_EARLIEST, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100})
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, func() (*gatewayv1.Deliveries, error) {
			resp, err := st.Recv()
			return resp.GetDeliveries(), err
		})
	})
	t.Run("consume", func(t *testing.T) {
		st, err := h.consumer().Consume(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
			Subscription: &gatewayv1.SubscribeRequest{Group: testenv.UniqueName("g"), Topics: []string{topic},
				StartPosition: gatewayv1.StartPosition_START_POSITION_EARLIEST, Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 100},
			Credit: &gatewayv1.Credit{Records: 100, Bytes: 1 << 30},
		}}}); err != nil {
			t.Fatal(err)
		}
		readAll(t, func() (*gatewayv1.Deliveries, error) {
			resp, err := st.Recv()
			return resp.GetDeliveries(), err
		})
	})
}
