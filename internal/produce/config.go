package produce

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// Presets are librdkafka settings for the three producer profiles from the
// field: throughput batches hard and compresses, latency sends at once,
// balanced sits between. Properties set in config win over a preset.
var presets = map[string]map[string]string{
	"balanced": {
		"linger.ms":        "5",
		"batch.size":       "262144",
		"compression.type": "lz4",
	},
	"throughput": {
		"linger.ms":          "50",
		"batch.size":         "1048576",
		"batch.num.messages": "100000",
		"compression.type":   "lz4",
	},
	"latency": {
		"linger.ms":        "0",
		"compression.type": "none",
	},
}

// Config is the producer's configuration.
type Config struct {
	// Preset is one of balanced, throughput or latency.
	Preset string `yaml:"preset"`
	// Properties are raw librdkafka producer properties; they win over the
	// preset and over kafka.properties.
	Properties map[string]string `yaml:"properties"`
	// MaxRecordBytes bounds key + value + headers of one record. Keep it at or
	// below the topic's max.message.bytes.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxRecordsPerRequest bounds the records of one Produce call or stream
	// batch.
	MaxRecordsPerRequest int `yaml:"max_records_per_request"`
	// MessageIDHeader is the header that carries every record's message ID.
	MessageIDHeader string `yaml:"message_id_header"`
	// DeliveryTimeout bounds how long a record may wait for the broker,
	// retries included (librdkafka message.timeout.ms); then it fails with
	// UNAVAILABLE.
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// QueueFullWait bounds how long a call waits for room in the local queue
	// when the call has no earlier deadline; then RESOURCE_EXHAUSTED.
	QueueFullWait time.Duration `yaml:"queue_full_wait"`
	// QueueMaxBytes bounds the memory of records waiting in the local queue.
	QueueMaxBytes int `yaml:"queue_max_bytes"`
	// AutoCreateTopics lets the broker create a topic on first use, when the
	// broker allows it too. Off, an unknown topic is NOT_FOUND.
	AutoCreateTopics bool `yaml:"auto_create_topics"`
	// FlushTimeout bounds the flush at shutdown; records still queued then
	// fail with UNAVAILABLE.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Preset:               "balanced",
		MaxRecordBytes:       1 << 20,
		MaxRecordsPerRequest: 10_000,
		MessageIDHeader:      "message-id",
		DeliveryTimeout:      30 * time.Second,
		QueueFullWait:        5 * time.Second,
		QueueMaxBytes:        64 << 20,
		AutoCreateTopics:     false,
		FlushTimeout:         10 * time.Second,
	}
}

// Validate checks c, including its librdkafka properties layered over the
// shared ones in kc, without connecting. Messages name the key at fault.
func (c Config) Validate(kc kafkaclient.Config) error {
	if _, ok := presets[c.Preset]; !ok {
		return fmt.Errorf("producer.preset: %q is not one of %v", c.Preset, slices.Sorted(maps.Keys(presets)))
	}
	switch {
	case c.MaxRecordBytes <= 0:
		return fmt.Errorf("producer.max_record_bytes: must be > 0")
	case c.MaxRecordsPerRequest <= 0:
		return fmt.Errorf("producer.max_records_per_request: must be > 0")
	case c.MessageIDHeader == "":
		return fmt.Errorf("producer.message_id_header: must not be empty")
	case c.DeliveryTimeout < time.Millisecond:
		return fmt.Errorf("producer.delivery_timeout: must be at least 1ms")
	case c.QueueFullWait < 0:
		return fmt.Errorf("producer.queue_full_wait: must not be negative")
	case c.QueueMaxBytes < 1024:
		return fmt.Errorf("producer.queue_max_bytes: must be at least 1024")
	case c.FlushTimeout < 0:
		return fmt.Errorf("producer.flush_timeout: must not be negative")
	}
	if err := kafkaclient.CheckReserved("producer.properties", c.Properties); err != nil {
		return err
	}
	if err := checkInFlight(kc.Properties, c.Properties); err != nil {
		return err
	}
	if err := kafkaclient.CheckProperties("producer.properties", c.Properties); err != nil {
		return err
	}
	// The layers together, so contradictions across them are caught too.
	return kafkaclient.CheckProperties("producer", c.LibrdkafkaProperties(kc))
}

// inFlightKeys are librdkafka's two names for the produce requests one
// broker connection may have in flight. The gateway keeps it at 1. With
// more, a broker that has no state for the producer on a partition (a new
// producer on any partition; before Kafka 4.5, KAFKA-15591, also a
// partition never written) accepts a later request's records while it
// refuses the first one's (NOT_LEADER_OR_FOLLOWER as it takes the partition
// on), and librdkafka then reports the refused records as delivered,
// "implicitly acked by a subsequent batch", with offset -1: the gateway
// would answer OK for a record the broker never wrote. With one request in
// flight, the refused one is retried before any later one is sent.
var inFlightKeys = []string{"max.in.flight.requests.per.connection", "max.in.flight"}

// checkInFlight refuses an in-flight limit other than 1 in the shared or
// the producer's properties.
func checkInFlight(shared, own map[string]string) error {
	for _, layer := range []struct {
		path  string
		props map[string]string
	}{{"kafka.properties", shared}, {"producer.properties", own}} {
		for _, k := range inFlightKeys {
			if v, ok := layer.props[k]; ok && strings.TrimSpace(v) != "1" {
				return fmt.Errorf("%s.%s: must be 1 (got %q): with more produce requests in flight, librdkafka can report a record the broker refused as delivered", layer.path, k, v)
			}
		}
	}
	return nil
}

// LibrdkafkaProperties is the producer's librdkafka configuration: durable defaults,
// the preset, the shared properties, and last the producer's own
// properties. Benchmarks use it to configure a direct producer exactly like
// the gateway's.
func (c Config) LibrdkafkaProperties(kc kafkaclient.Config) map[string]string {
	defaults := map[string]string{
		"enable.idempotence": "true",
		"acks":               "all",
		// One request in flight: see inFlightKeys.
		"max.in.flight.requests.per.connection": "1",
		"partitioner":                           "murmur2_random",
		"message.timeout.ms":                    strconv.FormatInt(c.DeliveryTimeout.Milliseconds(), 10),
		"queue.buffering.max.kbytes":            strconv.Itoa(c.QueueMaxBytes / 1024),
		"allow.auto.create.topics":              strconv.FormatBool(c.AutoCreateTopics),
	}
	maps.Copy(defaults, presets[c.Preset])
	out := make(map[string]string)
	for k, v := range kc.ConfigMap(defaults, c.Properties) {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// ConfigMap is LibrdkafkaProperties for a confluent-kafka-go producer (benchmarks
// compare the gateway with one), with the Go client's settings that suit
// the way it is used: delivery reports without keys and values copied
// back, logs on a channel.
func (c Config) ConfigMap(kc kafkaclient.Config) kafka.ConfigMap {
	out := kafka.ConfigMap{}
	for k, v := range c.LibrdkafkaProperties(kc) {
		out[k] = v
	}
	out["go.delivery.report.fields"] = "none"
	out["go.events.channel.size"] = 10_000
	out["go.produce.channel.size"] = 1
	out["go.logs.channel.enable"] = true
	return out
}
