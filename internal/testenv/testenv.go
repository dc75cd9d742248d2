// Package testenv gives tests the real services that `make test` starts: a
// Kafka broker (GATEWAY_TEST_KAFKA) and a Redis server (GATEWAY_TEST_REDIS),
// and the language runtimes of the client examples (GATEWAY_TEST_PYTHON,
// GATEWAY_TEST_NODE), plus helpers to create topics and read them back with
// a plain librdkafka consumer. Without the variables, tests that need a
// service skip, unless GATEWAY_TEST_REQUIRE_SERVICES=1 (set by `make test`)
// turns the skip into a failure.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func service(t testing.TB, env, what string) string {
	t.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		if os.Getenv("GATEWAY_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s is not set: the real %s is required (run `make test`)", env, what)
		}
		t.Skipf("%s is not set: needs a real %s (run `make test`)", env, what)
	}
	return addr
}

// Kafka returns the bootstrap servers of the real test broker.
func Kafka(t testing.TB) string { return service(t, "GATEWAY_TEST_KAFKA", "Kafka broker") }

// Redis returns the address of the real test Redis server.
func Redis(t testing.TB) string { return service(t, "GATEWAY_TEST_REDIS", "Redis server") }

// Python returns the interpreter of the virtual environment that
// `scripts/clients.sh install` makes (GATEWAY_TEST_PYTHON), with the Python
// example's dependencies and the project's Python tools.
func Python(t testing.TB) string {
	return service(t, "GATEWAY_TEST_PYTHON", "Python environment of scripts/clients.sh")
}

// Node returns the Node.js binary (GATEWAY_TEST_NODE) for the TypeScript
// example, whose node_modules `scripts/clients.sh install` installs.
func Node(t testing.TB) string {
	return service(t, "GATEWAY_TEST_NODE", "Node.js of scripts/clients.sh")
}

// Logger returns a logger that writes warnings and errors to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// UniqueName returns prefix followed by random hex, for topics and groups.
func UniqueName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// CreateTopic creates a topic with a unique name and the given partitions
// and waits until it is usable; it is deleted when the test ends.
func CreateTopic(t testing.TB, bootstrap string, partitions int) string {
	t.Helper()
	name := UniqueName(strings.ToLower(strings.ReplaceAll(t.Name(), "/", ".")))
	if len(name) > 200 {
		name = name[len(name)-200:]
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}},
		kafka.SetAdminOperationTimeout(20*time.Second))
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if e := res[0].Error; e.Code() != kafka.ErrNoError {
		t.Fatalf("create topic %s: %v", name, e)
	}
	// CreateTopics returns when the controller has the topic; wait until the
	// broker's metadata shows every partition with a leader.
	Eventually(t, 30*time.Second, "topic "+name+" in metadata", func() bool {
		md, err := admin.GetMetadata(&name, false, 5_000)
		if err != nil {
			return false
		}
		tm := md.Topics[name]
		if tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) != partitions {
			return false
		}
		for _, p := range tm.Partitions {
			if p.Leader < 0 || p.Error.Code() != kafka.ErrNoError {
				return false
			}
		}
		return true
	})
	DeleteTopicAtCleanup(t, bootstrap, name)
	return name
}

// DeleteTopicAtCleanup deletes topic when the test ends (best effort), for
// topics a test makes the broker create.
func DeleteTopicAtCleanup(t testing.TB, bootstrap, topic string) {
	t.Cleanup(func() {
		admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
		if err != nil {
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = admin.DeleteTopics(ctx, []string{topic})
	})
}

// ReadTopic reads every record of topic, from the beginning up to the high
// watermarks of the moment it is called, with a plain librdkafka consumer
// that commits nothing.
func ReadTopic(t testing.TB, bootstrap, topic string) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           UniqueName("reader"),
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
		"log_level":          3,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10_000)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	var assign kafka.TopicPartitions
	ends := map[int32]int64{}
	for _, p := range md.Topics[topic].Partitions {
		_, high, err := c.QueryWatermarkOffsets(topic, p.ID, 10_000)
		if err != nil {
			t.Fatalf("watermarks of %s/%d: %v", topic, p.ID, err)
		}
		if high > 0 {
			ends[p.ID] = high
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	if len(assign) == 0 {
		return nil
	}
	if err := c.Assign(assign); err != nil {
		t.Fatal(err)
	}
	var out []*kafka.Message
	deadline := time.Now().Add(60 * time.Second)
	for len(ends) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("reading %s: partitions %v not read to their end in time", topic, ends)
		}
		m, err := c.ReadMessage(time.Second)
		if err != nil {
			if kerr, ok := err.(kafka.Error); ok && kerr.IsTimeout() {
				continue
			}
			t.Fatalf("reading %s: %v", topic, err)
		}
		out = append(out, m)
		p := m.TopicPartition.Partition
		if int64(m.TopicPartition.Offset)+1 >= ends[p] {
			delete(ends, p)
		}
	}
	return out
}

// Header returns the value of the first header named key, and whether any was.
func Header(m *kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// Eventually polls cond every 50 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// String describes a message for failure output.
func String(m *kafka.Message) string {
	return fmt.Sprintf("%s/%d@%d key=%q", *m.TopicPartition.Topic, m.TopicPartition.Partition, m.TopicPartition.Offset, m.Key)
}
