// Package identity tells who is calling the gateway, for the checks that
// depend on the caller (the admin service's allow list, per-caller limits).
//
// An identity comes from, in order:
//
//  1. the Common Name of a verified TLS client certificate, when the
//     connection is TLS with client certificates (authenticated);
//  2. the gRPC metadata header named by Config.Header (self-asserted: it is
//     only as trustworthy as the path to the gateway, which for a sidecar is
//     the pod's loopback interface or Unix socket).
package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// MaxLen bounds an identity's length in bytes.
const MaxLen = 256

// Config says where callers' identities come from.
type Config struct {
	// Header names the gRPC metadata header that carries the caller's
	// identity, for example x-gateway-identity. Empty: only TLS client
	// certificates identify callers.
	Header string `yaml:"header"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Header: "x-gateway-identity"}
}

// Validate checks that Header is a header name gRPC can carry as text.
func (c Config) Validate() error {
	h := c.Header
	if h == "" {
		return nil
	}
	switch {
	case strings.HasPrefix(h, "grpc-"):
		return fmt.Errorf("identity.header: %q: names starting with grpc- are reserved by gRPC", h)
	case strings.HasSuffix(h, "-bin"):
		return fmt.Errorf("identity.header: %q: names ending in -bin carry binary values", h)
	case h == "te" || h == "content-type" || h == "user-agent" || strings.HasPrefix(h, ":"):
		return fmt.Errorf("identity.header: %q is a transport header", h)
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("identity.header: %q contains %q; use lower-case letters, digits, '-', '_' and '.'", h, c)
		}
	}
	return nil
}

var (
	// ErrMissing means the caller presented no identity.
	ErrMissing = errors.New("no caller identity")
	// ErrInvalid means the caller presented an unusable identity: empty,
	// too long, with control characters, or several different ones.
	ErrInvalid = errors.New("invalid caller identity")
)

// FromContext returns the identity of the caller of the gRPC call ctx
// belongs to. It fails with ErrMissing when the caller presented none, and
// with ErrInvalid when it presented an unusable one.
func FromContext(ctx context.Context, cfg Config) (string, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if chains := tlsInfo.State.VerifiedChains; len(chains) > 0 && len(chains[0]) > 0 {
				if cn := chains[0][0].Subject.CommonName; cn != "" {
					return cn, check(cn)
				}
			}
		}
	}
	if cfg.Header == "" {
		return "", ErrMissing
	}
	values := metadata.ValueFromIncomingContext(ctx, cfg.Header)
	if len(values) == 0 {
		return "", ErrMissing
	}
	for _, v := range values[1:] {
		if v != values[0] {
			return "", fmt.Errorf("%w: header %s given %d times with different values", ErrInvalid, cfg.Header, len(values))
		}
	}
	return values[0], check(values[0])
}

func check(id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(id) > MaxLen:
		return fmt.Errorf("%w: %d bytes long; at most %d are allowed", ErrInvalid, len(id), MaxLen)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: contains control characters", ErrInvalid)
		}
	}
	return nil
}
