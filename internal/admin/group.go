package admin

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/kafkagate/gateway/internal/invalid"
)

// GroupDescription is a consumer group's state and progress.
type GroupDescription struct {
	Group       string
	State       string
	Assignor    string
	Members     []Member
	Partitions  []PartitionLag // by topic, then partition
	TotalLag    int64
	RunningHere bool
}

// PartitionLag is a group's progress in one partition. Committed and Lag
// are -1 when the group has committed nothing for the partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	Committed int64
	LogStart  int64
	LogEnd    int64
	Lag       int64
	MemberID  string // the owning member, if any
}

// DescribeGroup reports a group's members and, per partition, its
// committed offset and lag. topics selects every partition of these topics;
// empty selects the partitions the group has committed offsets for or has
// assigned. It fails with ErrUnknownGroup when Kafka knows nothing of the
// group and it does not run here.
func (s *Service) DescribeGroup(ctx context.Context, group string, topics []string) (GroupDescription, error) {
	if group == "" {
		return GroupDescription{}, invalid.Field("group", "must not be empty")
	}
	if err := checkTopicNames("topics", topics); err != nil {
		return GroupDescription{}, err
	}
	d, err := s.describeGroup(ctx, group)
	if err != nil {
		return GroupDescription{}, err
	}
	owned, running := s.consumers.Owned(group)
	out := GroupDescription{
		Group:       group,
		State:       d.State.String(),
		Assignor:    d.PartitionAssignor,
		Members:     members(d, owned),
		RunningHere: running,
	}
	owner := map[tp]string{}
	for _, m := range out.Members {
		for _, a := range m.Assignment {
			owner[tp{a.Topic, a.Partition}] = m.MemberID
		}
	}

	var tps []tp
	var committed map[tp]int64
	if len(topics) > 0 {
		descs, err := s.describeTopics(ctx, "topics", topics)
		if err != nil {
			return GroupDescription{}, err
		}
		for _, td := range descs {
			for _, p := range td.Partitions {
				tps = append(tps, tp{td.Name, int32(p.Partition)})
			}
		}
		if committed, err = s.committed(ctx, group, tps); err != nil {
			return GroupDescription{}, err
		}
	} else {
		if committed, err = s.committed(ctx, group, nil); err != nil {
			return GroupDescription{}, err
		}
		set := maps.Clone(committed)
		for t := range owner {
			set[t] = 0
		}
		for _, o := range owned {
			set[tp{o.Topic, o.Partition}] = 0
		}
		tps = slices.Collect(maps.Keys(set))
	}
	if len(d.Members) == 0 && len(committed) == 0 && !running {
		return GroupDescription{}, fmt.Errorf("group %q: %w", group, ErrUnknownGroup)
	}
	slices.SortFunc(tps, compareTP)
	low, high, err := s.watermarks(ctx, tps)
	if err != nil {
		return GroupDescription{}, err
	}
	for _, t := range tps {
		p := PartitionLag{Topic: t.topic, Partition: t.partition, Committed: -1, LogStart: low[t], LogEnd: high[t], Lag: -1, MemberID: owner[t]}
		if c, ok := committed[t]; ok {
			p.Committed = c
			p.Lag = max(0, p.LogEnd-c)
			out.TotalLag += p.Lag
		}
		out.Partitions = append(out.Partitions, p)
	}
	return out, nil
}
