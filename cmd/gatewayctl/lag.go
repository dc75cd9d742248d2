package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

var lagCmd = &command{
	name:    "lag",
	summary: "show a consumer group's members, committed offsets and lag per partition",
	help: `
Lag is the partition's log end minus the group's committed offset; a
partition without a committed offset shows "-". Without --topic, the
partitions shown are those the group has committed offsets for or has
assigned to a member. --output json prints the AdminService.DescribeGroup
response.`,
	setup: func(fs *flag.FlagSet) runFunc {
		var topics stringList
		group := fs.String("group", "", "consumer group (required)")
		fs.Var(&topics, "topic", "show every partition of this topic (repeatable, or comma-separated)")
		return func(ctx context.Context, e *env, args []string) error {
			if *group == "" {
				return usageErr("--group is required")
			}
			if len(args) > 0 {
				return usageErr("unexpected arguments %q", args)
			}
			client, err := e.admin()
			if err != nil {
				return err
			}
			cctx, cancel := e.callCtx(ctx, true)
			defer cancel()
			d, err := client.DescribeGroup(cctx, &gatewayv1.DescribeGroupRequest{Group: *group, Topics: topics})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printProto(d)
			}
			printGroup(e, d)
			return nil
		}
	},
}

func printGroup(e *env, d *gatewayv1.DescribeGroupResponse) {
	clients := map[string]string{}
	for _, m := range d.GetMembers() {
		name := m.GetClientId() + "@" + strings.TrimPrefix(m.GetHost(), "/")
		if m.GetThisGateway() {
			name += " (this gateway)"
		}
		clients[m.GetMemberId()] = name
	}
	state := d.GetState()
	switch n := len(d.GetMembers()); {
	case n == 1:
		state += ", 1 member"
	case n > 1:
		state += fmt.Sprintf(", %d members", n)
	}
	if d.GetAssignor() != "" {
		state += ", assignor " + d.GetAssignor()
	}
	t := e.table()
	t.row("GROUP", d.GetGroup())
	t.row("STATE", state)
	if d.GetRunningHere() {
		t.row("CONSUMED", "by this gateway")
	}
	t.row("TOTAL LAG", d.GetTotalLag())
	t.flush()
	fmt.Fprintln(e.stdout)

	t = e.table("TOPIC", "PARTITION", "COMMITTED", "LOG START", "LOG END", "LAG", "OWNER")
	for _, p := range d.GetPartitions() {
		committed, lag := fmt.Sprint(p.GetCommittedOffset()), fmt.Sprint(p.GetLag())
		if p.GetCommittedOffset() < 0 {
			committed, lag = "-", "-"
		}
		owner := "-"
		if p.GetMemberId() != "" {
			owner = clients[p.GetMemberId()]
		}
		t.row(p.GetTopic(), p.GetPartition(), committed, p.GetLogStartOffset(), p.GetLogEndOffset(), lag, owner)
	}
	t.flush()
	if len(d.GetMembers()) == 0 {
		return
	}
	fmt.Fprintln(e.stdout)
	t = e.table("MEMBER", "CLIENT", "HOST", "INSTANCE", "PARTITIONS")
	for _, m := range d.GetMembers() {
		instance := m.GetInstanceId()
		if instance == "" {
			instance = "-"
		}
		t.row(m.GetMemberId(), m.GetClientId(), strings.TrimPrefix(m.GetHost(), "/"), instance, tpList(m.GetAssignment()))
	}
	t.flush()
}
