package dedupe

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/testenv"
)

// The store reaches a Redis that serves TLS only and authenticates an ACL
// user: the claims work with TLS and the user's password; without TLS, or
// with a wrong password, it gets no answer but ErrUnavailable.
func TestTheStoreWorksOverTLSWithAnACLUser(t *testing.T) {
	t.Parallel()
	srv := testenv.RedisTLSServer(t)
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{srv.Addr}
	cfg.Username, cfg.Password = srv.Username, srv.Password
	cfg.TLS = RedisTLS{Enabled: true, CAFile: srv.CAFile}
	if err := cfg.validate("dedupe.redis"); err != nil {
		t.Fatal(err)
	}
	s := NewStore(newClient(t, cfg), "t:", time.Hour, "gw")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := s.Claim(ctx, []Claim{{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/0/1", Lease: time.Minute}})
	if err != nil || out[0] != Claimed {
		t.Fatalf("claim over TLS: %v %v", out, err)
	}

	plain := cfg
	plain.TLS = RedisTLS{}
	if err := NewStore(newClient(t, plain), "t:", time.Hour, "gw").Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("without TLS: %v, want ErrUnavailable", err)
	}
	wrong := cfg
	wrong.Password = "wrong"
	if err := NewStore(newClient(t, wrong), "t:", time.Hour, "gw").Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("with a wrong password: %v, want ErrUnavailable", err)
	}
	if _, err := (RedisTLS{Enabled: true, CAFile: "/nonexistent"}).config("dedupe.redis"); err == nil {
		t.Error("a missing CA file is accepted")
	}
}
