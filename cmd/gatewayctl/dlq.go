package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

var dlqCmd = &command{
	name: "dlq",
	sub:  []*command{dlqReplayCmd},
}

var dlqReplayCmd = &command{
	name:    "replay",
	summary: "write dead letters back to the topics they came from",
	help: `
Reads the dead-letter topic (all of it, or --partition and an offset range)
and writes each record back to its source topic (its dlq-source-topic
header), or to --target-topic. --group replays only what that group
dead-lettered. Every group consuming the source topic receives the records.
A replayed record's message ID comes from its place in the dead-letter
topic, so running the same replay again writes nothing twice when the
gateway has Redis. --dry-run only counts.`,
	setup: func(fs *flag.FlagSet) runFunc {
		req := &gatewayv1.ReplayDeadLettersRequest{}
		fs.StringVar(&req.DeadLetterTopic, "topic", "", "dead-letter topic to read, for example orders.dlq (required)")
		partition := fs.Int("partition", -1, "read only this partition (default: all)")
		fs.Int64Var(&req.StartOffset, "start-offset", 0, "first offset to read in each partition")
		end := fs.Int64("end-offset", -1, "offset to stop before in each partition (default: the end when the replay starts)")
		fs.StringVar(&req.Group, "group", "", "replay only records this group dead-lettered")
		fs.StringVar(&req.TargetTopic, "target-topic", "", "write every record to this topic instead of its source topic")
		fs.BoolVar(&req.DryRun, "dry-run", false, "count only; write nothing")
		return func(ctx context.Context, e *env, args []string) error {
			switch {
			case req.GetDeadLetterTopic() == "":
				return usageErr("--topic is required")
			case len(args) > 0:
				return usageErr("unexpected arguments %q", args)
			}
			if *partition >= 0 {
				p := int32(*partition)
				req.Partition = &p
			}
			if *end >= 0 {
				req.EndOffset = end
			}
			client, err := e.admin()
			if err != nil {
				return err
			}
			sctx, cancel := e.callCtx(ctx, false)
			defer cancel()
			stream, err := client.ReplayDeadLetters(sctx, req)
			if err != nil {
				return err
			}
			var last *gatewayv1.ReplayDeadLettersResponse
			for {
				resp, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					if last != nil {
						e.progress.clear()
						fmt.Fprintf(e.stderr, "%d of %d records replayed before the failure\n", last.GetReplayed(), last.GetTotal())
					}
					return err
				}
				last = resp
				e.progress.update(resp.GetDone(), "replayed %d of %d records (%d read, %d skipped)",
					resp.GetReplayed(), resp.GetTotal(), resp.GetScanned(), resp.GetSkipped())
			}
			e.progress.done()
			if last == nil || !last.GetDone() {
				return fmt.Errorf("the replay ended without its result")
			}
			if e.json() {
				return e.printProto(last)
			}
			if req.GetDryRun() {
				fmt.Fprintln(e.stdout, "Dry run: nothing written")
			}
			t := e.table("TOTAL", "READ", "REPLAYED", "SKIPPED")
			t.row(last.GetTotal(), last.GetScanned(), last.GetReplayed(), last.GetSkipped())
			t.flush()
			return nil
		}
	},
}
