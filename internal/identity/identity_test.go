package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/kafkagate/gateway/internal/identity"
)

func withHeader(kv ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
}

func withCert(ctx context.Context, cert *x509.Certificate) context.Context {
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}},
	}})
}

func TestFromContextTakesTheFirstConfiguredSource(t *testing.T) {
	t.Parallel()
	spiffe, _ := url.Parse("spiffe://cluster/ns/shop/sa/billing")
	cn := &x509.Certificate{Subject: pkix.Name{CommonName: "billing-cn"}}
	withURI := &x509.Certificate{Subject: pkix.Name{CommonName: "billing-cn"}, URIs: []*url.URL{spiffe}}
	all := identity.Config{Service: "checkout", Header: "x-caller", TLSClientCert: true}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		cfg  identity.Config
		want string
	}{
		{"certificate URI first", withCert(withHeader("x-caller", "ops"), withURI), all, spiffe.String()},
		{"certificate common name", withCert(withHeader("x-caller", "ops"), cn), all, "billing-cn"},
		{"certificate ignored when not configured", withCert(withHeader("x-caller", "ops"), cn), identity.Config{Header: "x-caller"}, "ops"},
		// With certificates as the source, a call without one is never
		// named by the header, which any caller can set.
		{"no header fallback when certificates are the source", withHeader("x-caller", "ops"), all, "checkout"},
		{"header", withHeader("x-caller", "ops"), identity.Config{Service: "checkout", Header: "x-caller"}, "ops"},
		{"empty header falls through", withHeader("x-caller", ""), identity.Config{Service: "checkout", Header: "x-caller"}, "checkout"},
		{"service", context.Background(), all, "checkout"},
		{"nothing configured", withHeader("x-caller", "ops"), identity.Config{}, ""},
		{"TLS without a verified client certificate", peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}}), all, "checkout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := identity.FromContext(tc.ctx, tc.cfg); got != tc.want {
				t.Errorf("identity = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAHeaderIdentityIsTheValueTheNearestProxyAppended pins whose value
// names the caller when the metadata key has several: a trusted proxy in
// front of the gateway appends its value after any the client sent, and
// the gateway took the first one, so a client could name itself whatever
// it liked. The last value counts; an empty one falls through to the
// service name rather than to a client's value.
func TestAHeaderIdentityIsTheValueTheNearestProxyAppended(t *testing.T) {
	t.Parallel()
	cfg := identity.Config{Service: "checkout", Header: "x-caller"}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"the proxy's value after the client's", withHeader("x-caller", "platform-admin", "x-caller", "billing"), "billing"},
		{"an empty value appended last", withHeader("x-caller", "platform-admin", "x-caller", ""), "checkout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := identity.FromContext(tc.ctx, cfg); got != tc.want {
				t.Errorf("identity = %q, want %q", got, tc.want)
			}
		})
	}
}
