package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/identity"
	"github.com/kafkagate/gateway/internal/testenv"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key in PEM, for a server (with an IP
// SAN) or a client (with cn and uri).
func (ca *testCA) issue(t *testing.T, cn string, uri string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestTLSClientCertificatesNameTheCallerForTheACL(t *testing.T) {
	t.Parallel()
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	ca := newTestCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCert, srvKey := ca.issue(t, "gateway", "", true)
	socket := filepath.Join(dir, "gw.sock")
	h, _ := limitsGateway(t, `
rules:
- {name: checkout, identity: "spiffe://prod/checkout", topic: "`+topic+`", allow: [produce]}
- {name: sidecar-app, identity: "billing", topic: "`+topic+`", allow: [produce]}
`, func(c *config.Config) {
		c.Server.TLS = config.TLSConfig{CertFile: write("srv.pem", srvCert), KeyFile: write("srv.key", srvKey), ClientCAFile: write("ca.pem", ca.pem)}
		c.Server.UnixSocket = socket
		c.Identity = identity.Config{Service: "billing", TLSClientCert: true}
	})
	tcp := h.gw.Addrs()[0].String()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	produce := func(conn *grpc.ClientConn) error {
		_, err := gatewayv1.NewProducerServiceClient(conn).Produce(t.Context(), oneRecord(topic))
		return err
	}
	connect := func(addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	clientTLS := func(cn, uri string) credentials.TransportCredentials {
		c, k := ca.issue(t, cn, uri, false)
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}})
	}

	if err := produce(connect(tcp, clientTLS("checkout", "spiffe://prod/checkout"))); err != nil {
		t.Fatalf("client certificate with the allowed URI SAN: %v", err)
	}
	if err := produce(connect(tcp, clientTLS("intruder", "spiffe://prod/intruder"))); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("client certificate of another identity: %v, want PERMISSION_DENIED", err)
	}
	if err := produce(connect(tcp, credentials.NewTLS(&tls.Config{RootCAs: roots}))); status.Code(err) != codes.Unavailable {
		t.Fatalf("no client certificate: %v, want the handshake refused (UNAVAILABLE)", err)
	}
	if err := produce(connect(tcp, insecure.NewCredentials())); err == nil {
		t.Fatal("plaintext on the TLS port was served")
	}
	// The pod's Unix socket stays plaintext; its caller is the sidecar's app.
	if err := produce(connect("unix://"+socket, insecure.NewCredentials())); err != nil {
		t.Fatalf("plaintext on the Unix socket: %v", err)
	}
}

// The server certificate and the client CA are read again from their files
// while the gateway runs: after a rotation, new connections get the new
// certificate, and only clients of the new CA are let in; no restart.
func TestTLSCertificateAndClientCAReloadWithoutARestart(t *testing.T) {
	t.Parallel()
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil { // as a mounted Secret changes
			t.Fatal(err)
		}
		return p
	}
	old, next := newTestCA(t), newTestCA(t)
	srvCert, srvKey := old.issue(t, "gateway", "", true)
	tlsCfg := config.TLSConfig{CertFile: write("srv.pem", srvCert), KeyFile: write("srv.key", srvKey),
		ClientCAFile: write("ca.pem", old.pem), ReloadInterval: 200 * time.Millisecond}
	h := startGateway(t, func(c *config.Config) { c.Server.TLS = tlsCfg })
	addr := h.gw.Addrs()[0].String()
	client := func(ca *testCA, trusts *testCA) error {
		c, k := ca.issue(t, "app", "", false)
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(trusts.pem)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = gatewayv1.NewProducerServiceClient(conn).Produce(t.Context(), oneRecord(topic))
		return err
	}
	if err := client(old, old); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	srvCert, srvKey = next.issue(t, "gateway", "", true)
	write("srv.pem", srvCert)
	write("srv.key", srvKey)
	write("ca.pem", next.pem)
	testenv.Eventually(t, 10*time.Second, "the rotated certificate and client CA in force", func() bool {
		return client(next, next) == nil
	})
	if err := client(old, next); err == nil {
		t.Fatal("a client certificate of the old CA is still accepted")
	}
	if err := client(next, old); err == nil {
		t.Fatal("the old server certificate is still served")
	}
}
