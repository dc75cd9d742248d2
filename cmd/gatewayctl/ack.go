package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"strings"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

var ackCmd = &command{
	name:    "ack",
	args:    "ACK_ID... | -",
	summary: "acknowledge records by ack ID (- reads IDs from stdin, one per line)",
	help: `
Ack IDs come from Delivery.ack_id, for example from "gatewayctl tail
--no-ack". An ack is valid while the gateway owns the record's partition;
all IDs are applied or none.`,
	setup: func(fs *flag.FlagSet) runFunc {
		group := fs.String("group", "", "consumer group the records were delivered for (required)")
		return func(ctx context.Context, e *env, args []string) error {
			if *group == "" {
				return usageErr("--group is required")
			}
			ids := args
			if len(args) == 1 && args[0] == "-" {
				ids = nil
				sc := bufio.NewScanner(e.stdin)
				for sc.Scan() {
					if id := strings.TrimSpace(sc.Text()); id != "" {
						ids = append(ids, id)
					}
				}
				if err := sc.Err(); err != nil {
					return fmt.Errorf("read ack IDs: %w", err)
				}
			}
			if len(ids) == 0 {
				return usageErr("no ack IDs given")
			}
			client, err := e.consumer()
			if err != nil {
				return err
			}
			cctx, cancel := e.callCtx(ctx, true)
			defer cancel()
			if _, err := client.Ack(cctx, &gatewayv1.AckRequest{Group: *group, AckIds: ids}); err != nil {
				return err
			}
			if e.json() {
				return e.printJSONLine(map[string]int{"acknowledged": len(ids)})
			}
			fmt.Fprintf(e.stdout, "%d records acknowledged\n", len(ids))
			return nil
		}
	},
}
