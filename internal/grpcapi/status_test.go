package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

func TestToStatusMapsEachErrorKindToItsCode(t *testing.T) {
	t.Parallel()
	kerr := func(c kafka.ErrorCode) error { return kafkaclient.Classify(kafka.NewError(c, "", false)) }
	cases := []struct {
		name    string
		err     error
		code    codes.Code
		message string // substring; "" skips the check
	}{
		{"canceled", context.Canceled, codes.Canceled, ""},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ""},
		{"queue full at the deadline", fmt.Errorf("%w: %w", produce.ErrQueueFull, context.DeadlineExceeded), codes.ResourceExhausted, "queue full"},
		{"bad input", invalid.Field("records[2].value", "too big"), codes.InvalidArgument, "records[2].value: too big"},
		{"unknown topic", fmt.Errorf("topic %q: %w", "t", produce.ErrUnknownTopic), codes.NotFound, `topic "t"`},
		{"unknown topic from broker", kerr(kafka.ErrUnknownTopicOrPart), codes.NotFound, ""},
		{"delivery timed out", kerr(kafka.ErrMsgTimedOut), codes.Unavailable, ""},
		{"all brokers down", kerr(kafka.ErrAllBrokersDown), codes.Unavailable, ""},
		{"record too large for the broker", kerr(kafka.ErrMsgSizeTooLarge), codes.InvalidArgument, ""},
		{"not authorized", kerr(kafka.ErrTopicAuthorizationFailed), codes.PermissionDenied, ""},
		{"purged at shutdown", kerr(kafka.ErrPurgeQueue), codes.Unavailable, "shutting down"},
		{"producer closed", produce.ErrClosed, codes.Unavailable, "shutting down"},
		{"anything else", errors.New("secret internal detail"), codes.Internal, "internal error"},
	}
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := toStatus(logger, tc.err)
			if st.Code() != tc.code {
				t.Errorf("code = %v, want %v (message %q)", st.Code(), tc.code, st.Message())
			}
			if tc.message != "" && !strings.Contains(st.Message(), tc.message) {
				t.Errorf("message = %q, want it to contain %q", st.Message(), tc.message)
			}
			if tc.code == codes.Internal && strings.Contains(st.Message(), "secret") {
				t.Errorf("internal detail leaked: %q", st.Message())
			}
		})
	}
}

func TestInvalidArgumentCarriesEveryFieldViolation(t *testing.T) {
	t.Parallel()
	var inv invalid.Error
	inv.Add("topic", "must not be empty")
	inv.Add("records[1].headers[0].key", "must not be empty")
	st := toStatus(slog.New(slog.DiscardHandler), &inv)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if got := strings.Join(fields, ","); got != "topic,records[1].headers[0].key" {
		t.Errorf("BadRequest fields = %q", got)
	}
	if !strings.Contains(st.Message(), "(and 1 more)") {
		t.Errorf("message %q does not count the other violation", st.Message())
	}
}
