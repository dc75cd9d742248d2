package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

var topicsCmd = &command{
	name: "topics",
	sub:  []*command{topicsListCmd, topicsDescribeCmd},
}

var topicsListCmd = &command{
	name:    "list",
	summary: "list the cluster's topics and their partition counts",
	setup: func(fs *flag.FlagSet) runFunc {
		internal := fs.Bool("internal", false, "include Kafka's internal topics (names starting with __)")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usageErr("unexpected arguments %q", args)
			}
			client, err := e.admin()
			if err != nil {
				return err
			}
			cctx, cancel := e.callCtx(ctx, true)
			defer cancel()
			resp, err := client.ListTopics(cctx, &gatewayv1.ListTopicsRequest{IncludeInternal: *internal})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printProto(resp)
			}
			t := e.table("TOPIC", "PARTITIONS")
			for _, tt := range resp.GetTopics() {
				t.row(tt.GetName(), tt.GetPartitions())
			}
			t.flush()
			return nil
		}
	},
}

var topicsDescribeCmd = &command{
	name:    "describe",
	args:    "TOPIC",
	summary: "show a topic's partitions: leader, replicas, in-sync replicas, log start and end",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usageErr("name one topic")
			}
			client, err := e.admin()
			if err != nil {
				return err
			}
			cctx, cancel := e.callCtx(ctx, true)
			defer cancel()
			d, err := client.DescribeTopic(cctx, &gatewayv1.DescribeTopicRequest{Topic: args[0]})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printProto(d)
			}
			t := e.table()
			t.row("TOPIC", d.GetName())
			if d.GetTopicId() != "" {
				t.row("ID", d.GetTopicId())
			}
			t.row("PARTITIONS", len(d.GetPartitions()))
			t.flush()
			fmt.Fprintln(e.stdout)
			t = e.table("PARTITION", "LEADER", "REPLICAS", "ISR", "LOG START", "LOG END")
			for _, p := range d.GetPartitions() {
				leader := "none"
				if l := p.GetLeader(); l != nil {
					leader = fmt.Sprintf("%d (%s:%d)", l.GetId(), l.GetHost(), l.GetPort())
				}
				t.row(p.GetPartition(), leader, ids(p.GetReplicas()), ids(p.GetIsr()), p.GetLogStartOffset(), p.GetLogEndOffset())
			}
			t.flush()
			return nil
		}
	},
}

func ids(v []int32) string {
	s := make([]string, len(v))
	for i, id := range v {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}
