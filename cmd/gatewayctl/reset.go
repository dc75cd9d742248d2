package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

var resetCmd = &command{
	name:    "reset",
	summary: "move a consumer group's committed offsets (earliest, latest, a time, offsets)",
	help: `
Exactly one target: --to-earliest, --to-latest, --to-datetime, --by-duration,
--to-offset (every partition of the topics) or --to-offsets (explicit
partitions; no --topic). Targets outside a partition's log are clamped to
its start or end.

When the gateway consumes the group itself, its partitions are repositioned
live: unacknowledged records are dropped and the group reads again from the
target. A group consumed elsewhere is refused while it has members (stop
them first); --force leaves partitions of other members alone when the
gateway consumes the group, and otherwise asks Kafka anyway, which refuses
while the group has members. --dry-run prints the plan and changes nothing.`,
	setup: func(fs *flag.FlagSet) runFunc {
		var topics stringList
		var targets []string
		req := &gatewayv1.ResetOffsetsRequest{}
		target := func(name string, set func(string) error) {
			fs.Func(name, resetTargetHelp[name], func(v string) error {
				targets = append(targets, "--"+name)
				return set(v)
			})
		}
		group := fs.String("group", "", "consumer group (required)")
		fs.Var(&topics, "topic", "reset every partition of this topic (repeatable, or comma-separated)")
		fs.BoolFunc("to-earliest", resetTargetHelp["to-earliest"], func(string) error {
			targets = append(targets, "--to-earliest")
			req.Target = &gatewayv1.ResetOffsetsRequest_ToPosition{ToPosition: gatewayv1.ResetPosition_RESET_POSITION_EARLIEST}
			return nil
		})
		fs.BoolFunc("to-latest", resetTargetHelp["to-latest"], func(string) error {
			targets = append(targets, "--to-latest")
			req.Target = &gatewayv1.ResetOffsetsRequest_ToPosition{ToPosition: gatewayv1.ResetPosition_RESET_POSITION_LATEST}
			return nil
		})
		target("to-datetime", func(v string) error {
			ts, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return fmt.Errorf("want RFC 3339, for example 2026-11-24T03:00:00Z")
			}
			req.Target = &gatewayv1.ResetOffsetsRequest_ToTimestamp{ToTimestamp: timestamppb.New(ts)}
			return nil
		})
		target("by-duration", func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("want a positive duration such as 90m")
			}
			req.Target = &gatewayv1.ResetOffsetsRequest_ToTimestamp{ToTimestamp: timestamppb.New(time.Now().Add(-d))}
			return nil
		})
		target("to-offset", func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("want a non-negative offset")
			}
			req.Target = &gatewayv1.ResetOffsetsRequest_ToOffset{ToOffset: n}
			return nil
		})
		target("to-offsets", func(v string) error {
			offsets, err := parseOffsets(v)
			if err != nil {
				return err
			}
			req.Target = &gatewayv1.ResetOffsetsRequest_ToOffsets{ToOffsets: &gatewayv1.PartitionOffsets{Offsets: offsets}}
			return nil
		})
		fs.BoolVar(&req.DryRun, "dry-run", false, "print the plan; change nothing")
		fs.BoolVar(&req.Force, "force", false, "go ahead although other members own some of the partitions")
		return func(ctx context.Context, e *env, args []string) error {
			switch {
			case *group == "":
				return usageErr("--group is required")
			case len(targets) == 0:
				return usageErr("give a target: --to-earliest, --to-latest, --to-datetime, --by-duration, --to-offset or --to-offsets")
			case len(targets) > 1:
				return usageErr("give one target, not %s", strings.Join(targets, " and "))
			case len(args) > 0:
				return usageErr("unexpected arguments %q", args)
			}
			req.Group, req.Topics = *group, topics
			client, err := e.admin()
			if err != nil {
				return err
			}
			cctx, cancel := e.callCtx(ctx, true)
			defer cancel()
			resp, err := client.ResetOffsets(cctx, req)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printProto(resp)
			}
			if resp.GetDryRun() {
				fmt.Fprintf(e.stdout, "Dry run: the plan for group %s (nothing changed)\n\n", req.GetGroup())
			} else {
				fmt.Fprintf(e.stdout, "Offsets of group %s reset\n\n", req.GetGroup())
			}
			t := e.table("TOPIC", "PARTITION", "PREVIOUS", "TARGET", "LOG START", "LOG END", "ACTION")
			for _, p := range resp.GetPartitions() {
				prev := fmt.Sprint(p.GetPreviousOffset())
				if p.GetPreviousOffset() < 0 {
					prev = "-"
				}
				target := fmt.Sprint(p.GetTargetOffset())
				if p.GetClamped() {
					target += " (clamped)"
				}
				action := actionName(p.GetAction())
				if p.GetMemberId() != "" && p.GetAction() == gatewayv1.ResetAction_RESET_ACTION_SKIPPED {
					action += " (owned by " + p.GetMemberId() + ")"
				}
				t.row(p.GetTopic(), p.GetPartition(), prev, target, p.GetLogStartOffset(), p.GetLogEndOffset(), action)
			}
			t.flush()
			return nil
		}
	},
}

var resetTargetHelp = map[string]string{
	"to-earliest": "reset to the oldest record of each partition",
	"to-latest":   "reset to the end of each partition",
	"to-datetime": "reset to the first record at or after this time (RFC 3339)",
	"by-duration": "reset to the first record at or after this long ago (for example 90m)",
	"to-offset":   "reset every partition of the topics to this offset",
	"to-offsets":  "reset these partitions: TOPIC/PARTITION=OFFSET,...",
}

func actionName(a gatewayv1.ResetAction) string {
	switch a {
	case gatewayv1.ResetAction_RESET_ACTION_REPOSITIONED:
		return "repositioned live"
	case gatewayv1.ResetAction_RESET_ACTION_COMMITTED:
		return "committed"
	case gatewayv1.ResetAction_RESET_ACTION_SKIPPED:
		return "skipped"
	}
	return "-"
}

// parseOffsets reads TOPIC/PARTITION=OFFSET,... (topic names hold neither
// '/' nor '=' nor ',').
func parseOffsets(v string) ([]*gatewayv1.PartitionOffset, error) {
	var out []*gatewayv1.PartitionOffset
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		tp, off, ok1 := strings.Cut(item, "=")
		topic, part, ok2 := strings.Cut(tp, "/")
		if !ok1 || !ok2 || topic == "" {
			return nil, fmt.Errorf("%q: want TOPIC/PARTITION=OFFSET", item)
		}
		p, err := strconv.ParseInt(part, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q: bad partition", item)
		}
		o, err := strconv.ParseInt(off, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q: bad offset", item)
		}
		out = append(out, &gatewayv1.PartitionOffset{Topic: topic, Partition: int32(p), Offset: o})
	}
	return out, nil
}
