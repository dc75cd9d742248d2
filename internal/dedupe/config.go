package dedupe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// What the consumer does with a record whose claim could not be decided
// because Redis failed (Config.OnRedisFailure).
const (
	// FailurePause stops delivering records of the group until Redis
	// answers again: no duplicate slips through, at the cost of latency.
	FailurePause = "pause"
	// FailureDeliver delivers the record without a claim: availability
	// over dedupe.
	FailureDeliver = "deliver"
)

// Config is the dedupe section of the gateway configuration (key
// "dedupe"): the Redis store behind consumer-side dedupe and producer
// idempotency keys.
type Config struct {
	// Enabled turns on consumer-side dedupe for every group.
	Enabled bool `yaml:"enabled"`
	// Redis is where claims, done markers and produce results live.
	Redis RedisConfig `yaml:"redis"`
	// KeyPrefix starts every key the gateway writes to Redis.
	KeyPrefix string `yaml:"key_prefix"`
	// DoneTTL is how long a processed message ID is remembered. It must
	// outlive the retention of the consumed topics, or a record re-read
	// after its done marker expired is delivered again.
	DoneTTL time.Duration `yaml:"done_ttl"`
	// IDHeader names the header carrying the message ID of records written
	// by other producers; it is read when the gateway's own message-id
	// header is absent. Empty: such records are not deduplicated.
	IDHeader string `yaml:"id_header"`
	// OnRedisFailure is FailurePause or FailureDeliver.
	OnRedisFailure string `yaml:"on_redis_failure"`
	// HoldRetry is how often a record whose message is claimed by another
	// live owner is tried again.
	HoldRetry time.Duration `yaml:"hold_retry"`
	// ProduceWindow is how long a producer idempotency key is remembered.
	// It must be at least DoneTTL: a key reused after the window writes a
	// new record with the same message ID, which consumers with dedupe
	// would drop as a duplicate for the rest of DoneTTL.
	ProduceWindow time.Duration `yaml:"produce_window"`
}

// RedisConfig says how to reach Redis. One address is a single server,
// unless Cluster is set; MasterName makes the addresses Sentinels; several
// addresses without MasterName, or any with Cluster, are Redis Cluster
// nodes (seeds: the client learns the others from them).
type RedisConfig struct {
	// Addrs are host:port addresses.
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master name; empty when not using Sentinel.
	MasterName string `yaml:"master_name"`
	// Cluster says the deployment is a Redis Cluster, so that a single
	// address (a configuration endpoint, say) builds a Cluster client too.
	Cluster bool `yaml:"cluster"`
	// Username and Password authenticate (ACL user, or Password alone for
	// requirepass).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB is the database number; Redis Cluster only has 0.
	DB int `yaml:"db"`
	// DialTimeout bounds establishing a connection.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ReadTimeout and WriteTimeout bound each socket read and write; for a
	// batch, ReadTimeout bounds reading all its replies. Embedded mode's
	// miniredis runs each script call in a fresh Lua interpreter (about
	// 0.5 ms): a batch of 1,000 items needs a read timeout above 500 ms.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// PoolSize is the number of connections per node; 0 is go-redis's
	// default (10 per GOMAXPROCS).
	PoolSize int `yaml:"pool_size"`
	// TLS connects to Redis over TLS (Sentinels and Cluster nodes too).
	TLS RedisTLS `yaml:"tls"`
}

// RedisTLS is TLS to Redis.
type RedisTLS struct {
	// Enabled turns TLS on.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the server's
	// certificate; empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for servers that
	// require one (tls-auth-clients yes).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must carry; empty:
	// the host of the address dialed.
	ServerName string `yaml:"server_name"`
}

// config returns the tls.Config, or nil when TLS is off.
func (t RedisTLS) config(path string) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.ca_file: %w", path, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.tls.ca_file: no PEM certificate in %s", path, t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.cert_file: %w", path, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Redis: RedisConfig{
			DialTimeout:  time.Second,
			ReadTimeout:  500 * time.Millisecond,
			WriteTimeout: 500 * time.Millisecond,
		},
		KeyPrefix:      "gateway:",
		DoneTTL:        168 * time.Hour,
		OnRedisFailure: FailurePause,
		HoldRetry:      time.Second,
		ProduceWindow:  168 * time.Hour, // = DoneTTL
	}
}

// Validate checks c without connecting. Errors name the offending key.
func (c Config) Validate() error {
	switch {
	case c.Enabled && len(c.Redis.Addrs) == 0:
		return fmt.Errorf("dedupe.redis.addrs: required when dedupe.enabled is true")
	case strings.ContainsAny(c.KeyPrefix, " \t\r\n"):
		return fmt.Errorf("dedupe.key_prefix: %q must not contain white space", c.KeyPrefix)
	case c.DoneTTL < time.Second:
		return fmt.Errorf("dedupe.done_ttl: must be at least 1s (and outlive topic retention)")
	case c.IDHeader != strings.TrimSpace(c.IDHeader):
		return fmt.Errorf("dedupe.id_header: %q has leading or trailing white space", c.IDHeader)
	case c.OnRedisFailure != FailurePause && c.OnRedisFailure != FailureDeliver:
		return fmt.Errorf("dedupe.on_redis_failure: %q is not one of %s, %s", c.OnRedisFailure, FailurePause, FailureDeliver)
	case c.HoldRetry < 10*time.Millisecond:
		return fmt.Errorf("dedupe.hold_retry: must be at least 10ms")
	case c.ProduceWindow < time.Second:
		return fmt.Errorf("dedupe.produce_window: must be at least 1s")
	case c.DoneTTL > c.ProduceWindow:
		return fmt.Errorf("dedupe.done_ttl: %v is longer than dedupe.produce_window (%v): an idempotency key reused after the window would write a new record whose message ID consumers with dedupe drop as a duplicate until done_ttl ends; raise dedupe.produce_window to at least dedupe.done_ttl",
			c.DoneTTL, c.ProduceWindow)
	}
	return c.Redis.validate("dedupe.redis")
}

// validate checks the Redis settings; path prefixes the keys in errors.
func (c RedisConfig) validate(path string) error {
	for i, a := range c.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("%s.addrs[%d]: %q is not host:port", path, i, a)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("%s.addrs[%d]: %q has no valid port", path, i, a)
		}
		if host == "" {
			return fmt.Errorf("%s.addrs[%d]: %q has no host", path, i, a)
		}
	}
	switch {
	case c.MasterName != "" && len(c.Addrs) == 0:
		return fmt.Errorf("%s.addrs: required (the Sentinel addresses) when %s.master_name is set", path, path)
	case c.Cluster && c.MasterName != "":
		return fmt.Errorf("%s.cluster: true does not go with %s.master_name (Sentinel); set one of them", path, path)
	case c.DB < 0:
		return fmt.Errorf("%s.db: must not be negative", path)
	case c.DB != 0 && c.MasterName == "" && len(c.Addrs) > 1:
		return fmt.Errorf("%s.db: must be 0 with several addrs (Redis Cluster has only db 0)", path)
	case c.DB != 0 && c.Cluster:
		return fmt.Errorf("%s.db: must be 0 with %s.cluster (Redis Cluster has only db 0)", path, path)
	case c.DialTimeout <= 0:
		return fmt.Errorf("%s.dial_timeout: must be > 0", path)
	case c.ReadTimeout <= 0:
		return fmt.Errorf("%s.read_timeout: must be > 0", path)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("%s.write_timeout: must be > 0", path)
	case c.PoolSize < 0:
		return fmt.Errorf("%s.pool_size: must not be negative", path)
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return fmt.Errorf("%s.tls.cert_file and %s.tls.key_file: set both or neither", path, path)
	case !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.ServerName != ""):
		return fmt.Errorf("%s.tls.enabled: false, but other %s.tls keys are set", path, path)
	}
	return nil
}

// NewClient returns a go-redis universal client for c: a single-server
// client for one address, a Sentinel failover client when MasterName is
// set, a Cluster client for several addresses or with Cluster (with none,
// 127.0.0.1:6379). It does not connect yet; [CheckMode] tells whether the
// server fits. With Sentinel, Username and Password
// authenticate to the master; the Sentinels themselves are reached without
// credentials.
//
// Beyond c, it makes failures surface fast: one dial attempt per new
// connection (go-redis would otherwise dial 5 times, 100 ms apart), one
// retry of a command after a network error (a pooled connection that died
// with a Redis restart), and ctx deadlines bound each call. So an
// unreachable Redis is reported within about DialTimeout. Retried scripts
// are safe: every script of [Store] gives the same answer when run twice
// with the same arguments.
func (c RedisConfig) NewClient(path string) (redis.UniversalClient, error) {
	addrs := c.Addrs
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:6379"}
	}
	tc, err := c.TLS.config(path)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		TLSConfig:             tc,
		Addrs:                 addrs,
		MasterName:            c.MasterName,
		Username:              c.Username,
		Password:              c.Password,
		DB:                    c.DB,
		DialTimeout:           c.DialTimeout,
		ReadTimeout:           c.ReadTimeout,
		WriteTimeout:          c.WriteTimeout,
		PoolSize:              c.PoolSize,
		IsClusterMode:         c.Cluster,
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	}), nil
}

// CheckMode checks that the client rdb (built by [RedisConfig.NewClient])
// fits the server: a single-server client of a Redis Cluster node would be
// answered MOVED for every key of a slot another node serves, and a Cluster
// client of a server without cluster support fails every command. A
// mismatch is an error wrapping [ErrMisconfigured] that names
// dedupe.redis.cluster; a Redis that does not answer, one wrapping
// [ErrUnavailable]; a server that does not say (an INFO section it does not
// know, as miniredis) passes.
func CheckMode(ctx context.Context, rdb redis.UniversalClient) error {
	switch c := rdb.(type) {
	case *redis.Client: // a single server, or the master Sentinel names
		info, err := c.Info(ctx, "cluster").Result()
		var reply redis.Error
		switch {
		case errors.As(err, &reply):
			return nil // it answered, without a cluster section
		case err != nil:
			return fmt.Errorf("%w: check the server's cluster mode: %w", ErrUnavailable, err)
		case strings.Contains(info, "cluster_enabled:1"):
			return fmt.Errorf("%w: dedupe.redis.cluster: the Redis server at %s is a Redis Cluster node (cluster_enabled:1), but dedupe.redis names a single server: set dedupe.redis.cluster: true",
				ErrMisconfigured, c.Options().Addr)
		}
	case *redis.ClusterClient:
		err := c.Ping(ctx).Err()
		switch {
		case err != nil && strings.Contains(err.Error(), "cluster support disabled"):
			return fmt.Errorf("%w: dedupe.redis.cluster: true, but the Redis server at %v is not a Redis Cluster node (%v): set dedupe.redis.cluster: false",
				ErrMisconfigured, c.Options().Addrs, err)
		case err != nil:
			return fmt.Errorf("%w: check the server's cluster mode: %w", ErrUnavailable, err)
		}
	}
	return nil
}
