package produce

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// recordFinder looks in a topic for the record written with a message ID:
// how a gateway learns the fate of a write whose writer vanished before it
// stored the result of its idempotency key.
type recordFinder interface {
	// Find reads partition of topic (every partition when -1), from the
	// first record whose timestamp is at or after from to the end, for a
	// record whose message-id header is id. found is false when none is
	// there; err is set when the partition could not be read to its end.
	Find(ctx context.Context, topic string, partition int32, from time.Time, id string) (res dedupe.ProduceResult, found bool, err error)
}

// errTooFar means the search would read more than findMaxBytes.
var errTooFar = errors.New("the record could be further than the search may read")

const (
	// findMaxBytes bounds what one search reads: the records written to
	// the partitions searched since the writer reserved its key.
	findMaxBytes = 512 << 20
	// findSlack is how much earlier than from a search starts: room for a
	// broker's clock (log append time) behind the writer's.
	findSlack = 10 * time.Second
	// findStall ends a search that reads nothing for that long.
	findStall = 15 * time.Second
)

// kafkaFinder searches with a consumer outside any group, made for each
// search (searches are rare: a writer died, or lost track of a write).
type kafkaFinder struct {
	kafka      kafkaclient.Config
	header     string                                                 // the message-id header
	partitions func(ctx context.Context, topic string) (int32, error) // the topic's partition count
	logger     *slog.Logger
	maxBytes   int64
}

func (f *kafkaFinder) Find(ctx context.Context, topic string, partition int32, from time.Time, id string) (dedupe.ProduceResult, bool, error) {
	parts := []int32{partition}
	if partition < 0 {
		n, err := f.partitions(ctx, topic)
		if err != nil {
			return dedupe.ProduceResult{}, false, err
		}
		parts = parts[:0]
		for p := range n {
			parts = append(parts, p)
		}
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	cm := f.kafka.ConfigMap(nil, map[string]string{
		// Assigned, never subscribed: the group is never joined or committed.
		"group.id":           "gateway-find-" + hex.EncodeToString(suffix[:]),
		"enable.auto.commit": "false",
		"auto.offset.reset":  "earliest",
	})
	cm["go.logs.channel.enable"] = true
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return dedupe.ProduceResult{}, false, fmt.Errorf("create reader: %w", err)
	}
	defer c.Close()
	go kafkaclient.RouteLogs(f.logger.With("component", "librdkafka", "search", topic), c.Logs())

	timeout := func() int {
		d := 10 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			d = min(d, time.Until(dl))
		}
		return max(int(d.Milliseconds()), 1)
	}
	// Where to start: the first offset with a timestamp at or after from.
	// The record's timestamp is at or after from, so it is at or after it.
	start := make([]kafka.TopicPartition, len(parts))
	for i, p := range parts {
		start[i] = kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.Offset(from.Add(-findSlack).UnixMilli())}
	}
	start, err = c.OffsetsForTimes(start, timeout())
	if err != nil {
		return dedupe.ProduceResult{}, false, fmt.Errorf("offsets of %s by time: %w", topic, kafkaclient.Classify(err))
	}
	ends := map[int32]int64{}
	var assign []kafka.TopicPartition
	for _, tp := range start {
		if tp.Error != nil {
			return dedupe.ProduceResult{}, false, fmt.Errorf("offset of %s/%d by time: %w", topic, tp.Partition, kafkaclient.Classify(tp.Error))
		}
		if tp.Offset < 0 { // no record that recent: not there
			continue
		}
		_, high, err := c.QueryWatermarkOffsets(topic, tp.Partition, timeout())
		if err != nil {
			return dedupe.ProduceResult{}, false, fmt.Errorf("end of %s/%d: %w", topic, tp.Partition, kafkaclient.Classify(err))
		}
		if int64(tp.Offset) < high {
			ends[tp.Partition] = high
			assign = append(assign, tp)
		}
	}
	if len(assign) == 0 {
		return dedupe.ProduceResult{}, false, nil
	}
	if err := c.Assign(assign); err != nil {
		return dedupe.ProduceResult{}, false, fmt.Errorf("assign %s: %w", topic, kafkaclient.Classify(err))
	}
	var read int64
	lastRead := time.Now()
	for len(ends) > 0 {
		if err := ctx.Err(); err != nil {
			return dedupe.ProduceResult{}, false, err
		}
		if time.Since(lastRead) > findStall {
			return dedupe.ProduceResult{}, false, fmt.Errorf("read %s: %w: nothing read for %v", topic, kafkaclient.ErrUnavailable, findStall)
		}
		m, ok := c.Poll(100).(*kafka.Message)
		if !ok {
			continue
		}
		lastRead = time.Now()
		p, off := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
		if m.TopicPartition.Error != nil {
			return dedupe.ProduceResult{}, false, fmt.Errorf("read %s/%d: %w", topic, p, kafkaclient.Classify(m.TopicPartition.Error))
		}
		end, reading := ends[p]
		if !reading {
			continue
		}
		for _, h := range m.Headers {
			if h.Key == f.header && string(h.Value) == id {
				return dedupe.ProduceResult{Partition: p, Offset: off, Timestamp: m.Timestamp, MessageID: id}, true, nil
			}
		}
		if off+1 >= end {
			delete(ends, p)
		}
		read += int64(len(m.Key) + len(m.Value))
		if read > f.maxBytes {
			return dedupe.ProduceResult{}, false, errTooFar
		}
	}
	return dedupe.ProduceResult{}, false, nil
}
