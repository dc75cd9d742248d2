package main

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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
