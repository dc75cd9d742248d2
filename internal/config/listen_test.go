package config

import (
	"strings"
	"testing"
)

// The API is served only on a Unix socket, on loopback, or with TLS; a
// plaintext network listener needs the loudly named key.
func TestAPlaintextAPIListenerOnTheNetworkNeedsItsKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		listen   string
		tls      bool
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:7070", false, false, true},
		{"localhost:7070", false, false, true},
		{"[::1]:7070", false, false, true},
		{"0.0.0.0:7070", false, false, false},
		{":7070", false, false, false},
		{"[::]:7070", false, false, false},
		{"10.1.2.3:7070", false, false, false},
		{"gateway.example:7070", false, false, false},
		{"0.0.0.0:7070", true, false, true},
		{"0.0.0.0:7070", false, true, true},
	}
	for _, tc := range cases {
		c := Default()
		c.Server.Listen = tc.listen
		c.Server.InsecurePlaintextAPIOnNetwork = tc.insecure
		if tc.tls {
			c.Server.TLS = TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"}
		}
		err := c.Server.validate(c.Producer.MaxRecordBytes)
		if tc.ok != (err == nil) {
			t.Errorf("listen %s tls %v insecure %v: %v", tc.listen, tc.tls, tc.insecure, err)
		}
		if err != nil && !strings.Contains(err.Error(), "server.insecure_plaintext_api_on_network") {
			t.Errorf("listen %s: the error does not name the key that allows it: %v", tc.listen, err)
		}
	}
}
