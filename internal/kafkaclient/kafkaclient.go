// Package kafkaclient holds what the gateway's librdkafka clients share: the
// connection settings, validation of raw librdkafka properties, routing of
// librdkafka logs into slog, and the classification of Kafka errors into the
// gateway's error kinds.
package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Config is the connection to the Kafka cluster, shared by the producer and
// the consumers.
type Config struct {
	// BootstrapServers is the comma-separated list of host:port pairs of the
	// cluster. Empty in embedded mode, where the gateway fills it in.
	BootstrapServers string `yaml:"bootstrap_servers"`
	// ClientID names this gateway in broker logs and quotas.
	ClientID string `yaml:"client_id"`
	// Properties are raw librdkafka properties applied to every client, for
	// example security.protocol, sasl.mechanism, ssl.ca.location. Values are
	// strings, as in librdkafka's CONFIGURATION.md.
	Properties map[string]string `yaml:"properties"`
	// PropertyFiles are librdkafka properties whose values are read from
	// files when the configuration is loaded: property name to file path,
	// for credentials mounted from a secret store (sasl.password:
	// /etc/gateway/kafka/password). Trailing line breaks are dropped. A
	// property may be set here or in Properties, not both.
	PropertyFiles map[string]string `yaml:"property_files"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{ClientID: "kafka-gateway"}
}

// ReadPropertyFiles moves the values of PropertyFiles into Properties.
// prefix is the config path of c, used in messages (for example "kafka").
func (c *Config) ReadPropertyFiles(prefix string) error {
	for _, name := range slices.Sorted(maps.Keys(c.PropertyFiles)) {
		path := c.PropertyFiles[name]
		if _, dup := c.Properties[name]; dup {
			return fmt.Errorf("%s.property_files.%s: also set in %s.properties; set it in one place", prefix, name, prefix)
		}
		if path == "" {
			return fmt.Errorf("%s.property_files.%s: empty file path", prefix, name)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%s.property_files.%s: %w", prefix, name, err)
		}
		if c.Properties == nil {
			c.Properties = map[string]string{}
		}
		c.Properties[name] = strings.TrimRight(string(data), "\r\n")
	}
	return nil
}

// Validate checks the properties without connecting anywhere. prefix is the
// config path of c, used in messages (for example "kafka").
func (c Config) Validate(prefix string) error {
	if err := CheckReserved(prefix+".properties", c.Properties); err != nil {
		return err
	}
	return CheckProperties(prefix+".properties", c.Properties)
}

// ConfigMap returns the librdkafka configuration of one client: the
// client's defaults, then c's shared settings and properties, then the
// client's own overrides (later layers win).
func (c Config) ConfigMap(defaults, overrides map[string]string) kafka.ConfigMap {
	cm := kafka.ConfigMap{}
	for k, v := range defaults {
		cm[k] = v
	}
	if c.BootstrapServers != "" {
		cm["bootstrap.servers"] = c.BootstrapServers
	}
	if c.ClientID != "" {
		cm["client.id"] = c.ClientID
	}
	for k, v := range c.Properties {
		cm[k] = v
	}
	for k, v := range overrides {
		cm[k] = v
	}
	return cm
}

// CheckReserved rejects properties that the gateway itself owns: the Go
// client's "go.*" settings and callbacks, which would break delivery reports
// or event routing.
func CheckReserved(path string, props map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if strings.HasPrefix(k, "go.") || strings.HasSuffix(k, "_cb") {
			return fmt.Errorf("%s.%s: reserved by the gateway", path, k)
		}
	}
	return nil
}

// CheckProperties asks librdkafka whether props form a valid producer
// configuration: unknown names, bad values and contradictions (such as
// enable.idempotence=true with acks=1) are rejected with the property named.
// It creates a client without bootstrap servers, so nothing connects.
func CheckProperties[V any](path string, props map[string]V) error {
	cm := kafka.ConfigMap{}
	for k, v := range props {
		if k != "bootstrap.servers" && !strings.HasPrefix(k, "go.") {
			cm[k] = v
		}
	}
	cm["go.logs.channel.enable"] = true // swallow librdkafka's warnings about the missing brokers
	cm["log_level"] = 0
	// The Go client's channels default to a million entries (24 MB); this
	// throwaway client needs none of them.
	cm["go.events.channel.size"] = 1
	cm["go.produce.channel.size"] = 1
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	p.Close()
	return nil
}

// CheckConsumerProperties is CheckProperties for a consumer configuration
// (which must hold group.id).
func CheckConsumerProperties(path string, cm kafka.ConfigMap) error {
	check := kafka.ConfigMap{}
	for k, v := range cm {
		if k != "bootstrap.servers" && !strings.HasPrefix(k, "go.") {
			check[k] = v
		}
	}
	check["go.logs.channel.enable"] = true
	check["log_level"] = 0
	c, err := kafka.NewConsumer(&check)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return c.Close()
}

// RouteLogs forwards librdkafka log events from ch to logger until ch is
// closed. The caller owns the goroutine that runs it.
func RouteLogs(logger *slog.Logger, ch <-chan kafka.LogEvent) { RouteLogsFunc(logger, ch, nil) }

// RouteLogsFunc is RouteLogs that also shows each event to seen (when not
// nil) first, for counters such as IsOffsetReset.
func RouteLogsFunc(logger *slog.Logger, ch <-chan kafka.LogEvent, seen func(kafka.LogEvent)) {
	for ev := range ch {
		if seen != nil {
			seen(ev)
		}
		logger.Log(context.Background(), SyslogLevel(ev.Level), ev.Message, "facility", ev.Tag, "client", ev.Name)
	}
}

// IsOffsetReset reports whether ev is librdkafka's warning that it reset a
// consumer's position by auto.offset.reset because the position was not
// available on the broker (deleted by retention before it was consumed,
// for example): records were skipped, or will be read again. librdkafka
// reports this only in its log.
func IsOffsetReset(facility, message string) bool {
	return facility == "OFFSET" && strings.Contains(message, "offset reset")
}

// SyslogLevel maps librdkafka's syslog levels (0 emergency … 7 debug) to slog.
func SyslogLevel(l int) slog.Level {
	switch {
	case l <= 3:
		return slog.LevelError
	case l == 4:
		return slog.LevelWarn
	case l <= 6:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// Error kinds, wrapped around Kafka errors by Classify. They let callers
// choose a status without knowing librdkafka's error codes.
var (
	// ErrUnavailable means Kafka could not be reached or did not answer in
	// time; retrying later may succeed. Whether a timed-out record was
	// written is unknown.
	ErrUnavailable = errors.New("kafka unavailable")
	// ErrUnknownTopic means the topic (or the requested partition) does not
	// exist.
	ErrUnknownTopic = errors.New("unknown topic or partition")
	// ErrRejected means the broker refused the record itself (too large,
	// invalid, against a topic policy); retrying the same record fails again.
	ErrRejected = errors.New("record rejected by kafka")
	// ErrNotAuthorized means the gateway's Kafka principal lacks a permission.
	ErrNotAuthorized = errors.New("not authorized by kafka")
	// ErrShutdown means the client was closing and dropped the work.
	ErrShutdown = errors.New("kafka client shutting down")
)

// Classify wraps a Kafka error in the kind it belongs to; other errors are
// returned unchanged.
func Classify(err error) error {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return err
	}
	if kind := kindOf(kerr.Code()); kind != nil {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return err
}

func kindOf(code kafka.ErrorCode) error {
	switch code {
	case kafka.ErrMsgTimedOut, kafka.ErrTimedOut, kafka.ErrTimedOutQueue,
		kafka.ErrTransport, kafka.ErrAllBrokersDown, kafka.ErrResolve,
		kafka.ErrRequestTimedOut, kafka.ErrNetworkException,
		kafka.ErrNotLeaderForPartition, kafka.ErrLeaderNotAvailable,
		kafka.ErrNotEnoughReplicas, kafka.ErrNotEnoughReplicasAfterAppend,
		kafka.ErrBrokerNotAvailable, kafka.ErrReplicaNotAvailable,
		kafka.ErrCoordinatorNotAvailable, kafka.ErrNotCoordinator,
		kafka.ErrKafkaStorageError, kafka.ErrWaitCoord:
		return ErrUnavailable
	case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrUnknownPartition:
		return ErrUnknownTopic
	case kafka.ErrMsgSizeTooLarge, kafka.ErrInvalidMsg, kafka.ErrInvalidMsgSize,
		kafka.ErrRecordListTooLarge, kafka.ErrInvalidRecord, kafka.ErrPolicyViolation,
		kafka.ErrInvalidTimestamp, kafka.ErrInvalidArg:
		return ErrRejected
	case kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed,
		kafka.ErrGroupAuthorizationFailed, kafka.ErrTransactionalIDAuthorizationFailed,
		kafka.ErrSaslAuthenticationFailed, kafka.ErrAuthentication:
		return ErrNotAuthorized
	case kafka.ErrPurgeQueue, kafka.ErrPurgeInflight, kafka.ErrDestroy:
		return ErrShutdown
	}
	return nil
}
