// Package grpcapi adapts the gateway API (gateway.v1) to the domain packages:
// it turns requests into domain calls, and domain errors into gRPC statuses.
package grpcapi

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kafkagate/gateway/internal/admin"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

// toStatus is the one place where errors become gRPC statuses. Errors it
// does not recognise are logged and answered as INTERNAL with a generic
// message, so no internal detail leaks to callers.
func toStatus(logger *slog.Logger, err error) *status.Status {
	var inv *invalid.Error
	var limited *ratelimit.LimitedError
	switch {
	case err == nil:
		return status.New(codes.OK, "")
	case errors.As(err, &inv):
		return invalidStatus(inv)
	case errors.As(err, &limited):
		st := status.New(codes.ResourceExhausted, err.Error())
		if detailed, err := st.WithDetails(retryInfo(limited)); err == nil {
			return detailed
		}
		return st
	case errors.Is(err, ratelimit.ErrDenied):
		return status.New(codes.PermissionDenied, err.Error())
	// Queue full is checked before context errors: a wait for room that ends
	// at the deadline is still the queue's fault.
	case errors.Is(err, produce.ErrQueueFull), errors.Is(err, errTooManyStreams), errors.Is(err, consume.ErrTooManyGroups):
		return status.New(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, consume.ErrStaleAck), errors.Is(err, consume.ErrAlreadyAcked), errors.Is(err, consume.ErrConflict),
		errors.Is(err, admin.ErrActiveMembers):
		return status.New(codes.FailedPrecondition, err.Error())
	case errors.Is(err, produce.ErrClosed), errors.Is(err, consume.ErrClosed), errors.Is(err, kafkaclient.ErrShutdown):
		return status.New(codes.Unavailable, "gateway shutting down: "+err.Error())
	case errors.Is(err, kafkaclient.ErrUnknownTopic), errors.Is(err, admin.ErrUnknownGroup):
		return status.New(codes.NotFound, err.Error())
	case errors.Is(err, kafkaclient.ErrUnavailable), errors.Is(err, dedupe.ErrUnavailable), errors.Is(err, dedupe.ErrMisconfigured), errors.Is(err, consume.ErrConfirmPending), errors.Is(err, consume.ErrExtendPending),
		errors.Is(err, consume.ErrBusy):
		return status.New(codes.Unavailable, err.Error())
	case errors.Is(err, kafkaclient.ErrRejected):
		return status.New(codes.InvalidArgument, err.Error())
	case errors.Is(err, kafkaclient.ErrNotAuthorized), errors.Is(err, admin.ErrNotAllowed):
		return status.New(codes.PermissionDenied, err.Error())
	default:
		logger.Error("internal error", "err", err)
		return status.New(codes.Internal, "internal error")
	}
}

// invalidStatus is INVALID_ARGUMENT naming the first bad field, with every
// violation in a google.rpc.BadRequest detail.
func invalidStatus(inv *invalid.Error) *status.Status {
	st := status.New(codes.InvalidArgument, inv.Error())
	br := &errdetails.BadRequest{}
	for _, v := range inv.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       v.Field,
			Description: v.Description,
		})
	}
	if detailed, err := st.WithDetails(br); err == nil {
		return detailed
	}
	return st
}

func invalidField(field, description string) error { return invalid.Field(field, "%s", description) }
