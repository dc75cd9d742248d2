package grpcapi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/produce"
)

// presence is one key or value as the API sees it: null (unset) or a byte
// string, possibly empty.
type presence struct {
	null bool
	s    string
}

var null = presence{null: true}

func bytesOf(p presence) []byte {
	if p.null {
		return nil
	}
	return []byte(p.s)
}

func presenceOf(b []byte) presence {
	if b == nil {
		return null
	}
	return presence{s: string(b)}
}

func (p presence) String() string {
	if p.null {
		return "null"
	}
	return "set " + `"` + p.s + `"`
}

// nullAndEmpty are the keys and values whose presence must survive the API.
var nullAndEmpty = []struct {
	name       string
	key, value presence
}{
	{"null key and null value", null, null},
	{"empty key and empty value", presence{}, presence{}},
	{"null key, empty value", null, presence{}},
	{"empty key, null value (a tombstone)", presence{}, null},
	{"a key and a null value (a tombstone)", presence{s: "k"}, null},
	{"a key and a value", presence{s: "k"}, presence{s: "v"}},
}

// capturingProducer accepts every record and keeps what the adapter handed
// to the domain.
type capturingProducer struct {
	mu      sync.Mutex
	records []produce.Record
}

func (p *capturingProducer) keep(records []produce.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records = append(p.records, records...)
}

func (p *capturingProducer) taken() []produce.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.records
	p.records = nil
	return out
}

func (p *capturingProducer) Produce(_ context.Context, _ string, records []produce.Record) ([]produce.Result, error) {
	p.keep(records)
	return make([]produce.Result, len(records)), nil
}

func (p *capturingProducer) Send(_ context.Context, _ string, records []produce.Record, notify chan<- *produce.Batch, tag any) (*produce.Batch, error) {
	p.keep(records)
	b := &produce.Batch{Tag: tag, Results: make([]produce.Result, len(records))}
	notify <- b
	return b, nil
}

func (p *capturingProducer) Idempotent([]produce.Record) bool { return false }

// A compacted topic deletes a key with a tombstone: a record whose value is
// null. The API used to have no null: an unset value was written as an
// empty value and an empty key as no key, so an app could not send a
// tombstone. Now an unset key or value reaches the producer as nil (null)
// and a set one, even empty, as that byte string, through Produce and
// ProduceStream alike, as a client sends them over the wire.
func TestProduceKeepsANullKeyOrValueApartFromAnEmptyOne(t *testing.T) {
	t.Parallel()
	p := &capturingProducer{}
	srv := grpc.NewServer()
	gatewayv1.RegisterProducerServiceServer(srv, NewProducerServer(p, Guard{}, slog.New(slog.DiscardHandler), 4, make(chan struct{})))
	ln := bufconn.Listen(1 << 20)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := gatewayv1.NewProducerServiceClient(conn)

	var records []*gatewayv1.Record
	for _, tc := range nullAndEmpty {
		records = append(records, &gatewayv1.Record{Key: bytesOf(tc.key), Value: bytesOf(tc.value)})
	}
	ctx := context.Background()
	calls := map[string]func() error{
		"Produce": func() error {
			_, err := client.Produce(ctx, &gatewayv1.ProduceRequest{Topic: "t", Records: records})
			return err
		},
		"ProduceStream": func() error {
			stream, err := client.ProduceStream(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&gatewayv1.ProduceStreamRequest{RequestId: "r", Topic: "t", Records: records}); err != nil {
				return err
			}
			if err := stream.CloseSend(); err != nil {
				return err
			}
			for {
				if _, err := stream.Recv(); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
			}
		},
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := p.taken()
		if len(got) != len(nullAndEmpty) {
			t.Fatalf("%s: the producer got %d records, want %d", name, len(got), len(nullAndEmpty))
		}
		for i, tc := range nullAndEmpty {
			if k, v := presenceOf(got[i].Key), presenceOf(got[i].Value); k != tc.key || v != tc.value {
				t.Errorf("%s, %s: the producer got key %v, value %v; want key %v, value %v", name, tc.name, k, v, tc.key, tc.value)
			}
		}
	}
}

// A consumer must tell a tombstone (null value) from an empty value, and a
// record without a key from one with an empty key. The API's bytes fields
// had no presence, so both arrived as empty. Now a nil key or value of a
// delivery is unset on the wire and a non-nil empty one is set and empty,
// as a client decodes the frame.
func TestDeliveriesKeepANullKeyOrValueApartFromAnEmptyOne(t *testing.T) {
	t.Parallel()
	var f consume.Frame
	for _, tc := range nullAndEmpty {
		f.Deliveries = append(f.Deliveries, consume.Delivery{Topic: "t", Key: bytesOf(tc.key), Value: bytesOf(tc.value)})
	}
	buf, err := codec{}.Marshal(&deliveriesFrame{ds: f.Deliveries})
	if err != nil {
		t.Fatal(err)
	}
	wire := buf.Materialize()
	var got gatewayv1.SubscribeResponse
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	ds := got.GetDeliveries().GetDeliveries()
	if len(ds) != len(nullAndEmpty) {
		t.Fatalf("%d deliveries decoded, want %d", len(ds), len(nullAndEmpty))
	}
	for i, tc := range nullAndEmpty {
		if k, v := presenceOf(ds[i].Key), presenceOf(ds[i].Value); k != tc.key || v != tc.value {
			t.Errorf("%s: the client decoded key %v, value %v; want key %v, value %v", tc.name, k, v, tc.key, tc.value)
		}
	}
}
