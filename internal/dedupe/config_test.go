package dedupe

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"enabled with an address", func(c *Config) { c.Enabled = true; c.Redis.Addrs = []string{"redis:6379"} }, ""},
		{"enabled without addresses", func(c *Config) { c.Enabled = true }, "dedupe.redis.addrs: required when dedupe.enabled is true"},
		{"empty key prefix", func(c *Config) { c.KeyPrefix = "" }, ""},
		{"key prefix with space", func(c *Config) { c.KeyPrefix = "a b" }, "dedupe.key_prefix"},
		{"short done TTL", func(c *Config) { c.DoneTTL = time.Millisecond }, "dedupe.done_ttl"},
		{"id header with space", func(c *Config) { c.IDHeader = " x" }, "dedupe.id_header"},
		{"deliver", func(c *Config) { c.OnRedisFailure = FailureDeliver }, ""},
		{"unknown failure policy", func(c *Config) { c.OnRedisFailure = "drop" }, `dedupe.on_redis_failure: "drop" is not one of pause, deliver`},
		{"short hold retry", func(c *Config) { c.HoldRetry = time.Millisecond }, "dedupe.hold_retry"},
		{"short produce window", func(c *Config) { c.ProduceWindow = 0 }, "dedupe.produce_window"},
		{"longer done TTL with a longer window", func(c *Config) { c.DoneTTL = 720 * time.Hour; c.ProduceWindow = 720 * time.Hour }, ""},
		{"address without port", func(c *Config) { c.Redis.Addrs = []string{"a:1", "redis"} }, "dedupe.redis.addrs[1]"},
		{"address with bad port", func(c *Config) { c.Redis.Addrs = []string{"redis:0"} }, "dedupe.redis.addrs[0]"},
		{"address without host", func(c *Config) { c.Redis.Addrs = []string{":6379"} }, "dedupe.redis.addrs[0]"},
		{"sentinel without addresses", func(c *Config) { c.Redis.MasterName = "mymaster" }, "dedupe.redis.addrs: required"},
		{"negative db", func(c *Config) { c.Redis.DB = -1 }, "dedupe.redis.db"},
		{"db on cluster", func(c *Config) { c.Redis.Addrs = []string{"a:1", "b:1"}; c.Redis.DB = 2 }, "dedupe.redis.db: must be 0"},
		{"db on sentinel", func(c *Config) { c.Redis.Addrs = []string{"a:1", "b:1"}; c.Redis.MasterName = "m"; c.Redis.DB = 2 }, ""},
		{"cluster behind one address", func(c *Config) { c.Redis.Addrs = []string{"a:1"}; c.Redis.Cluster = true }, ""},
		{"db on a declared cluster", func(c *Config) { c.Redis.Addrs = []string{"a:1"}; c.Redis.Cluster = true; c.Redis.DB = 1 }, "dedupe.redis.db: must be 0 with dedupe.redis.cluster"},
		{"cluster with sentinel", func(c *Config) { c.Redis.Addrs = []string{"a:1"}; c.Redis.Cluster = true; c.Redis.MasterName = "m" }, "dedupe.redis.cluster"},
		{"no dial timeout", func(c *Config) { c.Redis.DialTimeout = 0 }, "dedupe.redis.dial_timeout"},
		{"no read timeout", func(c *Config) { c.Redis.ReadTimeout = 0 }, "dedupe.redis.read_timeout"},
		{"no write timeout", func(c *Config) { c.Redis.WriteTimeout = -1 }, "dedupe.redis.write_timeout"},
		{"negative pool", func(c *Config) { c.Redis.PoolSize = -1 }, "dedupe.redis.pool_size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tc.modify(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	t.Parallel()
	src := `
enabled: true
redis:
  addrs: [r1:6379, r2:6379]
  master_name: mymaster
  username: gw
  password: secret
  db: 3
  dial_timeout: 2s
  read_timeout: 250ms
  write_timeout: 300ms
  pool_size: 20
key_prefix: "kg:"
done_ttl: 336h
id_header: x-id
on_redis_failure: deliver
hold_retry: 500ms
produce_window: 1h
`
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := Config{
		Enabled: true,
		Redis: RedisConfig{
			Addrs: []string{"r1:6379", "r2:6379"}, MasterName: "mymaster", Username: "gw", Password: "secret", DB: 3,
			DialTimeout: 2 * time.Second, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 300 * time.Millisecond, PoolSize: 20,
		},
		KeyPrefix: "kg:", DoneTTL: 336 * time.Hour, IDHeader: "x-id", OnRedisFailure: FailureDeliver,
		HoldRetry: 500 * time.Millisecond, ProduceWindow: time.Hour,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestNewClientKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  RedisConfig
		want string
	}{
		{"single", RedisConfig{Addrs: []string{"127.0.0.1:1"}}, "*redis.Client"},
		{"sentinel", RedisConfig{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, MasterName: "m"}, "*redis.Client"},
		{"cluster", RedisConfig{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, "*redis.ClusterClient"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := DefaultConfig().Redis
			tc.cfg.DialTimeout, tc.cfg.ReadTimeout, tc.cfg.WriteTimeout = d.DialTimeout, d.ReadTimeout, d.WriteTimeout
			rdb := newClient(t, tc.cfg)
			defer rdb.Close()
			var got string
			switch c := rdb.(type) {
			case *redis.Client:
				got = "*redis.Client"
				o := c.Options()
				if tc.name == "single" && o.Addr != tc.cfg.Addrs[0] {
					t.Errorf("addr %q", o.Addr)
				}
				if o.ReadTimeout != d.ReadTimeout || o.MaxRetries != 1 || o.DialerRetries != 1 || !o.ContextTimeoutEnabled {
					t.Errorf("options %+v", o)
				}
			case *redis.ClusterClient:
				got = "*redis.ClusterClient"
			default:
				got = "other"
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestAProduceWindowShorterThanTheDoneTTLIsRefused pins the namespaces of
// message IDs across both sides of dedupe: an idempotency key is the
// record's message ID. With produce_window (24 h by default) shorter than
// done_ttl (7 d), an app reusing a key after the window wrote a new record
// with an old message ID, and consumers with dedupe dropped that real
// record as a duplicate for the rest of done_ttl. Such a configuration is
// refused with both keys named, and the defaults are equal.
func TestAProduceWindowShorterThanTheDoneTTLIsRefused(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	if c.ProduceWindow != c.DoneTTL {
		t.Errorf("default produce_window %v, done_ttl %v: want them equal", c.ProduceWindow, c.DoneTTL)
	}
	c.ProduceWindow = 24 * time.Hour
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "dedupe.done_ttl") || !strings.Contains(err.Error(), "dedupe.produce_window") {
		t.Fatalf("done_ttl 7d with produce_window 24h: %v, want an error naming both keys", err)
	}
}
