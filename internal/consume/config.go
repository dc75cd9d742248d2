package consume

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// Ordering bounds which records of a group may be in flight together.
type Ordering uint8

const (
	// OrderingPartition allows one record in flight per partition.
	OrderingPartition Ordering = iota + 1
	// OrderingKey allows one record in flight per key within a partition.
	OrderingKey
	// OrderingNone allows any record in flight, up to each stream's limit.
	OrderingNone
)

var orderingNames = map[string]Ordering{"partition": OrderingPartition, "key": OrderingKey, "none": OrderingNone}

func (o Ordering) String() string {
	for name, v := range orderingNames {
		if v == o {
			return name
		}
	}
	return "unspecified"
}

// StartPosition is where a group starts in a partition without a committed
// offset (Kafka's auto.offset.reset).
type StartPosition uint8

const (
	// StartEarliest starts at the oldest record.
	StartEarliest StartPosition = iota + 1
	// StartLatest starts after the newest record.
	StartLatest
)

var startNames = map[string]StartPosition{"earliest": StartEarliest, "latest": StartLatest}

func (s StartPosition) String() string {
	for name, v := range startNames {
		if v == s {
			return name
		}
	}
	return "unspecified"
}

// Config is the consumer side of the gateway.
type Config struct {
	// Properties are raw librdkafka consumer properties; they win over the
	// gateway's defaults and over kafka.properties.
	Properties map[string]string `yaml:"properties"`
	// InstanceID is the static group membership ID (group.instance.id), for
	// example the pod name: a restarted gateway keeps its partitions without
	// a rebalance. Empty: dynamic membership.
	InstanceID string `yaml:"instance_id"`
	// Assignor is the partition assignment strategy.
	Assignor string `yaml:"assignor"`
	// Ordering is the default ordering: partition, key or none.
	Ordering string `yaml:"ordering"`
	// StartPosition is the default start: earliest or latest.
	StartPosition string `yaml:"start_position"`
	// MaxInFlight is the default per-stream limit of unacknowledged records.
	MaxInFlight int `yaml:"max_in_flight"`
	// AckTimeout is the default time to acknowledge a delivery.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// MaxAttempts is the default number of deliveries before dead-lettering.
	MaxAttempts int `yaml:"max_attempts"`
	// MinAckTimeout and MaxAckTimeout bound the ack_timeout a Subscribe
	// may ask for; MaxAttemptsLimit its max_attempts; MaxRetryAfter a
	// Nack's retry_after.
	MinAckTimeout    time.Duration `yaml:"min_ack_timeout"`
	MaxAckTimeout    time.Duration `yaml:"max_ack_timeout"`
	MaxAttemptsLimit int           `yaml:"max_attempts_limit"`
	MaxRetryAfter    time.Duration `yaml:"max_retry_after"`
	// MaxLease bounds how far Extend moves a delivery's ack deadline: at
	// most this long after the delivery began.
	MaxLease time.Duration `yaml:"max_lease"`
	// DeadLetterSuffix makes the dead-letter topic of a topic: orders →
	// orders.dlq.
	DeadLetterSuffix string `yaml:"dead_letter_suffix"`
	// DeadLetterAutoCreate creates a missing dead-letter topic (one
	// partition, the broker's default replication) when first needed.
	DeadLetterAutoCreate bool `yaml:"dead_letter_auto_create"`
	// CommitInterval is how often stored offsets are committed.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// RevokeGrace bounds the wait for in-flight acks of revoked partitions.
	RevokeGrace time.Duration `yaml:"revoke_grace"`
	// DrainTimeout bounds the wait for in-flight acks at shutdown.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// MaxBufferedRecords bounds the fetched, unfinished records per
	// partition; beyond it the partition is paused (it keeps polling).
	MaxBufferedRecords int `yaml:"max_buffered_records"`
	// MaxBufferedBytes bounds the fetched, unfinished bytes of all groups.
	MaxBufferedBytes int `yaml:"max_buffered_bytes"`
	// MaxGroups bounds the consumer groups this gateway runs; a Subscribe
	// that would start one more is RESOURCE_EXHAUSTED. Declared
	// subscriptions count, but are never refused.
	MaxGroups int `yaml:"max_groups"`
	// MaxGroupsPerIdentity bounds the groups one caller identity may start
	// here by Subscribe.
	MaxGroupsPerIdentity int `yaml:"max_groups_per_identity"`
	// IdleTimeout is how long a group started by Subscribe stays in its
	// consumer group with no stream attached; 0 keeps it forever. Groups
	// declared in Subscriptions never leave.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Subscriptions start with the gateway and hold records until an app
	// attaches.
	Subscriptions []SubscriptionConfig `yaml:"subscriptions"`
}

// SubscriptionConfig declares a group that starts with the gateway.
type SubscriptionConfig struct {
	Group         string        `yaml:"group"`
	Topics        []string      `yaml:"topics"`
	Ordering      string        `yaml:"ordering"`
	StartPosition string        `yaml:"start_position"`
	AckTimeout    time.Duration `yaml:"ack_timeout"`
	MaxAttempts   int           `yaml:"max_attempts"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Assignor:             "cooperative-sticky",
		Ordering:             "partition",
		StartPosition:        "earliest",
		MaxInFlight:          100,
		AckTimeout:           30 * time.Second,
		MaxAttempts:          5,
		MinAckTimeout:        100 * time.Millisecond,
		MaxAckTimeout:        time.Hour,
		MaxAttemptsLimit:     1000,
		MaxRetryAfter:        time.Hour,
		MaxLease:             time.Hour,
		DeadLetterSuffix:     ".dlq",
		DeadLetterAutoCreate: true,
		CommitInterval:       time.Second,
		RevokeGrace:          5 * time.Second,
		DrainTimeout:         10 * time.Second,
		MaxBufferedRecords:   10_000,
		MaxBufferedBytes:     64 << 20,
		MaxGroups:            64,
		MaxGroupsPerIdentity: 16,
		IdleTimeout:          5 * time.Minute,
	}
}

// Validate checks c (and its librdkafka properties over kc) without
// connecting.
func (c Config) Validate(kc kafkaclient.Config) error {
	if _, ok := orderingNames[c.Ordering]; !ok {
		return fmt.Errorf("consumer.ordering: %q is not one of partition, key, none", c.Ordering)
	}
	if _, ok := startNames[c.StartPosition]; !ok {
		return fmt.Errorf("consumer.start_position: %q is not one of earliest, latest", c.StartPosition)
	}
	switch {
	case c.MaxInFlight <= 0:
		return fmt.Errorf("consumer.max_in_flight: must be > 0")
	case c.MinAckTimeout < 10*time.Millisecond:
		return fmt.Errorf("consumer.min_ack_timeout: must be at least 10ms")
	case c.MaxAckTimeout < c.MinAckTimeout || c.MaxAckTimeout > 24*time.Hour:
		return fmt.Errorf("consumer.max_ack_timeout: must lie between consumer.min_ack_timeout and 24h")
	case c.AckTimeout < c.MinAckTimeout || c.AckTimeout > c.MaxAckTimeout:
		return fmt.Errorf("consumer.ack_timeout: must lie between consumer.min_ack_timeout (%v) and consumer.max_ack_timeout (%v)", c.MinAckTimeout, c.MaxAckTimeout)
	case c.MaxAttemptsLimit <= 0:
		return fmt.Errorf("consumer.max_attempts_limit: must be > 0")
	case c.MaxAttempts <= 0 || c.MaxAttempts > c.MaxAttemptsLimit:
		return fmt.Errorf("consumer.max_attempts: must lie between 1 and consumer.max_attempts_limit (%d)", c.MaxAttemptsLimit)
	case c.MaxRetryAfter <= 0 || c.MaxRetryAfter > 24*time.Hour:
		return fmt.Errorf("consumer.max_retry_after: must lie between 1ns and 24h")
	case c.MaxLease < c.MaxAckTimeout || c.MaxLease > 24*time.Hour:
		return fmt.Errorf("consumer.max_lease: must lie between consumer.max_ack_timeout (%v) and 24h", c.MaxAckTimeout)
	case c.DeadLetterSuffix == "":
		return fmt.Errorf("consumer.dead_letter_suffix: must not be empty")
	case c.CommitInterval < 10*time.Millisecond:
		return fmt.Errorf("consumer.commit_interval: must be at least 10ms")
	case c.RevokeGrace < 0 || c.DrainTimeout < 0 || c.IdleTimeout < 0:
		return fmt.Errorf("consumer: revoke_grace, drain_timeout and idle_timeout must not be negative")
	case c.MaxBufferedRecords <= 0:
		return fmt.Errorf("consumer.max_buffered_records: must be > 0")
	case c.MaxBufferedBytes <= 0:
		return fmt.Errorf("consumer.max_buffered_bytes: must be > 0")
	case c.MaxGroups <= 0 || c.MaxGroups < len(c.Subscriptions):
		return fmt.Errorf("consumer.max_groups: must be > 0 and at least the %d declared subscriptions", len(c.Subscriptions))
	case c.MaxGroupsPerIdentity <= 0:
		return fmt.Errorf("consumer.max_groups_per_identity: must be > 0")
	}
	if why := produce.ValidTopicName("x" + c.DeadLetterSuffix); why != "" {
		return fmt.Errorf("consumer.dead_letter_suffix: %s", why)
	}
	seen := map[string]bool{}
	for i, s := range c.Subscriptions {
		path := fmt.Sprintf("consumer.subscriptions[%d]", i)
		if seen[s.Group] {
			return fmt.Errorf("%s.group: %q is declared twice", path, s.Group)
		}
		seen[s.Group] = true
		if _, err := c.settings(path, s.Group, s.Topics, s.Ordering, s.StartPosition, s.AckTimeout, s.MaxAttempts); err != nil {
			return err
		}
	}
	if err := kafkaclient.CheckReserved("consumer.properties", c.Properties); err != nil {
		return err
	}
	cm := c.configMap(kc, "check", StartEarliest)
	return kafkaclient.CheckConsumerProperties("consumer", cm)
}

// configMap layers the librdkafka configuration of one group's consumer.
func (c Config) configMap(kc kafkaclient.Config, group string, start StartPosition) kafka.ConfigMap {
	defaults := map[string]string{
		"partition.assignment.strategy": c.Assignor,
		// Offsets are stored by the gateway as the acked prefix advances and
		// committed in the background; nothing is stored automatically.
		"enable.auto.commit":       "true",
		"enable.auto.offset.store": "false",
		"auto.commit.interval.ms":  strconv.FormatInt(c.CommitInterval.Milliseconds(), 10),
		"enable.partition.eof":     "false",
		// The gateway buffers fetched records itself (max_buffered_records,
		// max_buffered_bytes); librdkafka's prefetch ahead of that buffer
		// is kept small: 4 MiB queued, 1 MiB per fetch response and 256 KiB
		// per partition in it (the bench's consume throughput was the same
		// as with librdkafka's 50 MiB and 1 MiB per partition, and the
		// gateway's C heap a third). A record larger than these is still
		// fetched: the broker returns at least one record per response.
		"queued.max.messages.kbytes": "4096",
		"fetch.max.bytes":            "1048576",
		"max.partition.fetch.bytes":  "262144",
		// With a queue this small, librdkafka often finds it full; it then
		// waits fetch.queue.backoff.ms before fetching the partition
		// again, by default a second, while the gateway drains the queue
		// in milliseconds (the bench consumed 55,000 records/s with the
		// default, about 300,000 with 10 ms).
		"fetch.queue.backoff.ms": "10",
		// The consumer has one fetch request in flight per broker. When
		// the partitions in it have nothing new, the broker holds it for
		// fetch.wait.max.ms, and a partition resumed by flow control
		// meanwhile is fetched only with the next request: with the
		// default of 500 ms, a busy partition paused while the others
		// were caught up went unfetched for up to half a second after each
		// resume, its buffer long drained (the bench's ORDERING_KEY
		// throughput went from about 280,000 records/s to 400,000 with
		// 100 ms). An idle consumer sends ten fetches a second per broker
		// instead of two.
		"fetch.wait.max.ms": "100",
	}
	cm := kc.ConfigMap(defaults, c.Properties)
	cm["group.id"] = group
	cm["auto.offset.reset"] = start.String()
	if c.InstanceID != "" {
		cm["group.instance.id"] = c.InstanceID
	}
	return cm
}

// properties are configMap's, as librdkafka takes them.
func (c Config) properties(kc kafkaclient.Config, group string, start StartPosition) map[string]string {
	cm := c.configMap(kc, group, start)
	props := make(map[string]string, len(cm))
	for k, v := range cm {
		props[k] = fmt.Sprint(v)
	}
	return props
}

// maxGroupName bounds a group name, as Kafka bounds topic names.
const maxGroupName = 249

// ValidGroupName reports why name is not an acceptable consumer group name,
// or "": 1 to 249 characters of [a-zA-Z0-9._-], the characters Kafka
// allows in topic names (group names reach logs, metric labels and Redis
// keys; Kafka itself accepts nearly any string).
func ValidGroupName(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > maxGroupName:
		return fmt.Sprintf("is %d characters long; at most %d are allowed", len(name), maxGroupName)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("%q contains %q; only [a-zA-Z0-9._-] are allowed", truncate(name, 100), c)
		}
	}
	return ""
}

// Settings are a group's subscription: shared by every stream of the group
// on this gateway.
type Settings struct {
	Group         string
	Topics        []string // sorted, unique
	Ordering      Ordering
	StartPosition StartPosition
	AckTimeout    time.Duration
	MaxAttempts   int
}

// sameAs reports whether s and o describe the same subscription, and if
// not, which setting differs.
func (s Settings) sameAs(o Settings) (string, bool) {
	switch {
	case !slices.Equal(s.Topics, o.Topics):
		return fmt.Sprintf("topics %v, not %v", s.Topics, o.Topics), false
	case s.Ordering != o.Ordering:
		return fmt.Sprintf("ordering %s, not %s", s.Ordering, o.Ordering), false
	case s.StartPosition != o.StartPosition:
		return fmt.Sprintf("start position %s, not %s", s.StartPosition, o.StartPosition), false
	case s.AckTimeout != o.AckTimeout:
		return fmt.Sprintf("ack timeout %v, not %v", s.AckTimeout, o.AckTimeout), false
	case s.MaxAttempts != o.MaxAttempts:
		return fmt.Sprintf("max attempts %d, not %d", s.MaxAttempts, o.MaxAttempts), false
	}
	return "", true
}

// settings resolves a subscription's settings, applying defaults to zero
// values. path prefixes error messages.
func (c Config) settings(path, group string, topics []string, ordering, start string, ackTimeout time.Duration, maxAttempts int) (Settings, error) {
	s := Settings{Group: group, AckTimeout: ackTimeout, MaxAttempts: maxAttempts}
	field := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	if why := ValidGroupName(group); why != "" {
		return s, invalid.Field(field("group"), "%s", why)
	}
	if len(topics) == 0 {
		return s, invalid.Field(field("topics"), "must not be empty")
	}
	for i, t := range topics {
		if why := produce.ValidTopicName(t); why != "" {
			return s, invalid.Field(field(fmt.Sprintf("topics[%d]", i)), "%s", why)
		}
	}
	s.Topics = slices.Compact(slices.Sorted(slices.Values(topics)))
	if ordering == "" {
		ordering = c.Ordering
	}
	var ok bool
	if s.Ordering, ok = orderingNames[ordering]; !ok {
		return s, invalid.Field(field("ordering"), "%q is not one of partition, key, none", ordering)
	}
	if start == "" {
		start = c.StartPosition
	}
	if s.StartPosition, ok = startNames[start]; !ok {
		return s, invalid.Field(field("start_position"), "%q is not one of earliest, latest", start)
	}
	if s.AckTimeout == 0 {
		s.AckTimeout = c.AckTimeout
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = c.MaxAttempts
	}
	if s.AckTimeout < c.MinAckTimeout || s.AckTimeout > c.MaxAckTimeout {
		return s, invalid.Field(field("ack_timeout"), "is %v; it must lie between consumer.min_ack_timeout (%v) and consumer.max_ack_timeout (%v)", s.AckTimeout, c.MinAckTimeout, c.MaxAckTimeout)
	}
	if s.MaxAttempts < 0 || s.MaxAttempts > c.MaxAttemptsLimit {
		return s, invalid.Field(field("max_attempts"), "is %d; it must lie between 1 and consumer.max_attempts_limit (%d)", s.MaxAttempts, c.MaxAttemptsLimit)
	}
	return s, nil
}
