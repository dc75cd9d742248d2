package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Default values used by [DefaultConfig].
const (
	// DefaultKafkaAddr is where the embedded Kafka broker listens by
	// default: the port a newcomer's tools expect, on loopback only.
	DefaultKafkaAddr = "127.0.0.1:9092"
	// DefaultRedisAddr is where the embedded Redis server listens by
	// default: the standard Redis port, on loopback only.
	DefaultRedisAddr = "127.0.0.1:6379"
	// DefaultPartitions is the partition count of auto-created topics and
	// of the topics listed in [Config.Topics].
	DefaultPartitions int32 = 3
)

// maxTopicNameLen is Kafka's limit on the length of a topic name.
const maxTopicNameLen = 249

// Config configures the embedded services. It is read from the gateway's
// YAML configuration; keys are reported in errors as "embedded.<yaml key>".
//
// Start from [DefaultConfig] and override fields: the zero value is not
// valid.
type Config struct {
	// KafkaAddr is the host:port the embedded Kafka broker listens on.
	// The host also decides the address the broker advertises to
	// clients in metadata responses; an unspecified host ("", "0.0.0.0",
	// "::") listens on every interface but advertises loopback, so only
	// local clients can follow the advertised address. Port 0 picks a
	// free port; [Services.KafkaBootstrap] reports it.
	KafkaAddr string `yaml:"kafka_addr"`

	// RedisAddr is the host:port the embedded Redis server listens on.
	// Port 0 picks a free port; [Services.RedisAddr] reports it.
	RedisAddr string `yaml:"redis_addr"`

	// Partitions is the partition count of topics created on first use
	// (auto-create through metadata requests), of CreateTopics requests
	// asking for the broker default (-1), and of [Config.Topics].
	Partitions int32 `yaml:"default_partitions"`

	// Topics are created when the services start, each with Partitions
	// partitions. Optional: any other topic is created on first use.
	Topics []string `yaml:"topics"`
}

// DefaultConfig returns the configuration a newcomer expects: Kafka on
// 127.0.0.1:9092, Redis on 127.0.0.1:6379, three partitions per topic and
// no pre-created topics.
func DefaultConfig() Config {
	return Config{
		KafkaAddr:  DefaultKafkaAddr,
		RedisAddr:  DefaultRedisAddr,
		Partitions: DefaultPartitions,
	}
}

// Validate reports every invalid field, each error naming its key, for
// example "embedded.default_partitions: must be > 0". It returns nil if the
// configuration is usable by [Start].
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("embedded.%s: %s", key, fmt.Sprintf(format, args...)))
	}

	kafkaOK := true
	if err := validateAddr(c.KafkaAddr); err != nil {
		bad("kafka_addr", "%v", err)
		kafkaOK = false
	}
	if err := validateAddr(c.RedisAddr); err != nil {
		bad("redis_addr", "%v", err)
	} else if kafkaOK && sameFixedAddr(c.KafkaAddr, c.RedisAddr) {
		bad("redis_addr", "%q overlaps embedded.kafka_addr %q; the two services need different ports", c.RedisAddr, c.KafkaAddr)
	}

	if c.Partitions <= 0 {
		bad("default_partitions", "must be > 0, got %d", c.Partitions)
	}

	// Kafka treats '.' and '_' as colliding in topic names (their metric
	// names would clash), and rejects the second of two such topics.
	seen := make(map[string]string, len(c.Topics))
	for i, t := range c.Topics {
		key := fmt.Sprintf("topics[%d]", i)
		if err := validateTopicName(t); err != nil {
			bad(key, "%v", err)
			continue
		}
		norm := strings.ReplaceAll(t, ".", "_")
		if prev, ok := seen[norm]; ok {
			if prev == t {
				bad(key, "topic %q is listed twice", t)
			} else {
				bad(key, "topic %q collides with %q (Kafka treats '.' and '_' as the same)", t, prev)
			}
			continue
		}
		seen[norm] = t
	}
	return errors.Join(errs...)
}

// validateAddr checks that addr is host:port with a numeric port.
func validateAddr(addr string) error {
	if addr == "" {
		return errors.New(`must be set, as "host:port" (port 0 picks a free port)`)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`%q is not "host:port": %v`, addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	return nil
}

// sameFixedAddr reports whether a and b (both valid host:port) certainly
// name the same non-zero port on overlapping hosts, so that the second
// listener could never bind.
func sameFixedAddr(a, b string) bool {
	ah, ap, _ := net.SplitHostPort(a)
	bh, bp, _ := net.SplitHostPort(b)
	if ap != bp || ap == "0" {
		return false
	}
	return ah == bh || isUnspecifiedHost(ah) || isUnspecifiedHost(bh)
}

// validateTopicName applies Kafka's topic name rules.
func validateTopicName(t string) error {
	switch {
	case t == "":
		return errors.New("topic name must not be empty")
	case t == "." || t == "..":
		return fmt.Errorf("topic name %q is not allowed", t)
	case len(t) > maxTopicNameLen:
		return fmt.Errorf("topic name %q is longer than %d characters", t, maxTopicNameLen)
	}
	for _, r := range t {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("topic name %q has %q; only ASCII letters, digits, '.', '_' and '-' are allowed", t, r)
		}
	}
	return nil
}

// isUnspecifiedHost reports whether host (from net.SplitHostPort) means
// "every interface".
func isUnspecifiedHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
