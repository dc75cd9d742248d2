// Package admin is the gateway's operations domain: consumer group lag,
// offset resets (live for groups this gateway consumes), topic metadata and
// dead-letter replay, through librdkafka's admin client, the gateway's
// consumer groups and its producer. It knows nothing of gRPC.
package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// Consumers are the gateway's own consumer groups (consume.Manager).
type Consumers interface {
	Owned(group string) ([]consume.TopicPartition, bool)
	Reposition(ctx context.Context, group string, targets []consume.PartitionOffset) (map[consume.TopicPartition]consume.ResetAction, error)
}

// Producer writes replayed records (produce.Producer).
type Producer interface {
	Produce(ctx context.Context, topic string, records []produce.Record) ([]produce.Result, error)
}

var (
	// ErrUnknownGroup means Kafka knows nothing of the group (no members,
	// no committed offsets) and it does not run on this gateway.
	ErrUnknownGroup = errors.New("unknown consumer group")
	// ErrActiveMembers means other members of the group own partitions an
	// offset reset would move; see MembersError.
	ErrActiveMembers = errors.New("consumer group has active members")
)

// MembersError names the members that stand in the way of an offset reset.
type MembersError struct {
	Group   string
	Members []Member
	// Refused is set when Kafka itself refused the change (the reset was
	// forced); otherwise the gateway refused before asking.
	Refused bool
}

func (e *MembersError) Error() string {
	names := make([]string, len(e.Members))
	for i, m := range e.Members {
		names[i] = m.String()
	}
	what := fmt.Sprintf("group %q has active members that own the partitions: %s", e.Group, strings.Join(names, ", "))
	if e.Refused {
		return what + "; Kafka accepts offset changes from outside a group only while it has no members: stop them first"
	}
	return what + "; stop them first, reset through the gateway that runs them, or force"
}

func (e *MembersError) Unwrap() error { return ErrActiveMembers }

// Service runs admin operations. Create it with New; Close it after use.
type Service struct {
	kafka           kafkaclient.Config
	client          *kafka.AdminClient
	consumers       Consumers
	producer        Producer
	messageIDHeader string
	maxBatch        int
	timeout         time.Duration
	logger          *slog.Logger
}

// Options are what the service works with.
type Options struct {
	// Kafka is the cluster connection.
	Kafka kafkaclient.Config
	// Consumers are the gateway's consumer groups.
	Consumers Consumers
	// Producer writes replayed dead letters.
	Producer Producer
	// MessageIDHeader names the header holding message IDs.
	MessageIDHeader string
	// MaxRecordsPerRequest bounds a Produce call of the producer.
	MaxRecordsPerRequest int
	// RequestTimeout bounds each request to Kafka.
	RequestTimeout time.Duration
	// Logger receives the loud records of resets and replays.
	Logger *slog.Logger
}

// New creates the service and its admin client (which connects in the
// background).
func New(o Options) (*Service, error) {
	cm := o.Kafka.ConfigMap(nil, nil)
	// The Go client's admin client has no log channel: with any log level
	// librdkafka would print its own lines to stderr, between the
	// gateway's JSON logs. Its failures reach the callers as errors.
	cm["log_level"] = 0
	client, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return nil, fmt.Errorf("create admin client: %w", err)
	}
	return &Service{
		kafka:           o.Kafka,
		client:          client,
		consumers:       o.Consumers,
		producer:        o.Producer,
		messageIDHeader: o.MessageIDHeader,
		maxBatch:        min(replayBatch, max(1, o.MaxRecordsPerRequest)),
		timeout:         o.RequestTimeout,
		logger:          o.Logger,
	}, nil
}

// Close releases the admin client.
func (s *Service) Close() { s.client.Close() }

// call runs one admin request with s.timeout, and turns Kafka's errors
// into the gateway's error kinds; a timeout of the request itself (not of
// the caller) means Kafka did not answer: ErrUnavailable.
func call[T any](ctx context.Context, s *Service, what string, f func(ctx context.Context) (T, error)) (T, error) {
	opCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := f(opCtx)
	if err == nil {
		return v, nil
	}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return v, fmt.Errorf("%s: %w: no answer within %v", what, kafkaclient.ErrUnavailable, s.timeout)
	}
	return v, fmt.Errorf("%s: %w", what, kafkaclient.Classify(err))
}

// tp names a partition.
type tp struct {
	topic     string
	partition int32
}

func (t tp) String() string { return fmt.Sprintf("%s/%d", t.topic, t.partition) }

func compareTP(a, b tp) int {
	return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
}

func (t tp) kafka() kafka.TopicPartition {
	topic := t.topic
	return kafka.TopicPartition{Topic: &topic, Partition: t.partition}
}

// checkTopicNames validates names; field names the list in errors.
func checkTopicNames(field string, topics []string) error {
	var errs invalid.Error
	for i, t := range topics {
		if why := produce.ValidTopicName(t); why != "" {
			errs.Add(fmt.Sprintf("%s[%d]", field, i), "%s", why)
		}
	}
	return errs.Err()
}

// describeTopics returns each topic's description, in the order asked; an
// unknown topic is ErrUnknownTopic naming field[i].
func (s *Service) describeTopics(ctx context.Context, field string, topics []string) ([]kafka.TopicDescription, error) {
	res, err := call(ctx, s, "describe topics", func(ctx context.Context) (kafka.DescribeTopicsResult, error) {
		return s.client.DescribeTopics(ctx, kafka.NewTopicCollectionOfTopicNames(topics))
	})
	if err != nil {
		return nil, err
	}
	byName := make(map[string]kafka.TopicDescription, len(res.TopicDescriptions))
	for _, d := range res.TopicDescriptions {
		byName[d.Name] = d
	}
	out := make([]kafka.TopicDescription, len(topics))
	for i, name := range topics {
		d, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%s[%d] %q: %w", field, i, name, kafkaclient.ErrUnknownTopic)
		}
		if d.Error.Code() != kafka.ErrNoError {
			return nil, fmt.Errorf("%s[%d] %q: %w", field, i, name, kafkaclient.Classify(d.Error))
		}
		out[i] = d
	}
	return out, nil
}

// listOffsets asks each partition's offset for spec (earliest, latest or a
// timestamp); -1 means none (a timestamp after the last record).
func (s *Service) listOffsets(ctx context.Context, tps []tp, spec kafka.OffsetSpec) (map[tp]int64, error) {
	out := make(map[tp]int64, len(tps))
	if len(tps) == 0 {
		return out, nil
	}
	req := make(map[kafka.TopicPartition]kafka.OffsetSpec, len(tps))
	for _, t := range tps {
		req[t.kafka()] = spec
	}
	res, err := call(ctx, s, "list offsets", func(ctx context.Context) (kafka.ListOffsetsResult, error) {
		return s.client.ListOffsets(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	for k, info := range res.ResultInfos {
		t := tp{*k.Topic, k.Partition}
		if info.Error.Code() != kafka.ErrNoError {
			return nil, fmt.Errorf("list offsets of %s: %w", t, kafkaclient.Classify(info.Error))
		}
		out[t] = int64(info.Offset)
	}
	for _, t := range tps {
		if _, ok := out[t]; !ok {
			return nil, fmt.Errorf("list offsets of %s: %w: no answer for the partition", t, kafkaclient.ErrUnavailable)
		}
	}
	return out, nil
}

// watermarks returns the log start and end offsets of tps.
func (s *Service) watermarks(ctx context.Context, tps []tp) (low, high map[tp]int64, err error) {
	if low, err = s.listOffsets(ctx, tps, kafka.EarliestOffsetSpec); err != nil {
		return nil, nil, err
	}
	if high, err = s.listOffsets(ctx, tps, kafka.LatestOffsetSpec); err != nil {
		return nil, nil, err
	}
	return low, high, nil
}

// committed returns the group's committed offsets: of tps, or of every
// partition it has committed when tps is nil. Partitions without a
// committed offset are absent.
func (s *Service) committed(ctx context.Context, group string, tps []tp) (map[tp]int64, error) {
	req := kafka.ConsumerGroupTopicPartitions{Group: group}
	for _, t := range tps {
		req.Partitions = append(req.Partitions, t.kafka())
	}
	res, err := call(ctx, s, "list committed offsets", func(ctx context.Context) (kafka.ListConsumerGroupOffsetsResult, error) {
		return s.client.ListConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{req})
	})
	if err != nil {
		return nil, err
	}
	out := map[tp]int64{}
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, p := range g.Partitions {
			if p.Error != nil {
				return nil, fmt.Errorf("committed offset of %s/%d: %w", *p.Topic, p.Partition, kafkaclient.Classify(p.Error))
			}
			if p.Offset >= 0 {
				out[tp{*p.Topic, p.Partition}] = int64(p.Offset)
			}
		}
	}
	return out, nil
}

// describeGroup returns Kafka's description of the group; an unknown group
// is reported in state Dead without members.
func (s *Service) describeGroup(ctx context.Context, group string) (kafka.ConsumerGroupDescription, error) {
	res, err := call(ctx, s, "describe group", func(ctx context.Context) (kafka.DescribeConsumerGroupsResult, error) {
		return s.client.DescribeConsumerGroups(ctx, []string{group})
	})
	if err != nil {
		return kafka.ConsumerGroupDescription{}, err
	}
	if len(res.ConsumerGroupDescriptions) != 1 {
		return kafka.ConsumerGroupDescription{}, fmt.Errorf("describe group: %d descriptions for one group", len(res.ConsumerGroupDescriptions))
	}
	d := res.ConsumerGroupDescriptions[0]
	switch d.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrGroupIDNotFound:
		d.State, d.Members = kafka.ConsumerGroupStateDead, nil
	default:
		return d, fmt.Errorf("describe group %q: %w", group, kafkaclient.Classify(d.Error))
	}
	return d, nil
}

// Member is one member of a consumer group.
type Member struct {
	MemberID   string
	ClientID   string
	Host       string
	InstanceID string
	Assignment []consume.TopicPartition
	// ThisGateway marks this gateway's own consumer (recognised by its
	// assignment).
	ThisGateway bool
}

// String names the member for messages: client ID, host and member ID.
func (m Member) String() string {
	s := fmt.Sprintf("%s@%s (member %s", m.ClientID, strings.TrimPrefix(m.Host, "/"), m.MemberID)
	if m.InstanceID != "" {
		s += ", instance " + m.InstanceID
	}
	return s + ")"
}

// members converts Kafka's member descriptions, marking this gateway's.
func members(d kafka.ConsumerGroupDescription, owned []consume.TopicPartition) []Member {
	mine := make(map[tp]bool, len(owned))
	for _, o := range owned {
		mine[tp{o.Topic, o.Partition}] = true
	}
	out := make([]Member, len(d.Members))
	for i, m := range d.Members {
		mm := Member{MemberID: m.ConsumerID, ClientID: m.ClientID, Host: m.Host, InstanceID: m.GroupInstanceID}
		ours := len(m.Assignment.TopicPartitions) > 0
		for _, a := range m.Assignment.TopicPartitions {
			mm.Assignment = append(mm.Assignment, consume.TopicPartition{Topic: *a.Topic, Partition: a.Partition})
			ours = ours && mine[tp{*a.Topic, a.Partition}]
		}
		slices.SortFunc(mm.Assignment, func(a, b consume.TopicPartition) int {
			return compareTP(tp{a.Topic, a.Partition}, tp{b.Topic, b.Partition})
		})
		mm.ThisGateway = ours
		out[i] = mm
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.MemberID, b.MemberID) })
	return out
}
