package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// createTopic creates a topic (with the given topic configs) and waits
// until every partition has a leader.
func createTopic(bootstrap, topic string, partitions, replicas int, configs map[string]string) error {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		return err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := kafka.TopicSpecification{Topic: topic, NumPartitions: partitions, ReplicationFactor: replicas, Config: configs}
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{spec}, kafka.SetAdminOperationTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if e := res[0].Error; e.Code() != kafka.ErrNoError {
		return fmt.Errorf("create topic %s: %w", topic, e)
	}
	for ctx.Err() == nil {
		md, err := admin.GetMetadata(&topic, false, 5_000)
		if err == nil {
			tm := md.Topics[topic]
			ready := tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) == partitions
			for _, p := range tm.Partitions {
				ready = ready && p.Leader >= 0 && p.Error.Code() == kafka.ErrNoError
			}
			if ready {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("topic %s has no leader for every partition after 60s", topic)
}

// committedOffsets returns each group's committed offset per partition of
// topic (partitions without a committed offset are absent).
func committedOffsets(bootstrap, topic string, partitions int, groups []string) (map[string]map[int32]int64, error) {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	out := map[string]map[int32]int64{}
	for _, g := range groups {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var tps []kafka.TopicPartition
		for p := range partitions {
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: int32(p)})
		}
		res, err := admin.ListConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{{Group: g, Partitions: tps}})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("committed offsets of %s: %w", g, err)
		}
		out[g] = map[int32]int64{}
		for _, gtp := range res.ConsumerGroupsTopicPartitions {
			for _, tp := range gtp.Partitions {
				if tp.Error == nil && tp.Offset >= 0 {
					out[g][tp.Partition] = int64(tp.Offset)
				}
			}
		}
	}
	return out, nil
}

// partitionLeaders returns the leader broker of each partition of topic.
func partitionLeaders(bootstrap, topic string) (map[int32]int32, error) {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	md, err := admin.GetMetadata(&topic, false, 10_000)
	if err != nil {
		return nil, err
	}
	out := map[int32]int32{}
	for _, p := range md.Topics[topic].Partitions {
		out[p.ID] = p.Leader
	}
	return out, nil
}

// topicRecord is one record read back from a topic.
type topicRecord struct {
	partition int32
	offset    int64
	key       string
	messageID string // its message-id header
	value     string
	headers   []header // the others
}

type header struct{ key, value string }

// header returns the value of the header named k, or "".
func (r topicRecord) header(k string) string {
	for _, h := range r.headers {
		if h.key == k {
			return h.value
		}
	}
	return ""
}

func (r topicRecord) has(k string) bool {
	return slices.ContainsFunc(r.headers, func(h header) bool { return h.key == k })
}

// readTopic reads every record of topic from the beginning up to the high
// watermarks of the moment it is called, with a consumer that commits
// nothing, and returns them with those watermarks.
func readTopic(bootstrap, topic string, timeout time.Duration) ([]topicRecord, map[int32]int64, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           "chaos-reader-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
		"isolation.level":    "read_committed",
		"log_level":          3,
	})
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10_000)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var assign kafka.TopicPartitions
	ends, watermarks := map[int32]int64{}, map[int32]int64{}
	for _, p := range md.Topics[topic].Partitions {
		high, err := highWatermark(c, topic, p.ID)
		if err != nil {
			return nil, nil, err
		}
		watermarks[p.ID] = high
		if high > 0 {
			ends[p.ID] = high
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	if len(assign) == 0 {
		return nil, watermarks, nil
	}
	if err := c.Assign(assign); err != nil {
		return nil, nil, err
	}
	var out []topicRecord
	deadline := time.Now().Add(timeout)
	for len(ends) > 0 {
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("reading %s: partitions %v not read to their end within %v", topic, ends, timeout)
		}
		m, err := c.ReadMessage(time.Second)
		if err != nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.IsTimeout() {
				continue
			}
			return nil, nil, fmt.Errorf("reading %s: %w", topic, err)
		}
		r := topicRecord{partition: m.TopicPartition.Partition, offset: int64(m.TopicPartition.Offset), key: string(m.Key), value: string(m.Value)}
		for _, h := range m.Headers {
			if h.Key == "message-id" {
				r.messageID = string(h.Value)
			} else {
				r.headers = append(r.headers, header{h.Key, string(h.Value)})
			}
		}
		out = append(out, r)
		if r.offset+1 >= ends[r.partition] {
			delete(ends, r.partition)
		}
	}
	return out, watermarks, nil
}

// highWatermark is the partition's high watermark. Right after a leader
// change the consumer's metadata can still name the old leader, which
// answers NOT_LEADER_OR_FOLLOWER: it asks again, for up to 30 s.
func highWatermark(c *kafka.Consumer, topic string, partition int32) (int64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, high, err := c.QueryWatermarkOffsets(topic, partition, 10_000)
		if err == nil {
			return high, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("watermarks of %s/%d: %w", topic, partition, err)
		}
		time.Sleep(time.Second)
	}
}
