package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/kafkagate/gateway/internal/admin"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/identity"
)

func TestToStatusMapsAdminErrors(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"unknown group", fmt.Errorf("group %q: %w", "g", admin.ErrUnknownGroup), codes.NotFound},
		{"members in the way", &admin.MembersError{Group: "g", Members: []admin.Member{{ClientID: "c", MemberID: "m"}}}, codes.FailedPrecondition},
		{"refused by kafka", &admin.MembersError{Group: "g", Refused: true}, codes.FailedPrecondition},
		{"not allowed", fmt.Errorf("%w: identity %q", admin.ErrNotAllowed, "x"), codes.PermissionDenied},
		{"group busy", fmt.Errorf("%w: partitions starting", consume.ErrBusy), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if st := toStatus(logger, tc.err); st.Code() != tc.code {
				t.Errorf("code = %v (%q), want %v", st.Code(), st.Message(), tc.code)
			}
		})
	}
}

func TestAdminAuthorize(t *testing.T) {
	t.Parallel()
	ids := identity.Config{Header: "x-caller"}
	as := func(id string) context.Context {
		if id == "" {
			return context.Background()
		}
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(ids.Header, id))
	}
	open := NewAdminServer(nil, admin.Config{Enabled: true}, Guard{Identity: ids}, nil, slog.New(slog.DiscardHandler))
	restricted := NewAdminServer(nil, admin.Config{Enabled: true, AllowedIdentities: []string{"ops"}}, Guard{Identity: ids}, nil, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		name   string
		server *AdminServer
		ctx    context.Context
		want   string // identity; "!" means refused
	}{
		{"open, anonymous", open, as(""), ""},
		{"open, identified", open, as("billing"), "billing"},
		{"restricted, anonymous", restricted, as(""), "!"},
		{"restricted, other identity", restricted, as("billing"), "!"},
		{"restricted, allowed", restricted, as("ops"), "ops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.server.authorize(tc.ctx)
			switch {
			case tc.want == "!" && err == nil:
				t.Errorf("allowed as %q, want refused", got)
			case tc.want != "!" && (err != nil || got != tc.want):
				t.Errorf("identity %q, err %v; want %q", got, err, tc.want)
			}
		})
	}
}
