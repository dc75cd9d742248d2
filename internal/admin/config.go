package admin

import (
	"errors"
	"fmt"
	"time"

	"github.com/kafkagate/gateway/internal/identity"
)

// Config is the admin service's configuration.
type Config struct {
	// Enabled registers the admin service. It is on by default: a sidecar
	// gateway listens on the pod's loopback interface or a Unix socket, so
	// only the pod's own containers reach it. When the gateway listens on a
	// network interface, restrict the service with AllowedIdentities (with
	// TLS client certificates, or a trusted network path for the identity
	// header), or turn it off.
	Enabled bool `yaml:"enabled"`
	// AllowedIdentities lists the caller identities (package identity:
	// client certificate, identity header, else identity.service) allowed
	// to call the admin service. Empty: every caller that reaches the
	// gateway.
	AllowedIdentities []string `yaml:"allowed_identities"`
	// RequestTimeout bounds each request to Kafka (when the caller's
	// deadline is later); then the call fails with UNAVAILABLE.
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Enabled: true, RequestTimeout: 15 * time.Second}
}

// Validate rejects contradictions with the identity configuration.
func (c Config) Validate(id identity.Config) error {
	if c.RequestTimeout < 100*time.Millisecond {
		return fmt.Errorf("admin.request_timeout: must be at least 100ms")
	}
	seen := map[string]bool{}
	for i, name := range c.AllowedIdentities {
		switch {
		case name == "":
			return fmt.Errorf("admin.allowed_identities[%d]: must not be empty", i)
		case seen[name]:
			return fmt.Errorf("admin.allowed_identities[%d]: %q is listed twice", i, name)
		}
		seen[name] = true
	}
	if len(c.AllowedIdentities) > 0 && id.Header == "" && id.Service == "" && !id.TLSClientCert {
		return fmt.Errorf("admin.allowed_identities: set, but no caller has an identity: set identity.header (or identity.tls_client_cert, or identity.service)")
	}
	return nil
}

// Allowed reports whether the caller named id may use the admin service.
func (c Config) Allowed(id string) bool {
	if len(c.AllowedIdentities) == 0 {
		return true
	}
	for _, a := range c.AllowedIdentities {
		if a == id {
			return true
		}
	}
	return false
}

// ErrNotAllowed means the caller may not use the admin service: it
// presented no identity, or one not in admin.allowed_identities.
var ErrNotAllowed = errors.New("admin service not allowed for this caller")
