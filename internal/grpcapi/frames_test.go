package grpcapi

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/consume"
)

// toProtoDeliveries is the reference: the deliveries as protobuf messages,
// as the gateway built them before it wrote frames straight to the wire.
func toProtoDeliveries(in []consume.Delivery) *gatewayv1.Deliveries {
	out := &gatewayv1.Deliveries{}
	for _, d := range in {
		pd := &gatewayv1.Delivery{
			AckId:     d.AckID,
			Token:     d.Token,
			Topic:     d.Topic,
			Partition: d.Partition,
			Offset:    d.Offset,
			Key:       d.Key,
			Value:     d.Value,
			MessageId: d.ID(),
			Attempt:   d.Attempt,
			Timestamp: &timestamppb.Timestamp{Seconds: d.Timestamp.Unix(), Nanos: int32(d.Timestamp.Nanosecond())},
		}
		if !d.AckDeadline.IsZero() {
			pd.AckDeadline = timestamppb.New(d.AckDeadline)
		}
		for _, h := range d.Headers {
			pd.Headers = append(pd.Headers, &gatewayv1.Header{Key: h.Key, Value: h.Value})
		}
		out.Deliveries = append(out.Deliveries, pd)
	}
	return out
}

// randomDeliveries covers every field at its zero value and beyond it:
// null, empty and long keys and values, headers with empty names and
// values, negative numbers, timestamps before 1970 and the zero time.
func randomDeliveries(rng *rand.Rand, n int) []consume.Delivery {
	bs := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		case 2:
			return bytes.Repeat([]byte{byte(rng.IntN(256))}, 1+rng.IntN(300))
		}
		return []byte("k")
	}
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return string(bytes.Repeat([]byte("x"), rng.IntN(200)))
	}
	tm := func() time.Time {
		switch rng.IntN(4) {
		case 0:
			return time.Time{}
		case 1:
			return time.Unix(-rng.Int64N(1e10), rng.Int64N(1e9))
		case 2:
			return time.UnixMilli(rng.Int64N(1e13))
		}
		return time.Unix(rng.Int64N(1e10), 0)
	}
	i32 := func() int32 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -1 - rng.Int32N(math.MaxInt32)
		}
		return rng.Int32()
	}
	ds := make([]consume.Delivery, n)
	for i := range ds {
		d := &ds[i]
		d.AckID, d.Topic, d.MessageID = str(), str(), str()
		d.Partition, d.Attempt = i32(), i32()
		d.Offset = rng.Int64() - math.MaxInt64/2
		if rng.IntN(4) == 0 {
			d.Offset = 0
		}
		if rng.IntN(3) > 0 {
			d.Token = rng.Uint64()
		}
		d.Key, d.Value = bs(), bs()
		for range rng.IntN(4) {
			d.Headers = append(d.Headers, consume.Header{Key: str(), Value: bs()})
		}
		d.Timestamp, d.AckDeadline = tm(), tm()
	}
	return ds
}

// A Deliveries frame written straight from the deliveries is byte for byte
// what the generated code writes for the same frame as protobuf messages,
// as a Subscribe response and as a Consume response, and decodes to the
// same deliveries through the codec the gateway registers.
func TestDeliveriesFrameIsTheGeneratedEncoding(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 7, 100, 600} {
		for range 20 {
			ds := randomDeliveries(rng, n)
			ref := toProtoDeliveries(ds)
			want, err := (&gatewayv1.SubscribeResponse{Frame: &gatewayv1.SubscribeResponse_Deliveries{Deliveries: ref}}).MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			wantConsume, err := (&gatewayv1.ConsumeResponse{Frame: &gatewayv1.ConsumeResponse_Deliveries{Deliveries: ref}}).MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(want, wantConsume) {
				t.Fatal("the two responses no longer carry deliveries in the same field")
			}
			f := &deliveriesFrame{ds: ds}
			got, err := codec{}.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			wire := got.Materialize()
			got.Free()
			if !bytes.Equal(wire, want) {
				t.Fatalf("%d deliveries: frame differs from the generated encoding\n got %x\nwant %x", n, wire, want)
			}
			var back gatewayv1.ConsumeResponse
			if err := proto.Unmarshal(wire, &back); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(back.GetDeliveries(), ref) && n > 0 {
				t.Fatalf("%d deliveries decode to something else", n)
			}
		}
	}
}

// The codec refuses to write a frame into a buffer sized for another (a
// frame whose deliveries changed between sizing and writing), rather than
// send a corrupt message.
func TestDeliveriesFrameRefusesAStaleSize(t *testing.T) {
	t.Parallel()
	ds := randomDeliveries(rand.New(rand.NewPCG(3, 4)), 3)
	f := &deliveriesFrame{ds: ds}
	buf := make([]byte, f.SizeVT())
	f.ds = append(f.ds, consume.Delivery{Topic: "more"})
	if _, err := f.MarshalToSizedBufferVT(buf); err == nil {
		t.Error("a frame sized for 3 deliveries was written with 4")
	}
	f.ds = ds
	ds[0].Topic += "longer"
	if _, err := f.MarshalToSizedBufferVT(buf); err == nil {
		t.Error("a frame whose delivery grew after sizing was written")
	}
}
