package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// ResetTo is the kind of target of an offset reset.
type ResetTo uint8

const (
	// ToEarliest moves to the oldest record of each partition.
	ToEarliest ResetTo = iota + 1
	// ToLatest moves to the end of each partition.
	ToLatest
	// ToTimestamp moves to the first record at or after a time.
	ToTimestamp
	// ToOffset moves every partition to one offset.
	ToOffset
	// ToOffsets moves to explicit offsets per partition.
	ToOffsets
)

// ResetRequest asks to move a group's offsets. Field names in errors are
// those of gateway.v1.ResetOffsetsRequest.
type ResetRequest struct {
	Group     string
	Topics    []string // every partition of these (all targets but ToOffsets)
	To        ResetTo
	Timestamp time.Time                 // ToTimestamp
	Offset    int64                     // ToOffset
	Offsets   []consume.PartitionOffset // ToOffsets
	DryRun    bool
	Force     bool
	// Requester names the caller in the log.
	Requester string
}

// Action is what a reset does to a partition.
type Action uint8

const (
	// ActionRepositioned means this gateway consumes the partition and
	// repositions it live.
	ActionRepositioned Action = iota + 1
	// ActionCommitted means no member consumes it; its committed offset is
	// changed.
	ActionCommitted
	// ActionSkipped means another member owns it (forced reset of a group
	// this gateway runs): left alone.
	ActionSkipped
)

func (a Action) String() string {
	switch a {
	case ActionRepositioned:
		return "repositioned"
	case ActionCommitted:
		return "committed"
	case ActionSkipped:
		return "skipped"
	}
	return "unknown"
}

// PartitionReset is the plan for one partition, and its outcome.
type PartitionReset struct {
	Topic     string
	Partition int32
	Previous  int64 // committed offset before; -1 none
	Target    int64
	Clamped   bool
	LogStart  int64
	LogEnd    int64
	Action    Action
	MemberID  string // the owner when another member owns it
}

// ResetOffsets moves a group's committed offsets (see gateway.v1
// AdminService.ResetOffsets for the rules). It returns the plan, ordered by
// topic and partition; with DryRun nothing changes.
func (s *Service) ResetOffsets(ctx context.Context, req ResetRequest) ([]PartitionReset, error) {
	requested, err := s.resetPartitions(ctx, req)
	if err != nil {
		return nil, err
	}
	tps := make([]tp, 0, len(requested))
	for t := range requested {
		tps = append(tps, t)
	}
	slices.SortFunc(tps, compareTP)
	low, high, err := s.watermarks(ctx, tps)
	if err != nil {
		return nil, err
	}
	var atTime map[tp]int64
	if req.To == ToTimestamp {
		if atTime, err = s.listOffsets(ctx, tps, kafka.NewOffsetSpecForTimestamp(req.Timestamp.UnixMilli())); err != nil {
			return nil, err
		}
	}
	committed, err := s.committed(ctx, req.Group, tps)
	if err != nil {
		return nil, err
	}
	d, err := s.describeGroup(ctx, req.Group)
	if err != nil {
		return nil, err
	}
	owned, running := s.consumers.Owned(req.Group)
	ms := members(d, owned)
	mine := map[tp]bool{}
	for _, o := range owned {
		mine[tp{o.Topic, o.Partition}] = true
	}
	ownerOf := map[tp]Member{}
	for _, m := range ms {
		for _, a := range m.Assignment {
			ownerOf[tp{a.Topic, a.Partition}] = m
		}
	}

	plan := make([]PartitionReset, len(tps))
	blocking := map[string]Member{}
	for i, t := range tps {
		p := PartitionReset{Topic: t.topic, Partition: t.partition, Previous: -1, LogStart: low[t], LogEnd: high[t]}
		if c, ok := committed[t]; ok {
			p.Previous = c
		}
		want := requested[t]
		switch req.To {
		case ToEarliest:
			want = p.LogStart
		case ToLatest:
			want = p.LogEnd
		case ToTimestamp:
			if want = atTime[t]; want < 0 {
				want = p.LogEnd // no record at or after the time
			}
		}
		p.Target = min(max(want, p.LogStart), p.LogEnd)
		p.Clamped = p.Target != want
		owner, hasOwner := ownerOf[t]
		if hasOwner {
			p.MemberID = owner.MemberID
		}
		switch {
		case !running:
			// The admin API commits; Kafka refuses while the group has members.
			p.Action = ActionCommitted
		case mine[t]:
			p.Action = ActionRepositioned
			p.MemberID = ""
		case hasOwner:
			p.Action = ActionSkipped
			blocking[owner.MemberID] = owner
		default:
			p.Action = ActionCommitted // through this gateway's member
		}
		plan[i] = p
	}
	if !running && len(ms) > 0 {
		for _, m := range ms {
			blocking[m.MemberID] = m
		}
	}
	if len(blocking) > 0 && !req.Force {
		return plan, &MembersError{Group: req.Group, Members: sortedMembers(blocking)}
	}
	if req.DryRun {
		return plan, nil
	}
	if running {
		err = s.resetLive(ctx, req.Group, plan)
	} else {
		err = s.resetOffline(ctx, req.Group, plan, ms)
	}
	if err != nil {
		return plan, err
	}
	s.logReset(req, plan)
	return plan, nil
}

// resetPartitions validates req and returns the partitions it names, with
// the requested offset for ToOffset and ToOffsets.
func (s *Service) resetPartitions(ctx context.Context, req ResetRequest) (map[tp]int64, error) {
	if req.Group == "" {
		return nil, invalid.Field("group", "must not be empty")
	}
	out := map[tp]int64{}
	switch req.To {
	case ToEarliest, ToLatest, ToTimestamp, ToOffset:
		if len(req.Topics) == 0 {
			return nil, invalid.Field("topics", "must not be empty")
		}
		if err := checkTopicNames("topics", req.Topics); err != nil {
			return nil, err
		}
		if req.To == ToOffset && req.Offset < 0 {
			return nil, invalid.Field("to_offset", "must not be negative")
		}
		if req.To == ToTimestamp && req.Timestamp.UnixMilli() < 0 {
			return nil, invalid.Field("to_timestamp", "must not be before 1970-01-01")
		}
		descs, err := s.describeTopics(ctx, "topics", req.Topics)
		if err != nil {
			return nil, err
		}
		for _, d := range descs {
			for _, p := range d.Partitions {
				out[tp{d.Name, int32(p.Partition)}] = req.Offset
			}
		}
	case ToOffsets:
		if len(req.Topics) > 0 {
			return nil, invalid.Field("topics", "must be empty with to_offsets, which names its partitions")
		}
		if len(req.Offsets) == 0 {
			return nil, invalid.Field("to_offsets.offsets", "must not be empty")
		}
		var errs invalid.Error
		var topics []string
		seen := map[string]bool{}
		for i, o := range req.Offsets {
			field := fmt.Sprintf("to_offsets.offsets[%d]", i)
			t := tp{o.Topic, o.Partition}
			if why := produce.ValidTopicName(o.Topic); why != "" {
				errs.Add(field+".topic", "%s", why)
			}
			if o.Partition < 0 {
				errs.Add(field+".partition", "must not be negative")
			}
			if o.Offset < 0 {
				errs.Add(field+".offset", "must not be negative")
			}
			if _, dup := out[t]; dup {
				errs.Add(field, "%s is named twice", t)
			}
			out[t] = o.Offset
			if !seen[o.Topic] {
				seen[o.Topic] = true
				topics = append(topics, o.Topic)
			}
		}
		if err := errs.Err(); err != nil {
			return nil, err
		}
		descs, err := s.describeTopics(ctx, "to_offsets.offsets[].topic", topics)
		if err != nil {
			return nil, err
		}
		count := map[string]int{}
		for _, d := range descs {
			count[d.Name] = len(d.Partitions)
		}
		for i, o := range req.Offsets {
			if n := count[o.Topic]; int(o.Partition) >= n {
				errs.Add(fmt.Sprintf("to_offsets.offsets[%d].partition", i), "topic %q has %d partitions (0..%d)", o.Topic, n, n-1)
			}
		}
		if err := errs.Err(); err != nil {
			return nil, err
		}
	default:
		return nil, invalid.Field("target", "set one of to_position, to_timestamp, to_offset, to_offsets")
	}
	return out, nil
}

// resetLive repositions a group that runs on this gateway; partitions of
// other members (forced) are left alone.
func (s *Service) resetLive(ctx context.Context, group string, plan []PartitionReset) error {
	var targets []consume.PartitionOffset
	for _, p := range plan {
		if p.Action != ActionSkipped {
			targets = append(targets, consume.PartitionOffset{Topic: p.Topic, Partition: p.Partition, Offset: p.Target})
		}
	}
	if len(targets) == 0 {
		return nil
	}
	actions, err := s.consumers.Reposition(ctx, group, targets)
	if errors.Is(err, consume.ErrNotRunning) {
		return fmt.Errorf("%w: the group stopped on this gateway meanwhile", consume.ErrBusy)
	}
	for i, p := range plan {
		switch actions[consume.TopicPartition{Topic: p.Topic, Partition: p.Partition}] {
		case consume.ResetRepositioned:
			plan[i].Action = ActionRepositioned
		case consume.ResetCommitted:
			plan[i].Action = ActionCommitted
		}
	}
	return err
}

// resetOffline commits the targets with the admin API (no consumer of the
// group runs here). Kafka refuses it while the group has members.
func (s *Service) resetOffline(ctx context.Context, group string, plan []PartitionReset, ms []Member) error {
	req := kafka.ConsumerGroupTopicPartitions{Group: group}
	for _, p := range plan {
		topic := p.Topic
		req.Partitions = append(req.Partitions, kafka.TopicPartition{Topic: &topic, Partition: p.Partition, Offset: kafka.Offset(p.Target)})
	}
	res, err := call(ctx, s, "alter committed offsets", func(ctx context.Context) (kafka.AlterConsumerGroupOffsetsResult, error) {
		return s.client.AlterConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{req})
	})
	if err != nil {
		return err
	}
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, p := range g.Partitions {
			if p.Error == nil {
				continue
			}
			var kerr kafka.Error
			if errors.As(p.Error, &kerr) {
				switch kerr.Code() {
				case kafka.ErrUnknownMemberID, kafka.ErrRebalanceInProgress, kafka.ErrIllegalGeneration, kafka.ErrFencedInstanceID:
					return &MembersError{Group: group, Members: ms, Refused: true}
				}
			}
			return fmt.Errorf("alter committed offset of %s/%d: %w", *p.Topic, p.Partition, kafkaclient.Classify(p.Error))
		}
	}
	return nil
}

// logReset logs a reset loudly: offsets moved by hand are how records get
// skipped or processed twice.
func (s *Service) logReset(req ResetRequest, plan []PartitionReset) {
	var moves []string
	for _, p := range plan {
		if p.Action != ActionSkipped {
			moves = append(moves, fmt.Sprintf("%s/%d %d→%d (%s)", p.Topic, p.Partition, p.Previous, p.Target, p.Action))
		}
	}
	s.logger.Warn("consumer group offsets reset", "group", req.Group, "by", req.Requester, "force", req.Force,
		"partitions", strings.Join(moves, ", "))
}

func sortedMembers(m map[string]Member) []Member {
	return slices.SortedFunc(maps.Values(m), func(a, b Member) int { return cmp.Compare(a.MemberID, b.MemberID) })
}
