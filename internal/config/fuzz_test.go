package config

import (
	"strings"
	"testing"
)

// FuzzLoad: any configuration file, environment-style key and value either
// load and validate or fail with a message; parsing never panics, and a
// configuration that validates keeps its own invariants.
func FuzzLoad(f *testing.F) {
	f.Add("server:\n  listen: 127.0.0.1:7070\n", "consumer.ack_timeout", "5s")
	f.Add("embedded:\n  enabled: false\nkafka:\n  bootstrap_servers: k:9092\n", "kafka.properties.linger.ms", "5")
	f.Add("consumer:\n  subscriptions:\n    - group: g\n      topics: [a, b]\n      ordering: key\n", "dedupe.enabled", "true")
	f.Add("server: [1, 2]\n", "server.max_recv_bytes", "-1")
	f.Add("unknown: 1\n", "nope", "")
	f.Add("producer:\n  max_record_bytes: 99999999999\n", "server.unix_socket_mode", "0999")
	f.Add("&a [*a]", "log.level", "DEBUG")
	f.Fuzz(func(t *testing.T, yamlText, key, value string) {
		if len(yamlText) > 4096 {
			return
		}
		cfg := Default()
		if err := decodeStrict([]byte(yamlText), &cfg); err != nil {
			if err.Error() == "" {
				t.Fatal("decode error without a message")
			}
			return
		}
		if err := Set(&cfg, key, value); err != nil {
			if !strings.Contains(err.Error(), key) && !strings.Contains(err.Error(), "unknown key") {
				t.Fatalf("Set(%q, %q): %v does not name the key", key, value, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("validation error without a message")
			}
			return
		}
		if cfg.Server.MaxRecvBytes < cfg.Producer.MaxRecordBytes {
			t.Fatalf("validated max_recv_bytes %d below max_record_bytes %d", cfg.Server.MaxRecvBytes, cfg.Producer.MaxRecordBytes)
		}
	})
}
