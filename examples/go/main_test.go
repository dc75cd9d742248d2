package main

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

func TestRetryDelayIsTheGatewaysRetryInfoOrABackoff(t *testing.T) {
	t.Parallel()
	throttled, err := status.New(codes.ResourceExhausted, "rate limited").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	bare := status.New(codes.ResourceExhausted, "queue full")
	cases := []struct {
		name    string
		st      *status.Status
		attempt int
		want    time.Duration
	}{
		{"retry info wins", throttled, 4, 1500 * time.Millisecond},
		{"first backoff", bare, 1, 100 * time.Millisecond},
		{"third backoff", bare, 3, 400 * time.Millisecond},
		{"backoff is capped", bare, 12, 5 * time.Second},
		{"many attempts do not overflow", bare, 100, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := retryDelay(tc.st, tc.attempt); got != tc.want {
				t.Errorf("retryDelay = %v, want %v", got, tc.want)
			}
		})
	}
}

// roundTrip encodes m and decodes it into a new message, as the other side
// of a gRPC call sees it.
func roundTrip[M proto.Message](t *testing.T, m M, into M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
	return into
}

// A tombstone must reach the gateway with its key and no value (unset, not
// empty), and a consumer must tell it from a record whose value is empty.
func TestATombstoneHasNoValueAndIsToldApartFromAnEmptyValue(t *testing.T) {
	t.Parallel()
	sent := roundTrip(t, nthRecord("run", 9, 10), &gatewayv1.Record{})
	if sent.Value != nil || string(sent.GetKey()) != "customer-9" || sent.GetIdempotencyKey() != "run-9" {
		t.Errorf("record 9 of 10 = key %q, value %v, id %q; want a tombstone of customer-9", sent.GetKey(), sent.Value, sent.GetIdempotencyKey())
	}
	if order := roundTrip(t, nthRecord("run", 8, 10), &gatewayv1.Record{}); order.Value == nil {
		t.Error("record 8 of 10 has no value; want an order")
	}
	if none := roundTrip(t, nthRecord("run", 9, 0), &gatewayv1.Record{}); none.Value == nil {
		t.Error("without --tombstone-every, record 9 has no value")
	}
	for _, tc := range []struct {
		name  string
		value []byte
		want  bool
	}{
		{"unset value", nil, true},
		{"empty value", []byte{}, false},
		{"a value", []byte("x"), false},
	} {
		d := roundTrip(t, &gatewayv1.Delivery{Key: []byte("k"), Value: tc.value}, &gatewayv1.Delivery{})
		if got := isTombstone(d); got != tc.want {
			t.Errorf("%s: isTombstone = %v, want %v", tc.name, got, tc.want)
		}
	}
}
