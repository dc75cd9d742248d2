package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/kafkagate/gateway/internal/identity"
)

func withHeader(kv ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
}

func withCert(ctx context.Context, cn string) context.Context {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}},
	}})
}

func TestFromContext(t *testing.T) {
	t.Parallel()
	cfg := identity.DefaultConfig()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		cfg     identity.Config
		want    string
		wantErr error
	}{
		{"header", withHeader(cfg.Header, "ops"), cfg, "ops", nil},
		{"header repeated with one value", withHeader(cfg.Header, "ops", cfg.Header, "ops"), cfg, "ops", nil},
		{"header repeated with two values", withHeader(cfg.Header, "ops", cfg.Header, "billing"), cfg, "", identity.ErrInvalid},
		{"no metadata", context.Background(), cfg, "", identity.ErrMissing},
		{"another header only", withHeader("x-other", "ops"), cfg, "", identity.ErrMissing},
		{"header off", withHeader(cfg.Header, "ops"), identity.Config{}, "", identity.ErrMissing},
		{"empty value", withHeader(cfg.Header, " "), cfg, "", identity.ErrInvalid},
		{"too long", withHeader(cfg.Header, strings.Repeat("a", identity.MaxLen+1)), cfg, "", identity.ErrInvalid},
		{"control character", withHeader(cfg.Header, "ops\x00"), cfg, "", identity.ErrInvalid},
		{"verified client certificate wins over the header", withCert(withHeader(cfg.Header, "ops"), "billing-service"), cfg, "billing-service", nil},
		{"verified client certificate without a header", withCert(context.Background(), "billing-service"), identity.Config{}, "billing-service", nil},
		{"TLS without a client certificate falls back to the header", peer.NewContext(withHeader(cfg.Header, "ops"),
			&peer.Peer{AuthInfo: credentials.TLSInfo{}}), cfg, "ops", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := identity.FromContext(tc.ctx, tc.cfg)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want && tc.wantErr == nil {
				t.Errorf("identity = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{"x-gateway-identity", true},
		{"", true},
		{"x_caller.id", true},
		{"X-Caller", false},
		{"grpc-caller", false},
		{"x-caller-bin", false},
		{"content-type", false},
		{":authority", false},
		{"x caller", false},
	} {
		t.Run(tc.header, func(t *testing.T) {
			t.Parallel()
			err := identity.Config{Header: tc.header}.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate(%q) = %v, want ok=%v", tc.header, err, tc.ok)
			}
		})
	}
}
