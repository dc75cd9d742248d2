package gateway_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

// server.health_listen answers grpc.health.v1 for kubelet probes on the pod
// network, and nothing else: no produce, consume, admin or reflection.
func TestTheHealthListenerServesHealthAndNothingElse(t *testing.T) {
	t.Parallel()
	h := startGateway(t, func(c *config.Config) {
		c.Server.HealthListen = "127.0.0.1:0"
		c.Server.Reflection = true
	})
	conn, err := grpc.NewClient(h.gw.HealthAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testenv.Eventually(t, 10*time.Second, "the health listener to report SERVING", func() bool {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	_, err = gatewayv1.NewProducerServiceClient(conn).Produce(ctx, &gatewayv1.ProduceRequest{Topic: "t", Records: []*gatewayv1.Record{{Value: []byte("x")}}})
	requireCode(t, err, codes.Unimplemented)
	_, err = gatewayv1.NewConsumerServiceClient(conn).Ack(ctx, &gatewayv1.AckRequest{Group: "g", AckIds: []string{"x"}})
	requireCode(t, err, codes.Unimplemented)
	_, err = gatewayv1.NewAdminServiceClient(conn).ListTopics(ctx, &gatewayv1.ListTopicsRequest{})
	requireCode(t, err, codes.Unimplemented)
}
