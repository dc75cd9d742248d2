package grpcapi

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	gproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// streamBatch is a ProduceStream batch of n records shaped like the
// benchmark's: a key, a 100-byte value.
func streamBatch(n int) *gatewayv1.ProduceStreamRequest {
	req := &gatewayv1.ProduceStreamRequest{RequestId: "batch-1", Topic: "orders"}
	for i := range n {
		req.Records = append(req.Records, &gatewayv1.Record{Key: []byte(fmt.Sprintf("key-%d", i%64)), Value: make([]byte, 100)})
	}
	return req
}

func streamResults(n int) *gatewayv1.ProduceStreamResponse {
	resp := &gatewayv1.ProduceStreamResponse{RequestId: "batch-1"}
	ts := timestamppb.Now()
	for i := range n {
		resp.Results = append(resp.Results, &gatewayv1.RecordResult{Partition: int32(i % 6), Offset: int64(1_000_000 + i), Timestamp: ts,
			MessageId: "01a24b02-16cb-7002-a22b-5a0f9a1f90d3"})
	}
	return resp
}

// sameRecords reports whether two decodings of records agree, keys and
// values compared with their presence (nil is null, non-nil empty is
// empty), which proto.Equal alone would also check for optional fields.
func sameRecords(t *testing.T, got, want []*gatewayv1.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !gproto.Equal(got[i], want[i]) {
			t.Fatalf("record %d: %v, want %v", i, got[i], want[i])
		}
		if (got[i].Key == nil) != (want[i].Key == nil) || (got[i].Value == nil) != (want[i].Value == nil) {
			t.Fatalf("record %d: null and empty mixed up: key %v value %v, want key %v value %v", i, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
}

// The gateway's codec decodes produce requests as the protobuf library
// does: null and empty keys and values, headers, partitions, timestamps,
// idempotency keys, and fields it does not know (kept); and a request the
// library refuses (a string that is not UTF-8) it refuses too.
func TestTheCodecDecodesProduceRequestsAsTheLibraryDoes(t *testing.T) {
	ours := encoding.GetCodecV2(proto.Name)
	library := ours.(codec).fallback
	p := int32(2)
	req := &gatewayv1.ProduceStreamRequest{RequestId: "r-1", Topic: "orders", Records: []*gatewayv1.Record{
		{},
		{Key: []byte{}, Value: []byte{}},
		{Key: []byte("k"), Value: []byte("v"), Partition: &p, Timestamp: timestamppb.Now(), IdempotencyKey: "idem-1",
			Headers: []*gatewayv1.Header{{Key: "a", Value: []byte("1")}, {Key: "b"}}},
		{Value: []byte("tombstone-free")},
		{Key: []byte("tombstone")},
	}}
	raw, err := gproto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, 0xf8, 0x01, 0x07) // field 31, varint 7: unknown to the gateway
	data := mem.BufferSlice{mem.SliceBuffer(raw)}
	var got, want gatewayv1.ProduceStreamRequest
	if err := ours.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if err := library.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if !gproto.Equal(&got, &want) {
		t.Fatalf("decoded %v, want %v", &got, &want)
	}
	sameRecords(t, got.Records, want.Records)

	// Unary requests too.
	unary, _ := gproto.Marshal(&gatewayv1.ProduceRequest{Topic: "orders", Records: req.Records})
	var gotU, wantU gatewayv1.ProduceRequest
	if err := ours.Unmarshal(mem.BufferSlice{mem.SliceBuffer(unary)}, &gotU); err != nil {
		t.Fatal(err)
	}
	if err := library.Unmarshal(mem.BufferSlice{mem.SliceBuffer(unary)}, &wantU); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, gotU.Records, wantU.Records)

	// Strings that are not UTF-8, which the library refuses (the wire
	// format is written by hand: the library will not marshal them).
	str := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	msg := func(num protowire.Number, body []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), body)
	}
	for name, raw := range map[string][]byte{
		"topic":           str(2, "ord\xffers"),
		"request id":      str(1, "\xfe"),
		"header key":      msg(3, msg(3, str(1, "\xff"))),
		"idempotency key": msg(3, str(6, "\xff")),
	} {
		var got, want gatewayv1.ProduceStreamRequest
		errLib := library.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &want)
		errOurs := ours.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &got)
		if errLib == nil || errOurs == nil {
			t.Errorf("%s not UTF-8: library %v, gateway %v; want both refused", name, errLib, errOurs)
		}
	}
}

func BenchmarkCodec(b *testing.B) {
	ours := encoding.GetCodecV2(proto.Name)
	library := ours.(codec).fallback
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"library", library}, {"gateway", ours}} {
		b.Run("unmarshal-request-1000/"+c.name, func(b *testing.B) {
			raw, _ := gproto.Marshal(streamBatch(1000))
			data := mem.BufferSlice{mem.SliceBuffer(raw)}
			b.ReportAllocs()
			for b.Loop() {
				var req gatewayv1.ProduceStreamRequest
				if err := c.codec.Unmarshal(data, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("marshal-response-1000/"+c.name, func(b *testing.B) {
			resp := streamResults(1000)
			b.ReportAllocs()
			for b.Loop() {
				out, err := c.codec.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
	}
}

// FuzzCodec: for any bytes, the gateway's codec and the protobuf library
// agree on a produce request: both refuse it, or both decode the same
// records, null and empty apart. One difference is allowed: a string field
// given twice, the first time not UTF-8, is refused by the library and
// taken by the gateway with its last, valid, value. (Fields a record's
// timestamp does not know send the request to the library; the library
// keeps them as unknown fields, which the comparison ignores.)
func FuzzCodec(f *testing.F) {
	seed, _ := gproto.Marshal(&gatewayv1.ProduceStreamRequest{RequestId: "r", Topic: "t", Records: []*gatewayv1.Record{
		{Key: []byte{}, Headers: []*gatewayv1.Header{{Key: "h", Value: []byte("v")}}, IdempotencyKey: "i"}, {Value: []byte("v")}}})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x1a, 0x00})
	ours := encoding.GetCodecV2(proto.Name)
	library := ours.(codec).fallback
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got, want gatewayv1.ProduceStreamRequest
		errOurs := ours.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &got)
		errLib := library.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &want)
		if errOurs == nil && errLib != nil && strings.Contains(errLib.Error(), "UTF-8") && wellFormed(&got, raw) {
			return // an overwritten string that was not UTF-8
		}
		if (errOurs == nil) != (errLib == nil) {
			t.Fatalf("gateway %v, library %v", errOurs, errLib)
		}
		if errLib != nil {
			return
		}
		for _, r := range append(got.Records, want.Records...) {
			if ts := r.GetTimestamp(); ts != nil {
				ts.ProtoReflect().SetUnknown(nil)
			}
		}
		if !gproto.Equal(&got, &want) {
			t.Fatalf("decoded %v, want %v", &got, &want)
		}
		sameRecords(t, got.Records, want.Records)
	})
}

// TestTheCodecEncodesStreamFramesAsTheLibraryDecodesThem: the frames of
// Subscribe and Consume streams, marshalled by the generated code, decode
// with the library to the same messages: null and empty keys and values,
// tokens, outcomes and timestamps included.
func TestTheCodecEncodesStreamFramesAsTheLibraryDecodesThem(t *testing.T) {
	c := encoding.GetCodecV2(proto.Name)
	ts := timestamppb.Now()
	deliveries := &gatewayv1.Deliveries{Deliveries: []*gatewayv1.Delivery{
		{AckId: "t/0/1/2/3/abc", Topic: "t", Partition: 2, Offset: 1 << 40, Key: []byte{}, Value: nil, Timestamp: ts, AckDeadline: ts,
			MessageId: "m", Attempt: 3, Headers: []*gatewayv1.Header{{Key: "h", Value: []byte("v")}, {Key: "empty"}}},
		{Token: 0xfedcba9876543210, Topic: "t", Key: nil, Value: []byte{}},
		{Token: 1, Topic: "t", Key: []byte("k"), Value: []byte("v")},
	}}
	for _, m := range []gproto.Message{
		&gatewayv1.SubscribeResponse{Frame: &gatewayv1.SubscribeResponse_Deliveries{Deliveries: deliveries}},
		&gatewayv1.SubscribeResponse{Frame: &gatewayv1.SubscribeResponse_Assignment{Assignment: &gatewayv1.Assignment{
			Assigned: []*gatewayv1.TopicPartition{{Topic: "a", Partition: 1}}, Revoked: []*gatewayv1.TopicPartition{{Topic: "b"}}}}},
		&gatewayv1.ConsumeResponse{Frame: &gatewayv1.ConsumeResponse_Deliveries{Deliveries: deliveries}},
		&gatewayv1.ConsumeResponse{Frame: &gatewayv1.ConsumeResponse_Settled{Settled: &gatewayv1.Settled{Sequence: 7,
			Acks:         []gatewayv1.SettleOutcome{gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED, gatewayv1.SettleOutcome_SETTLE_OUTCOME_STALE},
			Extends:      []gatewayv1.SettleOutcome{gatewayv1.SettleOutcome_SETTLE_OUTCOME_PENDING},
			AckDeadlines: []*timestamppb.Timestamp{{}, ts}}}},
	} {
		if _, ok := fastMarshal(m); !ok {
			t.Fatalf("%T is not on the fast path", m)
		}
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := gproto.Unmarshal(data.Materialize(), got); err != nil {
			t.Fatal(err)
		}
		if !gproto.Equal(got, m) {
			t.Errorf("%T: decoded %v, want %v", m, got, m)
		}
	}
}

// The codec's buffers come back dirty from earlier messages; what it sends
// holds none of those bytes, whatever the message's size.
func TestTheCodecSendsNoBytesOfAnEarlierMessage(t *testing.T) {
	c := encoding.GetCodecV2(proto.Name)
	for _, n := range []int{30, 100, 1000, 5000} {
		// Dirty every buffer the size of this message could take.
		want, err := gproto.Marshal(streamResults(n))
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			buf := marshalBuffers.Get(len(want))
			for i := range *buf {
				(*buf)[i] = 0xff
			}
			marshalBuffers.Put(buf)
		}
		data, err := c.Marshal(streamResults(n))
		if err != nil {
			t.Fatal(err)
		}
		got := data.Materialize()
		data.Free()
		var decoded gatewayv1.ProduceStreamResponse
		if err := gproto.Unmarshal(got, &decoded); err != nil {
			t.Fatalf("%d results: %v", n, err)
		}
		if len(got) != len(want) || len(decoded.Results) != n {
			t.Fatalf("%d results: %d bytes decoding to %d results, want %d bytes", n, len(got), len(decoded.Results), len(want))
		}
	}
}

// shortMarshaler sizes more bytes than it writes.
type shortMarshaler struct{ size, writes int }

func (m shortMarshaler) SizeVT() int { return m.size }
func (m shortMarshaler) MarshalToSizedBufferVT(b []byte) (int, error) {
	return m.writes, nil
}

// A marshaler that fills less than it sized would send what the buffer
// held before: the codec refuses it.
func TestAMessageThatFillsLessThanItSizedIsRefused(t *testing.T) {
	if err := marshalExactly(shortMarshaler{size: 64, writes: 60}, make([]byte, 64)); err == nil {
		t.Error("a marshaler that wrote 60 of the 64 bytes it sized was accepted")
	}
	if err := marshalExactly(shortMarshaler{size: 64, writes: 64}, make([]byte, 64)); err != nil {
		t.Errorf("a marshaler that wrote all it sized: %v", err)
	}
}

// The pool hands out buffers of the length asked, from the tier that fits
// them, and keeps only buffers of a tier's capacity.
func TestTheMarshalPoolsTiers(t *testing.T) {
	p := newTieredPool(10, 12)
	for _, c := range []struct{ size, capacity int }{{1, 1024}, {1024, 1024}, {1025, 2048}, {4096, 4096}, {4097, 4097}} {
		buf := p.Get(c.size)
		if len(*buf) != c.size || cap(*buf) != c.capacity {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", c.size, len(*buf), cap(*buf), c.capacity)
		}
		p.Put(buf)
	}
	odd := make([]byte, 1500)
	p.Put(&odd)
	if buf := p.Get(1500); cap(*buf) != 2048 {
		t.Errorf("a buffer of capacity 1500 was kept: Get(1500) has cap %d", cap(*buf))
	}
}
