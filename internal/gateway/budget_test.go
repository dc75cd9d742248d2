package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
)

// budgetProducer answers every call, except that a call for topic "hold"
// waits until its context ends.
type budgetProducer struct {
	gatewayv1.UnimplementedProducerServiceServer
	holding chan struct{}
}

func (p budgetProducer) Produce(ctx context.Context, req *gatewayv1.ProduceRequest) (*gatewayv1.ProduceResponse, error) {
	if req.GetTopic() == "hold" {
		p.holding <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &gatewayv1.ProduceResponse{}, nil
}

func (p budgetProducer) ProduceStream(s gatewayv1.ProducerService_ProduceStreamServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// Every call's share of server.max_inflight_request_bytes is given back
// when the call ends, however it ends: answered, refused by gRPC before any
// handler runs (too large, not a valid message, an unknown method), a stream
// cancelled halfway, a connection cut while a call waits. Were one of them
// to keep its share, the budget would shrink with each and the gateway
// would end up refusing every call.
func TestEveryCallGivesItsRequestBytesBackHoweverItEnds(t *testing.T) {
	t.Parallel()
	c := config.Default().Server
	c.MaxRecvBytes = 64 << 10
	c.MaxInflightRequestBytes = 10 * c.MaxRecvBytes
	budget := &requestBudget{max: int64(c.MaxInflightRequestBytes), perCall: int64(c.MaxRecvBytes)}
	srv := grpc.NewServer(serverOptions(c, budget, slog.New(slog.DiscardHandler))...)
	prod := budgetProducer{holding: make(chan struct{}, 1)}
	gatewayv1.RegisterProducerServiceServer(srv, prod)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(1<<20)))
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	conn := dial()
	defer conn.Close()
	client := gatewayv1.NewProducerServiceClient(conn)
	ctx := t.Context()
	code := func(err error) codes.Code { return status.Code(err) }

	for range 20 { // twice the budget's worth of each
		if _, err := client.Produce(ctx, &gatewayv1.ProduceRequest{Topic: "t"}); err != nil {
			t.Fatalf("answered call: %v", err)
		}
		if _, err := client.Produce(ctx, &gatewayv1.ProduceRequest{Topic: "t", Records: []*gatewayv1.Record{{Value: make([]byte, 100<<10)}}}); code(err) != codes.ResourceExhausted {
			t.Fatalf("too large: %v", err)
		}
		if err := conn.Invoke(ctx, "/gateway.v1.ProducerService/NoSuchMethod", &gatewayv1.ProduceRequest{}, &gatewayv1.ProduceResponse{}); code(err) != codes.Unimplemented {
			t.Fatalf("unknown method: %v", err)
		}
		// Not a message: field 1 says 100 bytes follow, and none do.
		if err := conn.Invoke(ctx, "/gateway.v1.ProducerService/Produce", rawMessage{0x0a, 0x64}, &gatewayv1.ProduceResponse{}, grpc.ForceCodecV2(rawCodec{})); code(err) != codes.Internal {
			t.Fatalf("malformed request: %v", err)
		}
		sctx, cancel := context.WithCancel(ctx)
		stream, err := client.ProduceStream(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&gatewayv1.ProduceStreamRequest{Topic: "t"}); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	// A connection cut while its call waits in the handler.
	for range 10 {
		cut := dial()
		go gatewayv1.NewProducerServiceClient(cut).Produce(ctx, &gatewayv1.ProduceRequest{Topic: "hold"})
		<-prod.holding
		cut.Close()
	}

	deadline := time.Now().Add(10 * time.Second)
	for budget.used.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still reserved after every call ended", budget.used.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := client.Produce(ctx, &gatewayv1.ProduceRequest{Topic: "t"}); err != nil {
		t.Fatalf("a call after all that: %v", err)
	}
}

// rawMessage is request bytes sent as they are.
type rawMessage []byte

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawMessage))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}
