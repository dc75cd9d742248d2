package gateway_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestOversizeMessagesAndStreamFloodsAreRefusedWhileNormalTrafficContinues
// sends a request larger than server.max_recv_bytes and opens more streams
// than server.max_streams: the first is refused RESOURCE_EXHAUSTED by gRPC,
// the streams over the limit RESOURCE_EXHAUSTED by the gateway, and all the
// while ordinary produce calls still succeed; closing a stream frees its
// place.
func TestOversizeMessagesAndStreamFloodsAreRefusedWhileNormalTrafficContinues(t *testing.T) {
	t.Parallel()
	const maxStreams = 4
	h := startGateway(t, func(c *config.Config) {
		c.Producer.MaxRecordBytes = 64 << 10
		c.Server.MaxRecvBytes = 128 << 10
		c.Server.MaxStreams = maxStreams
	})
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	_, err := h.producer.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic,
		Records: []*gatewayv1.Record{{Value: make([]byte, 200<<10)}}})
	requireCode(t, err, codes.ResourceExhausted)
	h.requireHealthy(t, topic)

	// A flood of streams on one connection: the first maxStreams are open
	// (each answers a batch), the rest are refused.
	var open []context.CancelFunc
	defer func() {
		for _, c := range open {
			c()
		}
	}()
	for i := range maxStreams + 3 {
		sctx, scancel := context.WithCancel(ctx)
		st, err := h.producer.ProduceStream(sctx)
		if err != nil {
			scancel()
			t.Fatal(err)
		}
		if err := st.Send(&gatewayv1.ProduceStreamRequest{RequestId: "r", Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("x")}}}); err != nil {
			scancel()
			t.Fatalf("stream %d: send: %v", i, err)
		}
		_, err = st.Recv()
		if i < maxStreams {
			if err != nil {
				scancel()
				t.Fatalf("stream %d of %d allowed: %v", i+1, maxStreams, err)
			}
			open = append(open, scancel)
			continue
		}
		scancel()
		requireCode(t, err, codes.ResourceExhausted)
	}
	// Subscribe counts too, and is refused before it joins anything.
	sub, err := gatewayv1.NewConsumerServiceClient(h.conn).Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: testenv.UniqueName("g"), Topics: []string{topic}})
	if err == nil {
		_, err = sub.Recv()
	}
	requireCode(t, err, codes.ResourceExhausted)
	h.requireHealthy(t, topic)

	// A closed stream gives its place back.
	open[0]()
	open = open[1:]
	testenv.Eventually(t, 10*time.Second, "a new stream after one closed", func() bool {
		st, err := h.producer.ProduceStream(ctx)
		if err != nil {
			return false
		}
		defer func() { _ = st.CloseSend() }()
		if st.Send(&gatewayv1.ProduceStreamRequest{RequestId: "again", Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("y")}}}) != nil {
			return false
		}
		_, err = st.Recv()
		return err == nil
	})
}
