package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.yaml.in/yaml/v3"
)

// waitLimit bounds every wait on the services. It is generous because the
// race detector and a loaded two-core machine slow librdkafka down; the
// tests poll, so a healthy run finishes far sooner.
const waitLimit = 60 * time.Second

// testConfig is the default configuration on free loopback ports.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.KafkaAddr = "127.0.0.1:0"
	cfg.RedisAddr = "127.0.0.1:0"
	return cfg
}

// startServices starts cfg and closes it when the test ends.
func startServices(t *testing.T, cfg Config) *Services {
	t.Helper()
	s, err := Start(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// testLogger sends warnings and errors to the test log; kfake's debug logs
// are dropped unless the test runs with -v.
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// eventually polls cond every interval until it returns nil or waitLimit
// passes, then fails with the last error.
func eventually(t *testing.T, what string, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, waitLimit, err)
		}
		time.Sleep(interval)
	}
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if cfg.KafkaAddr != "127.0.0.1:9092" || cfg.RedisAddr != "127.0.0.1:6379" || cfg.Partitions != 3 || len(cfg.Topics) != 0 {
		t.Fatalf("DefaultConfig() = %+v", cfg)
	}
}

// TestConfigYAML decodes a partial YAML section over the defaults, the way
// the gateway loads its configuration.
func TestConfigYAML(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	doc := "kafka_addr: 127.0.0.1:0\ndefault_partitions: 6\ntopics: [orders, payments]\n"
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	want := Config{KafkaAddr: "127.0.0.1:0", RedisAddr: DefaultRedisAddr, Partitions: 6, Topics: []string{"orders", "payments"}}
	if cfg.KafkaAddr != want.KafkaAddr || cfg.RedisAddr != want.RedisAddr || cfg.Partitions != want.Partitions || !slices.Equal(cfg.Topics, want.Topics) {
		t.Fatalf("decoded %+v, want %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings; nil means valid
	}{
		{"ephemeral ports", func(c *Config) { c.KafkaAddr, c.RedisAddr = "127.0.0.1:0", "127.0.0.1:0" }, nil},
		{"all interfaces", func(c *Config) { c.KafkaAddr, c.RedisAddr = ":9092", "0.0.0.0:6379" }, nil},
		{"ipv6", func(c *Config) { c.KafkaAddr = "[::1]:0" }, nil},
		{"topics", func(c *Config) { c.Topics = []string{"orders", "a.b-c_D9"} }, nil},
		{"zero partitions", func(c *Config) { c.Partitions = 0 }, []string{"embedded.default_partitions: must be > 0"}},
		{"negative partitions", func(c *Config) { c.Partitions = -1 }, []string{"embedded.default_partitions: must be > 0"}},
		{"empty kafka addr", func(c *Config) { c.KafkaAddr = "" }, []string{"embedded.kafka_addr: must be set"}},
		{"kafka addr without port", func(c *Config) { c.KafkaAddr = "localhost" }, []string{"embedded.kafka_addr:"}},
		{"redis port not a number", func(c *Config) { c.RedisAddr = "127.0.0.1:redis" }, []string{"embedded.redis_addr:", "port must be a number"}},
		{"redis port too large", func(c *Config) { c.RedisAddr = "127.0.0.1:70000" }, []string{"embedded.redis_addr:"}},
		{"same port", func(c *Config) { c.KafkaAddr, c.RedisAddr = "127.0.0.1:7000", ":7000" }, []string{"embedded.redis_addr:", "embedded.kafka_addr"}},
		{"bad topic char", func(c *Config) { c.Topics = []string{"ok", "bad topic"} }, []string{"embedded.topics[1]:"}},
		{"empty topic", func(c *Config) { c.Topics = []string{""} }, []string{"embedded.topics[0]: topic name must not be empty"}},
		{"dot topic", func(c *Config) { c.Topics = []string{".."} }, []string{"embedded.topics[0]:"}},
		{"long topic", func(c *Config) { c.Topics = []string{strings.Repeat("x", 250)} }, []string{"embedded.topics[0]:", "longer than 249"}},
		{"duplicate topic", func(c *Config) { c.Topics = []string{"a", "a"} }, []string{"embedded.topics[1]:", "listed twice"}},
		{"colliding topic", func(c *Config) { c.Topics = []string{"a.b", "a_b"} }, []string{"embedded.topics[1]:", "collides"}},
		{"several errors", func(c *Config) { c.Partitions = 0; c.KafkaAddr = "" }, []string{"embedded.default_partitions", "embedded.kafka_addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestStartRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Partitions = 0
	s, err := Start(cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded with default_partitions 0")
	}
	if !strings.Contains(err.Error(), "embedded.default_partitions") {
		t.Fatalf("Start error %q does not name embedded.default_partitions", err)
	}
}

func TestStartPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	cfg := testConfig()
	cfg.RedisAddr = ln.Addr().String()
	s, err := Start(cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded with redis_addr in use")
	}
	if !strings.Contains(err.Error(), "embedded.redis_addr") {
		t.Fatalf("Start error %q does not name embedded.redis_addr", err)
	}

	cfg = testConfig()
	cfg.KafkaAddr = ln.Addr().String()
	s, err = Start(cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded with kafka_addr in use")
	}
	if !strings.Contains(err.Error(), "embedded.kafka_addr") {
		t.Fatalf("Start error %q does not name embedded.kafka_addr", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	t.Parallel()
	s, err := Start(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	kafkaAddr, redisAddr := s.KafkaBootstrap(), s.RedisAddr()

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(s.Close)
	}
	wg.Wait()
	s.Close()

	if s.KafkaBootstrap() != kafkaAddr || s.RedisAddr() != redisAddr {
		t.Fatalf("addresses changed after Close")
	}
	for _, addr := range []string{kafkaAddr, redisAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
}

// TestUnspecifiedHostAdvertisesLoopback binds every interface and checks
// that both the bootstrap address and the broker address in metadata are
// loopback, which librdkafka can dial.
func TestUnspecifiedHostAdvertisesLoopback(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.KafkaAddr = "0.0.0.0:0"
	cfg.RedisAddr = ":0"
	s := startServices(t, cfg)

	for _, addr := range []string{s.KafkaBootstrap(), s.RedisAddr()} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Fatalf("address %q: want 127.0.0.1 and a bound port", addr)
		}
	}

	admin := newAdmin(t, s)
	md, err := admin.GetMetadata(nil, true, int(waitLimit/time.Millisecond))
	if err != nil {
		t.Fatalf("GetMetadata: %v", err)
	}
	if len(md.Brokers) != 1 {
		t.Fatalf("brokers = %+v, want one", md.Brokers)
	}
	if got := net.JoinHostPort(md.Brokers[0].Host, fmt.Sprint(md.Brokers[0].Port)); got != s.KafkaBootstrap() {
		t.Fatalf("advertised broker %s, want %s", got, s.KafkaBootstrap())
	}
}

func TestKfakeLogger(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	l := kfakeLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Logf(kfake.LogLevelError, "persist: %v", "disk full")
	l.Logf(kfake.LogLevelWarn, "client %s gone", "c1")
	out := buf.String()
	for _, want := range []string{`level=ERROR msg="persist: disk full" kfake_level=ERR`, `level=DEBUG msg="client c1 gone" kfake_level=WRN`} {
		if !strings.Contains(out, want) {
			t.Errorf("log output %q lacks %q", out, want)
		}
	}

	buf.Reset()
	quiet := kfakeLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	quiet.Logf(kfake.LogLevelWarn, "dropped")
	if buf.Len() != 0 {
		t.Errorf("debug-level kfake log written at info level: %q", buf.String())
	}
}

// kafkaConfig returns librdkafka settings shared by the tests' clients.
func kafkaConfig(s *Services, extra kafka.ConfigMap) *kafka.ConfigMap {
	cm := kafka.ConfigMap{
		"bootstrap.servers":    s.KafkaBootstrap(),
		"log.connection.close": false, // the services close connections when a test ends
		"socket.timeout.ms":    10000,
	}
	for k, v := range extra {
		cm[k] = v
	}
	return &cm
}

func newAdmin(t *testing.T, s *Services) *kafka.AdminClient {
	t.Helper()
	admin, err := kafka.NewAdminClient(kafkaConfig(s, nil))
	if err != nil {
		t.Fatalf("NewAdminClient: %v", err)
	}
	t.Cleanup(admin.Close)
	return admin
}

func newIdempotentProducer(t *testing.T, s *Services) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(kafkaConfig(s, kafka.ConfigMap{
		"enable.idempotence": true,
		"acks":               "all",
		"message.timeout.ms": int(waitLimit / time.Millisecond),
		"linger.ms":          1,
	}))
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	// Drain the events channel (errors and stray reports) until Close.
	go func() {
		for ev := range p.Events() {
			if err, ok := ev.(kafka.Error); ok {
				t.Logf("producer event: %v", err)
			}
		}
	}()
	t.Cleanup(func() {
		p.Flush(int(waitLimit / time.Millisecond))
		p.Close()
	})
	return p
}

// produce sends msgs to topic and returns their delivery reports.
func produce(t *testing.T, p *kafka.Producer, topic string, values ...string) []kafka.TopicPartition {
	t.Helper()
	reports := make(chan kafka.Event, len(values))
	for i, v := range values {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            fmt.Appendf(nil, "key-%d", i),
			Value:          []byte(v),
		}, reports)
		if err != nil {
			t.Fatalf("Produce: %v", err)
		}
	}
	var out []kafka.TopicPartition
	timeout := time.After(waitLimit)
	for range values {
		select {
		case ev := <-reports:
			m, ok := ev.(*kafka.Message)
			if !ok {
				t.Fatalf("delivery report is %T: %v", ev, ev)
			}
			if m.TopicPartition.Error != nil {
				t.Fatalf("delivery of %q failed: %v", m.Value, m.TopicPartition.Error)
			}
			out = append(out, m.TopicPartition)
		case <-timeout:
			t.Fatalf("no delivery report after %v", waitLimit)
		}
	}
	return out
}

// TestKafkaIdempotentProduceAutoCreate produces with an idempotent, acks=all
// librdkafka producer to a topic that does not exist yet.
func TestKafkaIdempotentProduceAutoCreate(t *testing.T) {
	t.Parallel()
	s := startServices(t, testConfig())
	p := newIdempotentProducer(t, s)
	const topic = "auto-created"

	first := produce(t, p, topic, "first")[0]
	if *first.Topic != topic || first.Partition < 0 || first.Partition >= 3 || first.Offset < 0 {
		t.Fatalf("delivery report %v: want %s, partition in [0,3), offset >= 0", first, topic)
	}

	// More records: offsets grow by one per record within each partition.
	values := make([]string, 30)
	for i := range values {
		values[i] = fmt.Sprintf("v%d", i)
	}
	next := map[int32]kafka.Offset{first.Partition: first.Offset + 1}
	for _, tp := range produce(t, p, topic, values...) {
		want, seen := next[tp.Partition]
		if seen && tp.Offset != want {
			t.Fatalf("partition %d: offset %d, want %d", tp.Partition, tp.Offset, want)
		}
		if !seen && tp.Offset != 0 {
			t.Fatalf("partition %d: first offset %d, want 0", tp.Partition, tp.Offset)
		}
		next[tp.Partition] = tp.Offset + 1
	}

	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	res, err := admin.DescribeTopics(context.Background(), kafka.NewTopicCollectionOfTopicNames([]string{topic}))
	if err != nil {
		t.Fatalf("DescribeTopics: %v", err)
	}
	d := res.TopicDescriptions[0]
	if d.Error.Code() != kafka.ErrNoError {
		t.Fatalf("DescribeTopics(%s): %v", topic, d.Error)
	}
	if len(d.Partitions) != int(DefaultPartitions) {
		t.Fatalf("auto-created topic has %d partitions, want %d", len(d.Partitions), DefaultPartitions)
	}
	for _, tp := range d.Partitions {
		lo, hi, err := p.QueryWatermarkOffsets(topic, int32(tp.Partition), int(waitLimit/time.Millisecond))
		if err != nil {
			t.Fatalf("QueryWatermarkOffsets: %v", err)
		}
		if want := int64(next[int32(tp.Partition)]); lo != 0 || hi != want {
			t.Errorf("partition %d watermarks [%d, %d), want [0, %d)", tp.Partition, lo, hi, want)
		}
	}
}

// groupConsumer is a librdkafka consumer subscribed to a topic in a
// cooperative-sticky group, with manual commits and a rebalance callback
// that assigns incrementally.
type groupConsumer struct {
	*kafka.Consumer
	rebalanceErr error // first error from the rebalance callback
	closed       bool
}

// subscribe creates a group consumer for topic, statically a member as
// instanceID, and closes it (see groupConsumer.close) when the test ends unless
// the test closed it already.
func subscribe(t *testing.T, s *Services, topic, group, instanceID string) *groupConsumer {
	t.Helper()
	c, err := kafka.NewConsumer(kafkaConfig(s, kafka.ConfigMap{
		"group.id":                      group,
		"group.instance.id":             instanceID, // static membership
		"partition.assignment.strategy": "cooperative-sticky",
		"enable.auto.commit":            false,
		"auto.offset.reset":             "earliest",
		"session.timeout.ms":            10000,
	}))
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	gc := &groupConsumer{Consumer: c}
	t.Cleanup(func() {
		if !gc.closed {
			gc.close(t)
		}
	})
	rebalance := func(c *kafka.Consumer, ev kafka.Event) error {
		var err error
		switch ev := ev.(type) {
		case kafka.AssignedPartitions:
			err = c.IncrementalAssign(ev.Partitions)
		case kafka.RevokedPartitions:
			err = c.IncrementalUnassign(ev.Partitions)
		}
		if err != nil && gc.rebalanceErr == nil {
			gc.rebalanceErr = err
		}
		return nil
	}
	if err := c.SubscribeTopics([]string{topic}, rebalance); err != nil {
		t.Fatalf("SubscribeTopics: %v", err)
	}
	return gc
}

// next polls until a record arrives and returns it.
func (gc *groupConsumer) next(t *testing.T) *kafka.Message {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		ev := gc.Poll(100)
		if gc.rebalanceErr != nil {
			t.Fatalf("rebalance callback: %v", gc.rebalanceErr)
		}
		switch ev := ev.(type) {
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				t.Fatalf("message error: %v", ev.TopicPartition.Error)
			}
			return ev
		case kafka.Error:
			t.Logf("consumer error event: %v", ev)
		}
	}
	t.Fatalf("no record in %v", waitLimit)
	return nil
}

// close closes the consumer without the librdkafka hang where a commit in
// the revoke callback during Close blocks forever: it unsubscribes, polls
// until the rebalance callback has given up every partition, and only then
// closes, each step bounded by waitLimit.
func (gc *groupConsumer) close(t *testing.T) {
	t.Helper()
	gc.closed = true
	if err := gc.Unsubscribe(); err != nil {
		t.Errorf("Unsubscribe: %v", err)
	}
	eventually(t, "assignment empty after Unsubscribe", 0, func() error {
		gc.Poll(50)
		a, err := gc.Assignment()
		if err != nil {
			return err
		}
		if len(a) > 0 {
			return fmt.Errorf("still assigned %v", a)
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- gc.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("consumer Close: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("consumer Close did not return in %v", waitLimit)
	}
}

// TestKafkaConsumerGroupCommit reads records back in a cooperative-sticky
// group with static membership and manual commits, checks the commits
// survive the consumer, and that a restarted static member resumes from
// them.
func TestKafkaConsumerGroupCommit(t *testing.T) {
	t.Parallel()
	s := startServices(t, testConfig())
	const (
		topic = "group-topic"
		group = "group-1"
		n     = 40
	)
	p := newIdempotentProducer(t, s)

	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("record-%d", i)
	}
	produce(t, p, topic, values...)

	c := subscribe(t, s, topic, group, "instance-1")
	got := map[string]bool{}
	next := map[int32]kafka.Offset{} // partition -> offset to commit
	for len(got) < n {
		m := c.next(t)
		if got[string(m.Value)] {
			t.Fatalf("record %q read twice", m.Value)
		}
		got[string(m.Value)] = true
		next[m.TopicPartition.Partition] = m.TopicPartition.Offset + 1
	}
	for _, v := range values {
		if !got[v] {
			t.Fatalf("record %q not read", v)
		}
	}
	if proto := c.GetRebalanceProtocol(); proto != "COOPERATIVE" {
		t.Fatalf("rebalance protocol %q, want COOPERATIVE", proto)
	}
	if a, err := c.Assignment(); err != nil || len(a) != int(DefaultPartitions) {
		t.Fatalf("Assignment() = %v, %v; want all %d partitions", a, err, DefaultPartitions)
	}

	var commit []kafka.TopicPartition
	for p, off := range next {
		commit = append(commit, kafka.TopicPartition{Topic: new(topic), Partition: p, Offset: off})
	}
	slices.SortFunc(commit, func(a, b kafka.TopicPartition) int { return int(a.Partition - b.Partition) })
	if _, err := c.CommitOffsets(commit); err != nil {
		t.Fatalf("CommitOffsets: %v", err)
	}
	checkCommitted(t, c.Consumer, commit)
	c.close(t)

	// The commits outlive the consumer: a client of the group that never
	// joins it fetches them.
	fetcher, err := kafka.NewConsumer(kafkaConfig(s, kafka.ConfigMap{"group.id": group}))
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	checkCommitted(t, fetcher, commit)
	if err := fetcher.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	// The same static member comes back and resumes after the commits: the
	// first record it reads is the one produced after them.
	produce(t, p, topic, "after-restart")
	c = subscribe(t, s, topic, group, "instance-1")
	if m := c.next(t); string(m.Value) != "after-restart" {
		t.Fatalf("restarted member read %q (offset %v), want after-restart", m.Value, m.TopicPartition)
	}
}

// checkCommitted compares the group's committed offsets with want.
func checkCommitted(t *testing.T, c *kafka.Consumer, want []kafka.TopicPartition) {
	t.Helper()
	query := make([]kafka.TopicPartition, len(want))
	for i, tp := range want {
		query[i] = kafka.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
	}
	got, err := c.Committed(query, int(waitLimit/time.Millisecond))
	if err != nil {
		t.Fatalf("Committed: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Committed returned %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Error != nil || *got[i].Topic != *want[i].Topic || got[i].Partition != want[i].Partition || got[i].Offset != want[i].Offset {
			t.Fatalf("Committed()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// TestKafkaAdmin covers seeded topics and the admin calls the gateway makes.
func TestKafkaAdmin(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Partitions = 2
	cfg.Topics = []string{"seeded-a", "seeded-b"}
	s := startServices(t, cfg)
	admin := newAdmin(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	cluster, err := admin.DescribeCluster(ctx)
	if err != nil {
		t.Fatalf("DescribeCluster: %v", err)
	}
	if cluster.ClusterID == nil || *cluster.ClusterID != clusterID || len(cluster.Nodes) != 1 {
		t.Fatalf("DescribeCluster = %+v", cluster)
	}

	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{
		{Topic: "explicit", NumPartitions: 5, ReplicationFactor: 1},
		{Topic: "broker-default", NumPartitions: -1, ReplicationFactor: -1},
		{Topic: "seeded-a", NumPartitions: 1, ReplicationFactor: 1},
		{Topic: "too-many-replicas", NumPartitions: 1, ReplicationFactor: 3},
	})
	if err != nil {
		t.Fatalf("CreateTopics: %v", err)
	}
	wantCodes := map[string]kafka.ErrorCode{
		"explicit":          kafka.ErrNoError,
		"broker-default":    kafka.ErrNoError,
		"seeded-a":          kafka.ErrTopicAlreadyExists,
		"too-many-replicas": kafka.ErrInvalidReplicationFactor,
	}
	for _, r := range res {
		if r.Error.Code() != wantCodes[r.Topic] {
			t.Errorf("CreateTopics(%s): %v, want %v", r.Topic, r.Error, wantCodes[r.Topic])
		}
	}

	wantParts := map[string]int{"seeded-a": 2, "seeded-b": 2, "explicit": 5, "broker-default": 2}
	names := make([]string, 0, len(wantParts))
	for name := range wantParts {
		names = append(names, name)
	}
	desc, err := admin.DescribeTopics(ctx, kafka.NewTopicCollectionOfTopicNames(names))
	if err != nil {
		t.Fatalf("DescribeTopics: %v", err)
	}
	for _, d := range desc.TopicDescriptions {
		if d.Error.Code() != kafka.ErrNoError || len(d.Partitions) != wantParts[d.Name] {
			t.Errorf("topic %s: error %v, %d partitions, want %d", d.Name, d.Error, len(d.Partitions), wantParts[d.Name])
		}
	}

	del, err := admin.DeleteTopics(ctx, []string{"explicit"})
	if err != nil || del[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("DeleteTopics: %v %v", err, del)
	}
	eventually(t, "deleted topic gone from metadata", 50*time.Millisecond, func() error {
		md, err := admin.GetMetadata(nil, true, int(waitLimit/time.Millisecond))
		if err != nil {
			return err
		}
		if _, ok := md.Topics["explicit"]; ok {
			return errors.New("topic explicit still listed")
		}
		return nil
	})

	groups, err := admin.ListConsumerGroups(ctx)
	if err != nil {
		t.Fatalf("ListConsumerGroups: %v", err)
	}
	if len(groups.Valid) != 0 || len(groups.Errors) != 0 {
		t.Fatalf("ListConsumerGroups on a new cluster = %+v", groups)
	}
}

// TestRedis checks the commands the gateway relies on, with expiry running
// in real time.
func TestRedis(t *testing.T) {
	t.Parallel()
	s := startServices(t, testConfig())
	rdb := redis.NewClient(&redis.Options{Addr: s.RedisAddr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()

	t.Run("set NX PX lease expires in real time", func(t *testing.T) {
		t.Parallel()
		ok, err := rdb.SetNX(ctx, "lease", "owner-a", 200*time.Millisecond).Result()
		if err != nil || !ok {
			t.Fatalf("first SET NX PX 200 = %v, %v; want true", ok, err)
		}
		ok, err = rdb.SetNX(ctx, "lease", "owner-b", 200*time.Millisecond).Result()
		if err != nil || ok {
			t.Fatalf("second SET NX = %v, %v; want false while the lease is held", ok, err)
		}
		if pttl, err := rdb.PTTL(ctx, "lease").Result(); err != nil || pttl <= 0 || pttl > 200*time.Millisecond {
			t.Fatalf("PTTL = %v, %v; want in (0, 200ms]", pttl, err)
		}
		// Nothing fast-forwards the clock: the lease must lapse by itself.
		eventually(t, "lease expiry", 20*time.Millisecond, func() error {
			ok, err := rdb.SetNX(ctx, "lease", "owner-c", 200*time.Millisecond).Result()
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("SET NX still refused")
			}
			return nil
		})
		if v, err := rdb.Get(ctx, "lease").Result(); err != nil || v != "owner-c" {
			t.Fatalf("GET lease = %q, %v; want owner-c", v, err)
		}
	})

	t.Run("EVAL compare-and-set", func(t *testing.T) {
		t.Parallel()
		cas := redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
	return 1
end
return 0`)
		if err := rdb.Set(ctx, "cas", "v1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := cas.Run(ctx, rdb, []string{"cas"}, "wrong", "v2", 60000).Int(); err != nil || n != 0 {
			t.Fatalf("CAS with a wrong expected value = %d, %v; want 0", n, err)
		}
		if n, err := cas.Run(ctx, rdb, []string{"cas"}, "v1", "v2", 60000).Int(); err != nil || n != 1 {
			t.Fatalf("CAS = %d, %v; want 1", n, err)
		}
		if v, err := rdb.Get(ctx, "cas").Result(); err != nil || v != "v2" {
			t.Fatalf("GET cas = %q, %v; want v2", v, err)
		}
		if pttl, err := rdb.PTTL(ctx, "cas").Result(); err != nil || pttl <= 0 {
			t.Fatalf("PTTL cas = %v, %v; want > 0", pttl, err)
		}
		// Plain EVAL, as a client without script caching sends it.
		if n, err := rdb.Eval(ctx, `return redis.call("DEL", KEYS[1])`, []string{"cas"}).Int(); err != nil || n != 1 {
			t.Fatalf("EVAL DEL = %d, %v; want 1", n, err)
		}
	})

	t.Run("pipeline and transaction with expiry", func(t *testing.T) {
		t.Parallel()
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "pipe:short", "x", 100*time.Millisecond)
			p.Set(ctx, "pipe:long", "y", time.Hour)
			p.Incr(ctx, "pipe:counter")
			p.Incr(ctx, "pipe:counter")
			return nil
		})
		if err != nil || len(cmds) != 4 {
			t.Fatalf("pipeline: %v, %v", cmds, err)
		}
		if n := cmds[3].(*redis.IntCmd).Val(); n != 2 {
			t.Fatalf("INCR in pipeline = %d, want 2", n)
		}
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "pipe:counter")
			p.PExpire(ctx, "pipe:counter", 100*time.Millisecond)
			return nil
		}); err != nil {
			t.Fatalf("MULTI/EXEC: %v", err)
		}
		eventually(t, "pipelined keys expiry", 20*time.Millisecond, func() error {
			n, err := rdb.Exists(ctx, "pipe:short", "pipe:counter").Result()
			if err != nil {
				return err
			}
			if n != 0 {
				return fmt.Errorf("%d short-lived keys remain", n)
			}
			return nil
		})
		if v, err := rdb.Get(ctx, "pipe:long").Result(); err != nil || v != "y" {
			t.Fatalf("GET pipe:long = %q, %v; want y (it has an hour to live)", v, err)
		}
	})
}
