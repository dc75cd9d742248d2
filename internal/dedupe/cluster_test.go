package dedupe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/testenv"
)

// TestASingleAddressOfARedisClusterNeedsTheClusterKey pins a Redis Cluster
// reached through one address (a managed service's configuration
// endpoint): that address built a single-server client, whose commands a
// Cluster of several nodes answers with MOVED for most keys, failing every
// dedupe batch while consumption paused forever. With dedupe.redis.cluster
// the address builds a Cluster client that works; without it, the check
// the gateway runs at start-up refuses the pair with the key named, and so
// it does for the reverse mistake.
func TestASingleAddressOfARedisClusterNeedsTheClusterKey(t *testing.T) {
	t.Parallel()
	node := testenv.RedisClusterNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	plain := DefaultConfig().Redis
	plain.Addrs = []string{node}
	rdb := newClient(t, plain)
	defer rdb.Close()
	err := CheckMode(ctx, rdb)
	if !errors.Is(err, ErrMisconfigured) || !strings.Contains(err.Error(), "set dedupe.redis.cluster: true") {
		t.Fatalf("single-server client of a Cluster node: %v, want a misconfiguration naming dedupe.redis.cluster", err)
	}

	cluster := plain
	cluster.Cluster = true
	if err := cluster.validate("dedupe.redis"); err != nil {
		t.Fatal(err)
	}
	crdb := newClient(t, cluster)
	defer crdb.Close()
	if _, ok := crdb.(*redis.ClusterClient); !ok {
		t.Fatalf("dedupe.redis.cluster with one address built a %T, want a Cluster client", crdb)
	}
	if err := CheckMode(ctx, crdb); err != nil {
		t.Fatalf("Cluster client of a Cluster node: %v", err)
	}
	s := NewStore(crdb, "t:", time.Hour, NewOwner("gw"))
	st, err := s.ReserveProduce(ctx, "orders", in([]string{"k1", "k2", "k3"}...), ttl(time.Minute))
	if err != nil {
		t.Fatalf("reserve through the Cluster client: %v", err)
	}
	for i, x := range st {
		if !x.Reserved {
			t.Errorf("key %d not reserved: %+v", i, x)
		}
	}

	// The reverse: cluster set, but the server is a single server.
	single := DefaultConfig().Redis
	single.Addrs = []string{testenv.Redis(t)}
	single.Cluster = true
	srdb := newClient(t, single)
	defer srdb.Close()
	err = CheckMode(ctx, srdb)
	if !errors.Is(err, ErrMisconfigured) || !strings.Contains(err.Error(), "set dedupe.redis.cluster: false") {
		t.Fatalf("Cluster client of a single server: %v, want a misconfiguration naming dedupe.redis.cluster", err)
	}
}

// movedReply is the error reply a Redis Cluster node gives for a key of a
// slot another node serves.
type movedReply struct{}

func (movedReply) Error() string { return "MOVED 3999 10.0.0.7:6379" }
func (movedReply) RedisError()   {}

// TestAClusterRedirectIsReportedAsAMisconfiguration: a MOVED or ASK reply
// reaches the store only through a single-server client of a Cluster node
// (a Cluster client follows them). It is reported as a misconfiguration
// naming dedupe.redis.cluster, not as Redis being unavailable (the state
// consumption would wait out forever), nor as an unknown reply.
func TestAClusterRedirectIsReportedAsAMisconfiguration(t *testing.T) {
	t.Parallel()
	s := NewStore(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), "t:", time.Hour, "gw")
	err := s.fail(context.Background(), "claim", movedReply{})
	if !errors.Is(err, ErrMisconfigured) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "dedupe.redis.cluster") {
		t.Fatalf("MOVED reply: %v, want a misconfiguration naming dedupe.redis.cluster", err)
	}
}
