package grpcapi

import (
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// The gateway's gRPC codec for protobuf messages (content subtype "proto")
// replaces gRPC's own in every process that links this package: the
// messages of the produce path, which carry records by the thousand, go
// through code generated for them (vtproto: no reflection, fewer
// allocations); every other message through the protobuf library, as with
// gRPC's codec. gRPC's codec registers itself in its package's init, which
// runs before this one.
func init() {
	encoding.RegisterCodecV2(codec{fallback: encoding.GetCodecV2(proto.Name)})
}

type codec struct{ fallback encoding.CodecV2 }

// fastMessage is a message with generated marshalling code.
type fastMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(data []byte) (int, error)
	UnmarshalVTUnsafe(data []byte) error
}

func (codec) Name() string { return proto.Name }

// fast returns v's generated code when v is a message of the produce path.
func fast(v any) (fastMessage, bool) {
	switch m := v.(type) {
	case *gatewayv1.ProduceRequest, *gatewayv1.ProduceStreamRequest,
		*gatewayv1.ProduceResponse, *gatewayv1.ProduceStreamResponse:
		f, ok := m.(fastMessage)
		return f, ok
	}
	return nil, false
}

// marshaler is a message with generated marshalling code.
type marshaler interface {
	SizeVT() int
	MarshalToSizedBufferVT(data []byte) (int, error)
}

// fastMarshal returns v's generated marshalling code when v is a message
// the gateway sends often: the produce path's (ProduceStream's answers
// written straight from the results: resultsFrame), and the frames of
// Subscribe and Consume streams (their Deliveries frames written straight
// from the deliveries: deliveriesFrame).
func fastMarshal(v any) (marshaler, bool) {
	switch m := v.(type) {
	case *deliveriesFrame:
		return m, true
	case *resultsFrame:
		return m, true
	case *gatewayv1.SubscribeResponse:
		return m, true
	case *gatewayv1.ConsumeResponse:
		return m, true
	}
	return fast(v)
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := fastMarshal(v)
	if !ok {
		return c.fallback.Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if err := marshalExactly(m, buf); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	buf := marshalBuffers.Get(size)
	if err := marshalExactly(m, *buf); err != nil {
		marshalBuffers.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, marshalBuffers)}, nil
}

// marshalExactly marshals m into buf, which must take every byte of it:
// buf may hold bytes of an earlier message (marshalBuffers does not clear
// what it hands out), and none of them may go out.
func marshalExactly(m marshaler, buf []byte) error {
	n, err := m.MarshalToSizedBufferVT(buf)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return fmt.Errorf("grpcapi: %T marshalled %d bytes of the %d it sized", m, n, len(buf))
	}
	return nil
}

// marshalBuffers holds the buffers the codec marshals messages into, in
// power-of-two tiers. Unlike gRPC's default pool it does not clear a
// buffer it hands out, since marshalExactly writes every byte of it; and
// its tiers are finer, so a 60 KB response does not take (and gRPC's pool
// clear) a 1 MiB buffer.
var marshalBuffers = newTieredPool(10, 24)

// tieredPool is a mem.BufferPool with one sync.Pool per power of two from
// 1<<minExp to 1<<maxExp bytes; larger buffers are allocated and dropped.
type tieredPool struct {
	minExp, maxExp int
	tiers          []sync.Pool
}

func newTieredPool(minExp, maxExp int) *tieredPool {
	return &tieredPool{minExp: minExp, maxExp: maxExp, tiers: make([]sync.Pool, maxExp-minExp+1)}
}

// tier is the exponent of the smallest tier that holds size bytes.
func (p *tieredPool) tier(size int) int {
	return max(p.minExp, bits.Len(uint(size-1)))
}

// Get returns a buffer of length size whose bytes are not cleared.
func (p *tieredPool) Get(size int) *[]byte {
	exp := p.tier(size)
	if exp > p.maxExp {
		buf := make([]byte, size)
		return &buf
	}
	if buf, ok := p.tiers[exp-p.minExp].Get().(*[]byte); ok {
		*buf = (*buf)[:size]
		return buf
	}
	buf := make([]byte, size, 1<<exp)
	return &buf
}

// Put keeps buf for a later Get when its capacity is one of the tiers.
func (p *tieredPool) Put(buf *[]byte) {
	c := cap(*buf)
	exp := bits.Len(uint(c)) - 1
	if c == 0 || c != 1<<exp || exp < p.minExp || exp > p.maxExp {
		return
	}
	*buf = (*buf)[:0]
	p.tiers[exp-p.minExp].Put(buf)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := fast(v)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	// The message's bytes and strings point into one copy of the request,
	// its own, rather than each into a copy of its own: one allocation
	// per request instead of one per key and value.
	raw := data.Materialize()
	if err := m.UnmarshalVTUnsafe(raw); err != nil || !wellFormed(v, raw) {
		// What the generated code refuses (a known field with another
		// wire type, which the library keeps as an unknown field), and
		// what it may let through (strings that are not UTF-8, which
		// proto3 forbids; fields it does not know, which it skips less
		// strictly): the library decides, as it did before.
		return c.fallback.Unmarshal(data, v)
	}
	own(v)
	return nil
}

// own copies the strings of a produce request that may be kept longer than
// the request (a topic name in the topic cache, limits and metrics, an
// idempotency key in results), so that they do not keep the whole request
// alive. Keys, values and header keys are copied into librdkafka and
// dropped.
func own(v any) {
	switch m := v.(type) {
	case *gatewayv1.ProduceRequest:
		m.Topic = strings.Clone(m.Topic)
		ownKeys(m.Records)
	case *gatewayv1.ProduceStreamRequest:
		m.Topic = strings.Clone(m.Topic)
		m.RequestId = strings.Clone(m.RequestId)
		ownKeys(m.Records)
	}
}

func ownKeys(recs []*gatewayv1.Record) {
	for _, r := range recs {
		if r.IdempotencyKey != "" {
			r.IdempotencyKey = strings.Clone(r.IdempotencyKey)
		}
	}
}

// wellFormed reports whether a produce request decoded by the generated
// code from raw is one the library would decode the same: every string
// UTF-8, and no field the code does not know. (A string field given twice,
// the first time not UTF-8, the library refuses; here the last value
// counts.)
func wellFormed(v any, raw []byte) bool {
	var topic string
	var recs []*gatewayv1.Record
	var recordsField protowire.Number
	switch m := v.(type) {
	case *gatewayv1.ProduceRequest:
		topic, recs, recordsField = m.GetTopic(), m.GetRecords(), 2
	case *gatewayv1.ProduceStreamRequest:
		if !utf8.ValidString(m.GetRequestId()) {
			return false
		}
		topic, recs, recordsField = m.GetTopic(), m.GetRecords(), 3
	default:
		return true
	}
	// The generated code takes a varint of ten bytes whose last holds more
	// than the 64th bit, and skips unknown timestamp fields; the library
	// refuses or keeps them. The request is read here as the library reads it.
	if !wellFormedWire(raw, recordsField) {
		return false
	}
	if !utf8.ValidString(topic) || len(v.(protoreflect.ProtoMessage).ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for _, r := range recs {
		if !utf8.ValidString(r.GetIdempotencyKey()) || len(r.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
		if ts := r.GetTimestamp(); ts != nil && len(ts.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
		for _, h := range r.GetHeaders() {
			if !utf8.ValidString(h.GetKey()) || len(h.ProtoReflect().GetUnknown()) > 0 {
				return false
			}
		}
	}
	return true
}

// recordTimestampField is Record.timestamp's field number.
const recordTimestampField = 5

// recordHeadersField is Record.headers' field number.
const recordHeadersField = 3

// wellFormedWire reports, in one pass, whether every field of a produce
// request, of its records (field recordsField) and of their headers and
// timestamps is well formed on the wire (varints included), and whether
// every record timestamp holds only seconds and nanos, as varints. The
// generated code of a timestamp skips anything else without keeping it,
// and without the library's checks (a group closed by another field number
// passes), so a request with anything else in a timestamp goes to the
// library.
func wellFormedWire(raw []byte, recordsField protowire.Number) bool {
	return eachField(raw, func(num protowire.Number, typ protowire.Type, rec []byte) bool {
		if num != recordsField || typ != protowire.BytesType {
			return true
		}
		return eachField(rec, func(num protowire.Number, typ protowire.Type, sub []byte) bool {
			if (num != recordHeadersField && num != recordTimestampField) || typ != protowire.BytesType {
				return true
			}
			if num == recordTimestampField {
				return eachField(sub, func(num protowire.Number, typ protowire.Type, _ []byte) bool {
					return (num == 1 || num == 2) && typ == protowire.VarintType
				})
			}
			return eachField(sub, func(protowire.Number, protowire.Type, []byte) bool { return true })
		})
	})
}

// eachField calls f with each field of the message b (a length-delimited
// field's contents as its bytes), until f returns false; it returns false
// then, or when b is malformed.
func eachField(b []byte, f func(protowire.Number, protowire.Type, []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		var val []byte
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			val, n = v, m
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
		}
		if !f(num, typ, val) {
			return false
		}
		b = b[n:]
	}
	return true
}
