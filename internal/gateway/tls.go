package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kafkagate/gateway/internal/config"
)

// tlsFiles serves the server's TLS configuration from its files and reloads
// it when they change (a rotated certificate, a new client CA), without a
// restart: each new connection's handshake takes the configuration in
// force. A change that does not load (a half-written file, a key that does
// not match) is logged and leaves the last good configuration in force.
type tlsFiles struct {
	cfg    config.TLSConfig
	logger *slog.Logger
	cur    atomic.Pointer[tls.Config]
	seen   []byte // the files' contents in force
}

// loadTLS reads cfg's files once; it fails when they do not make a
// configuration.
func loadTLS(cfg config.TLSConfig, logger *slog.Logger) (*tlsFiles, error) {
	f := &tlsFiles{cfg: cfg, logger: logger}
	raw, tc, err := f.read()
	if err != nil {
		return nil, err
	}
	f.seen = raw
	f.cur.Store(tc)
	return f, nil
}

// read reads the files and builds a configuration from them.
func (f *tlsFiles) read() ([]byte, *tls.Config, error) {
	var raw bytes.Buffer
	certPEM, err := os.ReadFile(f.cfg.CertFile)
	if err != nil {
		return nil, nil, fmt.Errorf("server.tls.cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(f.cfg.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("server.tls.key_file: %w", err)
	}
	raw.Write(certPEM)
	raw.Write(keyPEM)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("server.tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(f.cfg.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("server.tls.client_ca_file: %w", err)
		}
		raw.Write(pem)
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, errors.New("server.tls.client_ca_file: no PEM certificate in it")
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	// gRPC over TLS negotiates HTTP/2 by ALPN.
	tc.NextProtos = []string{"h2"}
	return raw.Bytes(), tc, nil
}

// watch reloads the files every interval until ctx ends.
func (f *tlsFiles) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		raw, tc, err := f.read()
		switch {
		case err != nil:
			if !failing {
				f.logger.Warn("server TLS files changed but do not load; the last good certificate stays in force", "err", err)
			}
			failing = true
		case !bytes.Equal(raw, f.seen):
			f.seen = raw
			f.cur.Store(tc)
			failing = false
			f.logger.Info("server TLS certificate and client CA reloaded", "cert_file", f.cfg.CertFile, "client_ca_file", f.cfg.ClientCAFile)
		default:
			failing = false
		}
	}
}

// credentials returns TLS for TCP connections, each handshake taking the
// configuration in force, and plaintext on Unix sockets (only the pod
// reaches them).
func (f *tlsFiles) credentials() credentials.TransportCredentials {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.cur.Load(), nil
		},
	}
	return tcpOnlyTLS{credentials.NewTLS(base)}
}

// tcpOnlyTLS is TLS on TCP and plaintext on Unix sockets.
type tcpOnlyTLS struct {
	credentials.TransportCredentials
}

func (c tcpOnlyTLS) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if conn.LocalAddr().Network() == "unix" {
		return insecure.NewCredentials().ServerHandshake(conn)
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c tcpOnlyTLS) Clone() credentials.TransportCredentials {
	return tcpOnlyTLS{c.TransportCredentials.Clone()}
}
