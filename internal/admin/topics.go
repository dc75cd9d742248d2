package admin

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/produce"
)

// TopicSummary is one topic of a listing.
type TopicSummary struct {
	Name       string
	Partitions int
	Internal   bool
}

// internalTopic reports whether name is one of Kafka's own topics.
func internalTopic(name string) bool { return strings.HasPrefix(name, "__") }

// ListTopics lists the cluster's topics by name; Kafka's internal topics
// (names starting with "__") only when includeInternal.
func (s *Service) ListTopics(ctx context.Context, includeInternal bool) ([]TopicSummary, error) {
	md, err := call(ctx, s, "list topics", func(ctx context.Context) (*kafka.Metadata, error) {
		timeout := s.timeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(0, time.Until(dl))
		}
		return s.client.GetMetadata(nil, true, int(timeout.Milliseconds()))
	})
	if err != nil {
		return nil, err
	}
	var out []TopicSummary
	for name, t := range md.Topics {
		if internal := internalTopic(name); !internal || includeInternal {
			out = append(out, TopicSummary{Name: name, Partitions: len(t.Partitions), Internal: internal})
		}
	}
	slices.SortFunc(out, func(a, b TopicSummary) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// TopicDescription describes a topic's partitions.
type TopicDescription struct {
	Name       string
	TopicID    string
	Internal   bool
	Partitions []PartitionInfo
}

// PartitionInfo is one partition of a topic.
type PartitionInfo struct {
	Partition int32
	Leader    *Broker // nil without a leader
	Replicas  []int32
	ISR       []int32
	LogStart  int64
	LogEnd    int64
}

// Broker is one broker.
type Broker struct {
	ID   int32
	Host string
	Port int32
}

// DescribeTopic reports a topic's partitions, leaders, replicas and
// watermarks.
func (s *Service) DescribeTopic(ctx context.Context, topic string) (TopicDescription, error) {
	if why := produce.ValidTopicName(topic); why != "" {
		return TopicDescription{}, invalid.Field("topic", "%s", why)
	}
	descs, err := s.describeTopics(ctx, "topic", []string{topic})
	if err != nil {
		return TopicDescription{}, err
	}
	d := descs[0]
	out := TopicDescription{Name: d.Name, Internal: d.IsInternal}
	if id := d.TopicID; id.GetMostSignificantBits() != 0 || id.GetLeastSignificantBits() != 0 {
		out.TopicID = id.String()
	}
	tps := make([]tp, len(d.Partitions))
	for i, p := range d.Partitions {
		tps[i] = tp{d.Name, int32(p.Partition)}
	}
	low, high, err := s.watermarks(ctx, tps)
	if err != nil {
		return TopicDescription{}, err
	}
	for _, p := range d.Partitions {
		pi := PartitionInfo{Partition: int32(p.Partition), LogStart: low[tp{d.Name, int32(p.Partition)}], LogEnd: high[tp{d.Name, int32(p.Partition)}]}
		if p.Leader != nil && p.Leader.ID >= 0 {
			pi.Leader = &Broker{ID: int32(p.Leader.ID), Host: p.Leader.Host, Port: int32(p.Leader.Port)}
		}
		for _, r := range p.Replicas {
			pi.Replicas = append(pi.Replicas, int32(r.ID))
		}
		for _, r := range p.Isr {
			pi.ISR = append(pi.ISR, int32(r.ID))
		}
		out.Partitions = append(out.Partitions, pi)
	}
	slices.SortFunc(out.Partitions, func(a, b PartitionInfo) int { return cmp.Compare(a.Partition, b.Partition) })
	return out, nil
}
