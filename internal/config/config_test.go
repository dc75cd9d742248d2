package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultsAreValidEmbeddedMode(t *testing.T) {
	t.Parallel()
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if !cfg.Embedded.Enabled || cfg.Server.Listen != "127.0.0.1:7070" {
		t.Errorf("defaults: embedded=%v listen=%q, want embedded on 127.0.0.1:7070", cfg.Embedded.Enabled, cfg.Server.Listen)
	}
}

func TestLoadPrecedenceIsDefaultsFileEnvFlags(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
server:
  listen: 127.0.0.1:1111
  drain_timeout: 3s
producer:
  preset: throughput
  properties:
    linger.ms: "20"
`)
	env := []string{"GATEWAY_SERVER_LISTEN=127.0.0.1:2222", "GATEWAY_PRODUCER_MAX_RECORD_BYTES=2048", "UNRELATED=1"}
	flags := []Override{
		{Key: "server.listen", Value: "127.0.0.1:3333"},
		{Key: "kafka.properties.sasl.mechanism", Value: "PLAIN"},
		{Key: "embedded.topics", Value: "a, b"},
	}
	cfg, err := Load(path, env, flags)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag beats env and file", cfg.Server.Listen, "127.0.0.1:3333"},
		{"file beats default", cfg.Server.DrainTimeout, 3 * time.Second},
		{"file sets preset", cfg.Producer.Preset, "throughput"},
		{"file sets map entry", cfg.Producer.Properties["linger.ms"], "20"},
		{"env beats default", cfg.Producer.MaxRecordBytes, 2048},
		{"flag sets dotted map entry", cfg.Kafka.Properties["sasl.mechanism"], "PLAIN"},
		{"flag sets list", strings.Join(cfg.Embedded.Topics, "|"), "a|b"},
		{"untouched default", cfg.Producer.MessageIDHeader, "message-id"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		file     string
		env      []string
		flags    []Override
		wantText string
	}{
		{name: "unknown key in file", file: "server:\n  listn: x\n", wantText: "field listn not found"},
		{name: "unknown flag", flags: []Override{{Key: "server.nope", Value: "1"}}, wantText: `unknown key "server.nope"`},
		{name: "bad duration in env", env: []string{"GATEWAY_SERVER_DRAIN_TIMEOUT=soon"}, wantText: "GATEWAY_SERVER_DRAIN_TIMEOUT"},
		{name: "bad integer flag", flags: []Override{{Key: "producer.max_record_bytes", Value: "big"}}, wantText: "producer.max_record_bytes"},
		{name: "map without entry name", flags: []Override{{Key: "kafka.properties", Value: "x"}}, wantText: "name an entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			_, err := Load(path, tc.env, tc.flags)
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("Load error = %v, want one containing %q", err, tc.wantText)
			}
		})
	}
}

func TestValidateNamesTheKeyAtFault(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		mutate   func(*Config)
		wantText string
	}{
		{"embedded with external bootstrap", func(c *Config) { c.Kafka.BootstrapServers = "k:9092" }, "kafka.bootstrap_servers"},
		{"external without bootstrap", func(c *Config) { c.Embedded.Enabled = false }, "kafka.bootstrap_servers: required"},
		{"idempotence without acks=all", func(c *Config) { c.Producer.Properties = map[string]string{"acks": "1"} }, "acks"},
		{"unknown librdkafka property", func(c *Config) { c.Kafka.Properties = map[string]string{"lingr.ms": "5"} }, "lingr.ms"},
		{"bad property value", func(c *Config) { c.Producer.Properties = map[string]string{"batch.size": "huge"} }, "batch.size"},
		{"reserved go property", func(c *Config) { c.Producer.Properties = map[string]string{"go.delivery.reports": "false"} }, "producer.properties.go.delivery.reports"},
		{"producer requests in flight", func(c *Config) {
			c.Producer.Properties = map[string]string{"max.in.flight.requests.per.connection": "5"}
		}, "producer.properties.max.in.flight.requests.per.connection: must be 1"},
		{"shared requests in flight, short name", func(c *Config) { c.Kafka.Properties = map[string]string{"max.in.flight": "2"} }, "kafka.properties.max.in.flight: must be 1"},
		{"unknown preset", func(c *Config) { c.Producer.Preset = "fast" }, "producer.preset"},
		{"no listener", func(c *Config) { c.Server.Listen = "" }, "server.listen"},
		{"bad listen address", func(c *Config) { c.Server.Listen = "7070" }, "server.listen"},
		{"bad socket mode", func(c *Config) { c.Server.UnixSocketMode = "rw" }, "server.unix_socket_mode"},
		{"receive limit below record limit", func(c *Config) { c.Server.MaxRecvBytes = 1 << 20 }, "server.max_recv_bytes"},
		{"zero records per request", func(c *Config) { c.Producer.MaxRecordsPerRequest = 0 }, "producer.max_records_per_request"},
		{"empty message id header", func(c *Config) { c.Producer.MessageIDHeader = "" }, "producer.message_id_header"},
		{"bad log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"bad embedded partitions", func(c *Config) { c.Embedded.Partitions = 0 }, "embedded.default_partitions"},
		{"bad metrics listen address", func(c *Config) { c.Metrics.Listen = "9464" }, "metrics.listen"},
		{"tiny statistics interval", func(c *Config) { c.Metrics.KafkaStatisticsInterval = time.Millisecond }, "metrics.kafka_statistics_interval"},
		{"canary without interval", func(c *Config) { c.Canary.Enabled, c.Canary.Interval = true, 0 }, "canary.interval"},
		{"bad canary topic", func(c *Config) { c.Canary.Enabled, c.Canary.Topic = true, "a b" }, "canary.topic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Default()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("Validate error = %v, want one containing %q", err, tc.wantText)
			}
		})
	}
}

func TestKeysCoverEveryLeafOnce(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.Path] {
			t.Errorf("key %s listed twice", k.Path)
		}
		seen[k.Path] = true
		cfg := Default()
		if k.Map || k.FileOnly {
			continue
		}
		// Every listed key can be set back to its own default.
		if err := Set(&cfg, k.Path, k.Default); err != nil {
			t.Errorf("Set(%s, %q): %v", k.Path, k.Default, err)
		}
	}
	for _, want := range []string{"server.listen", "kafka.properties", "producer.preset", "embedded.enabled", "embedded.kafka_addr"} {
		if !seen[want] {
			t.Errorf("key %s missing from Keys()", want)
		}
	}
}
