// Package identity names the caller of a gRPC call, for rate-limit rules and
// ACLs.
//
// Sources, in order, each only when configured:
//
//  1. the verified TLS client certificate (tls_client_cert): its first URI
//     SAN (a SPIFFE ID, say), else its subject common name. Trustworthy: the
//     server verified the chain against server.tls.client_ca_file. When
//     certificates are the configured source, a call without a verified
//     certificate (on the Unix socket, say) is never named by the header:
//     it is the configured service, so no caller can claim another's name.
//  2. a gRPC metadata header (header): its last value, which is the one
//     the nearest proxy appended when a trusted proxy sets it (a client can
//     send values of its own, but they come before the proxy's). An empty
//     last value falls through to the service name; earlier values are
//     never used. Without such a proxy, the value is the one the app set:
//     trust it only when every caller that can reach the gateway is trusted
//     to name itself (the sidecar's Unix socket in the pod, or a network
//     policy admitting only the pod's apps).
//  3. the configured service name (service): the sidecar's one app.
package identity

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Config selects the sources of the caller's identity.
type Config struct {
	// Service is the identity of calls that no other source names: the
	// app this sidecar serves.
	Service string `yaml:"service"`
	// Header is a gRPC metadata key (lower case) whose last value names
	// the caller; empty: not used.
	Header string `yaml:"header"`
	// TLSClientCert names the caller by its verified client certificate.
	TLSClientCert bool `yaml:"tls_client_cert"`
}

// FromContext returns the identity of the call ctx belongs to.
func FromContext(ctx context.Context, cfg Config) string {
	if cfg.TLSClientCert {
		if cert := clientCert(ctx); cert != nil {
			if len(cert.URIs) > 0 {
				return cert.URIs[0].String()
			}
			if cert.Subject.CommonName != "" {
				return cert.Subject.CommonName
			}
		}
		return cfg.Service // never a self-asserted header instead
	}
	if cfg.Header != "" {
		// The last value: a proxy that sets the header appends it after
		// whatever the client sent.
		if vs := metadata.ValueFromIncomingContext(ctx, cfg.Header); len(vs) > 0 && vs[len(vs)-1] != "" {
			return vs[len(vs)-1]
		}
	}
	return cfg.Service
}

// clientCert returns the verified leaf certificate of the call's peer, or nil.
func clientCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}
