// Package embedded runs the in-process services behind the gateway's
// embedded mode, which lets the gateway run with nothing else installed:
//
//   - a Kafka-protocol broker (github.com/twmb/franz-go/pkg/kfake): one
//     broker, idempotent and transactional produce, topics created on first
//     use, classic consumer groups (client-side assignors such as
//     cooperative-sticky, static membership), committed offsets and the
//     admin API;
//   - a Redis-protocol server (github.com/alicebob/miniredis/v2): strings
//     with NX/PX, EVAL/EVALSHA Lua scripts, pipelines, MULTI/EXEC, with key
//     expiry following the wall clock.
//
// All state is in memory and is lost when the services close.
//
// # Client settings
//
// librdkafka (confluent-kafka-go) needs nothing special, with these limits:
//
//   - The cluster has one broker: CreateTopics must ask for a replication
//     factor of 1 or -1 (broker default); more fails with
//     INVALID_REPLICATION_FACTOR.
//   - Group session timeouts must lie within 6 s and 5 min (the Kafka
//     defaults group.min/max.session.timeout.ms); librdkafka's default of
//     45 s fits.
//   - Topics are auto-created by metadata requests that allow it. A
//     librdkafka producer allows it by default; a consumer does not
//     (allow.auto.create.topics=false), so subscribing to a topic nobody
//     produced to yet reports it unknown until it exists.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
)

// clusterID is the cluster ID the embedded broker reports in metadata.
const clusterID = "kafkagate-embedded"

// Services is a running embedded Kafka broker and Redis server. Create it
// with [Start] and release it with [Services.Close]. Its methods are safe
// for concurrent use.
type Services struct {
	logger *slog.Logger

	kafka          *kfake.Cluster
	kafkaBootstrap string

	redis     *miniredis.Miniredis
	redisAddr string

	closeOnce sync.Once
}

// Start validates cfg and starts the embedded Kafka broker and Redis server.
// The listeners are bound when Start returns, so clients may connect at
// once. A nil logger discards logs. On error nothing is left running.
//
// The broker's own logs go to logger at debug level (its internal errors at
// error level); Start and Close log at info level.
func Start(cfg Config, logger *slog.Logger) (*Services, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Services{logger: logger.With("component", "embedded")}

	if err := s.startKafka(cfg); err != nil {
		return nil, err
	}
	if err := s.startRedis(cfg); err != nil {
		s.kafka.Close()
		return nil, err
	}
	return s, nil
}

// startKafka binds cfg.KafkaAddr and starts a one-broker kfake cluster on
// that listener.
func (s *Services) startKafka(cfg Config) error {
	host, _, _ := net.SplitHostPort(cfg.KafkaAddr) // validated
	ln, err := net.Listen("tcp", cfg.KafkaAddr)
	if err != nil {
		return fmt.Errorf("embedded kafka: listen on embedded.kafka_addr %q: %w", cfg.KafkaAddr, err)
	}
	adv, err := dialAddr(host, ln.Addr())
	if err != nil {
		ln.Close()
		return fmt.Errorf("embedded kafka: %w", err)
	}

	// kfake always listens on 127.0.0.1 and advertises whatever its
	// listener's Addr reports. Handing it our own listener lets it serve
	// the configured host, and wrapping Addr makes it advertise an
	// address clients can dial even when bound to every interface.
	handedOut := false
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID(clusterID),
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			if handedOut { // NumBrokers(1): kfake asks once.
				return nil, errors.New("embedded kafka: only one broker listener is available")
			}
			handedOut = true
			return advertisingListener{Listener: ln, addr: adv}, nil
		}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		kfake.WithLogger(kfakeLogger{s.logger.With("service", "kafka")}),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(cfg.Partitions, cfg.Topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		ln.Close() // kfake closes it too on most failures; a second Close is harmless.
		return fmt.Errorf("embedded kafka: start broker: %w", err)
	}
	s.kafka = c
	s.kafkaBootstrap = adv.String()

	attrs := []any{
		"bootstrap", s.kafkaBootstrap,
		"default_partitions", cfg.Partitions,
		"topics", cfg.Topics,
	}
	if isUnspecifiedHost(host) {
		attrs = append(attrs, "note", "listening on all interfaces, advertising loopback: remote clients cannot follow the advertised address")
	}
	s.logger.Info("embedded Kafka broker started", attrs...)
	return nil
}

// startRedis starts miniredis on cfg.RedisAddr with TTLs following the wall
// clock.
func (s *Services) startRedis(cfg Config) error {
	host, _, _ := net.SplitHostPort(cfg.RedisAddr) // validated
	m := miniredis.NewMiniRedis()
	// By default miniredis only expires keys when FastForward is called.
	// ClockTTL makes every command first advance TTLs by the wall-clock
	// time elapsed since the previous command, so PX/EX leases expire in
	// real time, with no ticker goroutine.
	m.ClockTTL(true)
	if err := m.StartAddr(cfg.RedisAddr); err != nil {
		return fmt.Errorf("embedded redis: listen on embedded.redis_addr %q: %w", cfg.RedisAddr, err)
	}
	addr, err := dialAddr(host, m.Server().Addr())
	if err != nil {
		m.Close()
		return fmt.Errorf("embedded redis: %w", err)
	}
	s.redis = m
	s.redisAddr = addr.String()
	s.logger.Info("embedded Redis server started", "addr", s.redisAddr)
	return nil
}

// KafkaBootstrap returns the host:port the embedded broker is reachable at,
// suitable for bootstrap.servers. It is the bound port (resolved if the
// configured port was 0), with loopback in place of an unspecified host.
// It stays valid to call after Close.
func (s *Services) KafkaBootstrap() string { return s.kafkaBootstrap }

// RedisAddr returns the host:port the embedded Redis server is reachable
// at, resolved like [Services.KafkaBootstrap]. It stays valid to call after
// Close.
func (s *Services) RedisAddr() string { return s.redisAddr }

// Close stops both services, closing their listeners and client
// connections and dropping all data. It is idempotent and safe to call
// concurrently; every call returns after the services have been stopped.
//
// The Redis server's goroutines have exited when Close returns. The Kafka
// broker's goroutines are told to stop and exit promptly afterwards, but
// kfake offers no way to wait for them.
func (s *Services) Close() {
	s.closeOnce.Do(func() {
		s.redis.Close()
		s.kafka.Close()
		s.logger.Info("embedded services stopped")
	})
}

// advertisingListener is a net.Listener whose Addr is the address clients
// should dial. kfake advertises its listener's Addr in metadata and
// FindCoordinator responses.
type advertisingListener struct {
	net.Listener
	addr net.Addr
}

// Addr returns the advertised address.
func (l advertisingListener) Addr() net.Addr { return l.addr }

// dialAddr returns the address a local client dials to reach a listener
// bound to bound, configured with host: bound itself, unless its IP is
// unspecified (every interface), in which case the loopback address of the
// configured family: ::1 if host is an IPv6 literal, 127.0.0.1 otherwise.
func dialAddr(host string, bound net.Addr) (*net.TCPAddr, error) {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("listener address %v (%T) is not TCP", bound, bound)
	}
	out := *tcp
	if out.IP == nil || out.IP.IsUnspecified() {
		out.Zone = ""
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			out.IP = net.IPv6loopback
		} else {
			out.IP = net.IPv4(127, 0, 0, 1).To4()
		}
	}
	return &out, nil
}

// kfakeLogger routes kfake's logs to slog: internal errors at error level,
// everything else (request failures, group membership events) at debug.
type kfakeLogger struct{ l *slog.Logger }

// Logf implements kfake.Logger.
func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	sl := slog.LevelDebug
	if level == kfake.LogLevelError {
		sl = slog.LevelError
	}
	ctx := context.Background()
	if !k.l.Enabled(ctx, sl) {
		return // skip the formatting
	}
	k.l.Log(ctx, sl, fmt.Sprintf(format, args...), "kfake_level", level.String())
}
