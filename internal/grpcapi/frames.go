package grpcapi

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kafkagate/gateway/internal/consume"
)

// deliveriesFrame is a Deliveries frame of a Subscribe or a Consume
// stream, sent as it is: the gateway's codec writes its wire form straight
// from the consume package's deliveries, without building a protobuf
// message per record first (a Delivery, its timestamps and headers were a
// third of the consume path's allocations). Both responses carry
// Deliveries as their field 1, so one encoding serves both. The codec
// reads the deliveries while the frame is sent: they may be recycled once
// SendMsg returns, not before.
type deliveriesFrame struct {
	ds    []consume.Delivery
	sizes []int // each delivery's encoded length, from SizeVT
}

// Field numbers of the messages written here (proto/gateway/v1).
const (
	respDeliveries = 1 // SubscribeResponse.deliveries, ConsumeResponse.deliveries
	deliveriesList = 1 // Deliveries.deliveries

	fAckID       = 1
	fTopic       = 2
	fPartition   = 3
	fOffset      = 4
	fKey         = 5
	fValue       = 6
	fHeaders     = 7
	fTimestamp   = 8
	fMessageID   = 9
	fAttempt     = 10
	fAckDeadline = 11
	fToken       = 12

	fHeaderKey   = 1
	fHeaderValue = 2

	fSeconds = 1
	fNanos   = 2
)

// SizeVT returns the frame's encoded length, keeping each delivery's.
func (f *deliveriesFrame) SizeVT() int {
	f.sizes = f.sizes[:0]
	list := 0
	for i := range f.ds {
		n := deliverySize(&f.ds[i])
		f.sizes = append(f.sizes, n)
		list += 1 + protowire.SizeBytes(n)
	}
	return 1 + protowire.SizeBytes(list)
}

// MarshalToSizedBufferVT writes the frame into buf, which is exactly
// SizeVT() long (SizeVT is called first, as the codec does).
func (f *deliveriesFrame) MarshalToSizedBufferVT(buf []byte) (int, error) {
	if len(f.sizes) != len(f.ds) {
		return 0, fmt.Errorf("grpcapi: deliveries frame marshalled without its size")
	}
	list := 0
	for _, n := range f.sizes {
		list += 1 + protowire.SizeBytes(n)
	}
	b := buf[:0]
	b = protowire.AppendTag(b, respDeliveries, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(list))
	for i := range f.ds {
		b = protowire.AppendTag(b, deliveriesList, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(f.sizes[i]))
		b = appendDelivery(b, &f.ds[i])
	}
	if len(b) != len(buf) || &b[0] != &buf[0] {
		return 0, fmt.Errorf("grpcapi: deliveries frame is %d bytes, sized %d", len(b), len(buf))
	}
	return len(b), nil
}

// deliverySize is the encoded length of a Delivery's fields. Zero values
// of proto3 scalars are left out; key and value (optional bytes) are
// written whenever they are not null, even empty; the timestamp is always
// written, the ack deadline when there is one.
func deliverySize(d *consume.Delivery) int {
	n := 0
	if d.AckID != "" {
		n += 1 + protowire.SizeBytes(len(d.AckID))
	}
	if d.Topic != "" {
		n += 1 + protowire.SizeBytes(len(d.Topic))
	}
	if d.Partition != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(d.Partition)))
	}
	if d.Offset != 0 {
		n += 1 + protowire.SizeVarint(uint64(d.Offset))
	}
	if d.Key != nil {
		n += 1 + protowire.SizeBytes(len(d.Key))
	}
	if d.Value != nil {
		n += 1 + protowire.SizeBytes(len(d.Value))
	}
	for _, h := range d.Headers {
		n += 1 + protowire.SizeBytes(headerSize(h.Key, h.Value))
	}
	n += 1 + protowire.SizeBytes(timestampSize(d.Timestamp))
	n += 1 + protowire.SizeBytes(messageIDLen(d))
	if d.Attempt != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(d.Attempt)))
	}
	if !d.AckDeadline.IsZero() {
		n += 1 + protowire.SizeBytes(timestampSize(d.AckDeadline))
	}
	if d.Token != 0 {
		n += 1 + 8
	}
	return n
}

// messageIDLen is the length of d's message ID (see consume.Delivery.ID).
func messageIDLen(d *consume.Delivery) int {
	if d.MessageID != "" {
		return len(d.MessageID)
	}
	return consume.RecordIDLen(d.Topic, d.Partition, d.Offset)
}

func appendDelivery(b []byte, d *consume.Delivery) []byte {
	if d.AckID != "" {
		b = protowire.AppendTag(b, fAckID, protowire.BytesType)
		b = protowire.AppendString(b, d.AckID)
	}
	if d.Topic != "" {
		b = protowire.AppendTag(b, fTopic, protowire.BytesType)
		b = protowire.AppendString(b, d.Topic)
	}
	if d.Partition != 0 {
		b = protowire.AppendTag(b, fPartition, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(d.Partition)))
	}
	if d.Offset != 0 {
		b = protowire.AppendTag(b, fOffset, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d.Offset))
	}
	if d.Key != nil {
		b = protowire.AppendTag(b, fKey, protowire.BytesType)
		b = protowire.AppendBytes(b, d.Key)
	}
	if d.Value != nil {
		b = protowire.AppendTag(b, fValue, protowire.BytesType)
		b = protowire.AppendBytes(b, d.Value)
	}
	for _, h := range d.Headers {
		b = protowire.AppendTag(b, fHeaders, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerSize(h.Key, h.Value)))
		if h.Key != "" {
			b = protowire.AppendTag(b, fHeaderKey, protowire.BytesType)
			b = protowire.AppendString(b, h.Key)
		}
		if len(h.Value) > 0 {
			b = protowire.AppendTag(b, fHeaderValue, protowire.BytesType)
			b = protowire.AppendBytes(b, h.Value)
		}
	}
	b = appendTimestamp(b, fTimestamp, d.Timestamp)
	b = protowire.AppendTag(b, fMessageID, protowire.BytesType)
	if d.MessageID != "" {
		b = protowire.AppendString(b, d.MessageID)
	} else { // the record carries none: written in place, never allocated
		b = protowire.AppendVarint(b, uint64(messageIDLen(d)))
		b = consume.AppendRecordID(b, d.Topic, d.Partition, d.Offset)
	}
	if d.Attempt != 0 {
		b = protowire.AppendTag(b, fAttempt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(d.Attempt)))
	}
	if !d.AckDeadline.IsZero() {
		b = appendTimestamp(b, fAckDeadline, d.AckDeadline)
	}
	if d.Token != 0 {
		b = protowire.AppendTag(b, fToken, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, d.Token)
	}
	return b
}

// headerSize is the encoded length of a Header: its value is plain bytes,
// so an empty one is left out.
func headerSize(key string, value []byte) int {
	n := 0
	if key != "" {
		n += 1 + protowire.SizeBytes(len(key))
	}
	if len(value) > 0 {
		n += 1 + protowire.SizeBytes(len(value))
	}
	return n
}

// timestampSize is the encoded length of a google.protobuf.Timestamp of t
// (as timestamppb.New writes it: Unix seconds and nanoseconds).
func timestampSize(t time.Time) int {
	s, ns := t.Unix(), int32(t.Nanosecond())
	n := 0
	if s != 0 {
		n += 1 + protowire.SizeVarint(uint64(s))
	}
	if ns != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(ns)))
	}
	return n
}

func appendTimestamp(b []byte, field protowire.Number, t time.Time) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampSize(t)))
	s, ns := t.Unix(), int32(t.Nanosecond())
	if s != 0 {
		b = protowire.AppendTag(b, fSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s))
	}
	if ns != 0 {
		b = protowire.AppendTag(b, fNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(ns)))
	}
	return b
}
