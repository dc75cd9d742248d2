// Package config is the gateway's whole configuration: one YAML document
// (unknown keys are errors), every key overridable by an environment
// variable and a command-line flag.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kafkagate/gateway/internal/admin"
	"github.com/kafkagate/gateway/internal/canary"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/embedded"
	"github.com/kafkagate/gateway/internal/identity"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/metrics"
	"github.com/kafkagate/gateway/internal/produce"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

// Config is the gateway's configuration.
type Config struct {
	Server   ServerConfig       `yaml:"server"`
	Log      LogConfig          `yaml:"log"`
	Kafka    kafkaclient.Config `yaml:"kafka"`
	Producer produce.Config     `yaml:"producer"`
	Consumer consume.Config     `yaml:"consumer"`
	Dedupe   dedupe.Config      `yaml:"dedupe"`
	Limits   ratelimit.Config   `yaml:"limits"`
	Identity identity.Config    `yaml:"identity"`
	Embedded EmbeddedConfig     `yaml:"embedded"`
	Admin    admin.Config       `yaml:"admin"`
	Metrics  metrics.Config     `yaml:"metrics"`
	Canary   canary.Config      `yaml:"canary"`
}

// ServerConfig is the gRPC server: where it listens and how it shuts down.
type ServerConfig struct {
	// Listen is the TCP address for gRPC; empty disables TCP.
	Listen string `yaml:"listen"`
	// UnixSocket is a path for gRPC over a Unix socket (the sidecar
	// default in Kubernetes); empty disables it.
	UnixSocket string `yaml:"unix_socket"`
	// UnixSocketMode is the octal file mode of the socket.
	UnixSocketMode string `yaml:"unix_socket_mode"`
	// MaxRecvBytes bounds one gRPC request message.
	MaxRecvBytes int `yaml:"max_recv_bytes"`
	// MaxInflightRequestBytes bounds the request bytes the gateway holds at
	// once, across all connections: each API call reserves max_recv_bytes
	// until its request is read (a client-streaming call, for its whole
	// life), then the request's size. A call that finds the budget full is
	// refused with RESOURCE_EXHAUSTED before its request is read.
	MaxInflightRequestBytes int `yaml:"max_inflight_request_bytes"`
	// MaxConnections bounds the open connections of the API listeners (TCP
	// and the Unix socket together); more are closed at once.
	MaxConnections int `yaml:"max_connections"`
	// MaxStreamInflight bounds the unanswered batches of one ProduceStream.
	MaxStreamInflight int `yaml:"max_stream_inflight"`
	// MaxStreams bounds the open Subscribe and ProduceStream calls of the
	// whole gateway; more are refused with RESOURCE_EXHAUSTED.
	MaxStreams int `yaml:"max_streams"`
	// MaxConcurrentStreams bounds the concurrent calls of one HTTP/2
	// connection (SETTINGS_MAX_CONCURRENT_STREAMS); clients queue beyond it.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// StreamWindowBytes and ConnWindowBytes are the HTTP/2 flow-control
	// windows of one call and of one connection: what a client may send
	// before the gateway has read it.
	StreamWindowBytes int `yaml:"stream_window_bytes"`
	ConnWindowBytes   int `yaml:"conn_window_bytes"`
	// KeepaliveMinTime is the shortest interval between client pings the
	// gateway tolerates; a client pinging more often is disconnected.
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	// KeepaliveTime is how long a connection may be silent before the
	// gateway pings it; KeepaliveTimeout how long it waits for the answer
	// before closing it.
	KeepaliveTime    time.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
	// Reflection turns on gRPC server reflection.
	Reflection bool `yaml:"reflection"`
	// ShutdownGrace is how long the gateway reports NOT_SERVING before it
	// stops accepting calls, so load balancers and probes notice first.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// DrainTimeout bounds how long in-flight calls may finish at shutdown.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// TLS serves gRPC over TLS on server.listen (the Unix socket stays
	// plaintext: only the pod reaches it).
	TLS TLSConfig `yaml:"tls"`
	// HealthListen is a TCP address serving grpc.health.v1 and nothing
	// else, in plaintext: for kubelet gRPC probes and load balancers on the
	// pod network, while the API stays on the Unix socket, loopback or TLS.
	// Empty: none.
	HealthListen string `yaml:"health_listen"`
	// InsecurePlaintextAPIOnNetwork lets server.listen serve the whole API
	// (admin included) in plaintext on a non-loopback address. Off, the
	// gateway refuses to start so: anyone on the network could produce,
	// consume, ack others' records and reset offsets, with a self-asserted
	// identity at best.
	InsecurePlaintextAPIOnNetwork bool `yaml:"insecure_plaintext_api_on_network"`
}

// PlaintextOnNetwork reports whether server.listen would serve the API in
// plaintext on an address other than loopback.
func (s ServerConfig) PlaintextOnNetwork() bool {
	return s.Listen != "" && !s.TLS.Enabled() && !isLoopback(s.Listen)
}

// isLoopback reports whether addr (host:port) binds loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TLSConfig is the server's TLS: a certificate, and optionally the CA that
// client certificates must chain to (then every TCP client must present
// one, and identity.tls_client_cert can name callers by it).
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// ReloadInterval is how often the files are read again: a changed
	// certificate, key or client CA applies to the next connections
	// without a restart. 0: 10s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// LogConfig selects the log handler.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// EmbeddedConfig switches embedded mode: an in-process Kafka-protocol broker
// and Redis-protocol server, for trying the gateway with nothing installed.
type EmbeddedConfig struct {
	// Enabled runs the in-process services and points the gateway at them.
	Enabled         bool `yaml:"enabled"`
	embedded.Config `yaml:",inline"`
}

// Default returns the defaults: embedded mode on loopback.
func Default() Config {
	prod := produce.DefaultConfig()
	emb := EmbeddedConfig{Enabled: true, Config: embedded.DefaultConfig()}
	return Config{
		Server: ServerConfig{
			Listen:                  "127.0.0.1:7070",
			UnixSocketMode:          "0660",
			MaxRecvBytes:            4 << 20,
			MaxInflightRequestBytes: 256 << 20,
			MaxConnections:          256,
			TLS:                     TLSConfig{ReloadInterval: 10 * time.Second},
			MaxStreamInflight:       256,
			MaxStreams:              1024,
			// Per connection; a sidecar's app needs a handful.
			MaxConcurrentStreams: 256,
			StreamWindowBytes:    1 << 20,
			ConnWindowBytes:      8 << 20,
			KeepaliveMinTime:     10 * time.Second,
			KeepaliveTime:        time.Minute,
			KeepaliveTimeout:     20 * time.Second,
			Reflection:           true,
			ShutdownGrace:        0,
			DrainTimeout:         15 * time.Second,
		},
		Log:      LogConfig{Level: "info", Format: "text"},
		Kafka:    kafkaclient.DefaultConfig(),
		Producer: prod,
		Consumer: consume.DefaultConfig(),
		Dedupe:   dedupe.DefaultConfig(),
		Limits:   ratelimit.DefaultConfig(),
		Embedded: emb,
		Admin:    admin.DefaultConfig(),
		Metrics:  metrics.DefaultConfig(),
		Canary:   canary.DefaultConfig(),
	}
}

// Validate rejects contradictions before anything connects; the message
// names the key at fault.
func (c *Config) Validate() error {
	if err := c.Server.validate(c.Producer.MaxRecordBytes); err != nil {
		return err
	}
	if err := c.Log.validate(); err != nil {
		return err
	}
	if err := c.Metrics.Validate(); err != nil {
		return err
	}
	if err := c.Canary.Validate(); err != nil {
		return err
	}
	if c.Embedded.Enabled {
		if c.Kafka.BootstrapServers != "" {
			return errors.New("kafka.bootstrap_servers: set while embedded.enabled is true; " +
				"embedded mode runs its own broker, so set embedded.enabled=false to use an external cluster")
		}
		if err := c.Embedded.Validate(); err != nil {
			return err
		}
	} else if c.Kafka.BootstrapServers == "" {
		return errors.New("kafka.bootstrap_servers: required when embedded.enabled is false")
	}
	if err := c.Kafka.Validate("kafka"); err != nil {
		return err
	}
	if err := c.Producer.Validate(c.Kafka); err != nil {
		return err
	}
	if err := c.Consumer.Validate(c.Kafka); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if c.Limits.Redis && !c.Embedded.Enabled && len(c.Dedupe.Redis.Addrs) == 0 {
		return errors.New("limits.redis: needs Redis: set dedupe.redis.addrs (the limits document shares the dedupe connection)")
	}
	if c.Identity.TLSClientCert && c.Server.TLS.ClientCAFile == "" {
		return errors.New("identity.tls_client_cert: needs server.tls.client_ca_file, so that client certificates are verified")
	}
	if err := c.Admin.Validate(c.Identity); err != nil {
		return err
	}
	dd := c.Dedupe
	if c.Embedded.Enabled && len(dd.Redis.Addrs) == 0 {
		// Embedded mode fills in its server's address (possibly a port
		// chosen at start); validate the rest against a stand-in.
		dd.Redis.Addrs = []string{"127.0.0.1:6379"}
	}
	return dd.Validate()
}

func (s ServerConfig) validate(maxRecordBytes int) error {
	if s.Listen == "" && s.UnixSocket == "" {
		return errors.New("server.listen: empty while server.unix_socket is empty too; the gateway needs a listener")
	}
	if s.Listen != "" {
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			return fmt.Errorf("server.listen: %w", err)
		}
	}
	if s.PlaintextOnNetwork() && !s.InsecurePlaintextAPIOnNetwork {
		return fmt.Errorf("server.listen: %s is not a loopback address and server.tls is not set: the whole API, admin included, would be served in plaintext to the network, to anyone who can reach it; "+
			"serve apps on server.unix_socket or a loopback address, put health probes on server.health_listen, set server.tls, "+
			"or, if the network is trusted by other means, set server.insecure_plaintext_api_on_network", s.Listen)
	}
	if s.HealthListen != "" {
		if _, _, err := net.SplitHostPort(s.HealthListen); err != nil {
			return fmt.Errorf("server.health_listen: %w", err)
		}
		if s.HealthListen == s.Listen && !strings.HasSuffix(s.Listen, ":0") {
			return errors.New("server.health_listen: must differ from server.listen")
		}
	}
	if _, err := s.SocketMode(); err != nil {
		return err
	}
	switch {
	case s.MaxRecvBytes < maxRecordBytes+64<<10:
		return fmt.Errorf("server.max_recv_bytes: %d is too small for producer.max_record_bytes (%d) plus 64 KiB of framing", s.MaxRecvBytes, maxRecordBytes)
	case s.MaxInflightRequestBytes < s.MaxRecvBytes:
		return fmt.Errorf("server.max_inflight_request_bytes: %d is smaller than server.max_recv_bytes (%d): no request could be read", s.MaxInflightRequestBytes, s.MaxRecvBytes)
	case s.MaxConnections <= 0:
		return errors.New("server.max_connections: must be > 0")
	case s.MaxStreamInflight <= 0:
		return errors.New("server.max_stream_inflight: must be > 0")
	case s.MaxStreams <= 0:
		return errors.New("server.max_streams: must be > 0")
	case s.MaxConcurrentStreams <= 0 || s.MaxConcurrentStreams > math.MaxUint32:
		return errors.New("server.max_concurrent_streams: must be > 0")
	case s.StreamWindowBytes < 64<<10 || s.StreamWindowBytes > math.MaxInt32:
		return fmt.Errorf("server.stream_window_bytes: %d is outside 64 KiB .. 2 GiB", s.StreamWindowBytes)
	case s.ConnWindowBytes < s.StreamWindowBytes || s.ConnWindowBytes > math.MaxInt32:
		return fmt.Errorf("server.conn_window_bytes: %d must be at least server.stream_window_bytes (%d) and below 2 GiB", s.ConnWindowBytes, s.StreamWindowBytes)
	case s.KeepaliveMinTime <= 0 || s.KeepaliveTime <= 0 || s.KeepaliveTimeout <= 0:
		return errors.New("server: keepalive_min_time, keepalive_time and keepalive_timeout must be > 0")
	case s.ShutdownGrace < 0:
		return errors.New("server.shutdown_grace: must not be negative")
	case s.DrainTimeout < 0:
		return errors.New("server.drain_timeout: must not be negative")
	case (s.TLS.CertFile == "") != (s.TLS.KeyFile == ""):
		return errors.New("server.tls.cert_file and server.tls.key_file: set both or neither")
	case s.TLS.ReloadInterval != 0 && s.TLS.ReloadInterval < 100*time.Millisecond:
		return errors.New("server.tls.reload_interval: must be at least 100ms (0: 10s)")
	case s.TLS.ClientCAFile != "" && s.TLS.CertFile == "":
		return errors.New("server.tls.client_ca_file: needs server.tls.cert_file and key_file")
	}
	return nil
}

// SocketMode parses UnixSocketMode.
func (s ServerConfig) SocketMode() (uint32, error) {
	m, err := strconv.ParseUint(s.UnixSocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("server.unix_socket_mode: %q is not an octal file mode such as 0660", s.UnixSocketMode)
	}
	return uint32(m), nil
}

func (l LogConfig) validate() error {
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not one of text, json", l.Format)
	}
	return nil
}
