package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// limitsDocument is the limits gateway's document: one rule matching every
// call of the bench, with records and bytes limits far above any rate this
// machine reaches, so each batch goes through the full admission (ACL,
// rule match, two token-bucket reservations) and is never delayed.
const limitsDocument = `rules:
- name: bench
  identity: gatewaybench
  records: {per_second: 1000000000, burst: 1000000000}
  bytes: {per_second: 1000000000000, burst: 1000000000}
  action: wait
  allow: [produce, consume]
`

// limitsFlags are the flags of the limits gateway beyond the throughput
// preset's; path is the limits document.
func limitsFlags(path string) []string {
	return []string{"--limits.file=" + path, "--identity.service=gatewaybench"}
}

// streamLimited measures what the limiter costs: stream-100 against a
// gateway whose limits admit everything, alternated run by run with the
// same scenario against the plain throughput gateway, in one run of the
// bench. Target: ≥ 0.95× (the limiter costs under 5%).
func (b *bench) streamLimited(ctx context.Context) ([]Row, error) {
	const name = "stream-100-limited"
	path := filepath.Join(b.logDir, "limits.yaml")
	if err := os.WriteFile(path, []byte(limitsDocument), 0o644); err != nil {
		return nil, err
	}
	plain, err := b.gateway(ctx, "throughput")
	if err != nil {
		return nil, err
	}
	limited, err := b.gatewayWith(ctx, gatewaySpec{name: "throughput-limits", preset: "throughput", flags: limitsFlags(path)})
	if err != nil {
		return nil, err
	}
	topic, err := b.createTopic(ctx, name)
	if err != nil {
		return nil, err
	}
	cfg := streamConfig{topic: topic.name, recs: protoRecords(100), batchSize: 100, window: b.opts.window100, streams: b.opts.streams}
	for _, gw := range []*gatewayProc{plain, limited} {
		warm, err := runStream(ctx, gw.client, cfg, b.opts.warmupRecords)
		topic.acked += warm.ok
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	var plainRuns, limitedRuns []measurement
	var failed int64
	firstErr := ""
	for range b.opts.repeats {
		for i, gw := range []*gatewayProc{plain, limited} {
			mark := b.markCPU(gw)
			res, err := runStream(ctx, gw.client, cfg, b.opts.records)
			cpu := mark.since()
			topic.acked += res.ok
			failed += res.failed
			firstErr = firstNonEmpty(firstErr, res.firstErr)
			if err != nil {
				return nil, err
			}
			m := measurement{records: res.records, elapsed: res.elapsed, cpu: cpu}
			if i == 0 {
				plainRuns = append(plainRuns, m)
			} else {
				limitedRuns = append(limitedRuns, m)
			}
		}
	}
	pm, _ := median(plainRuns)
	lm, spread := median(limitedRuns)
	row := Row{
		Figure: "throughput", Value: lm.rate(), Unit: "records/s",
		Detail: mbps(int(lm.records), lm.elapsed), Failures: failed, CPU: lm.cpu,
		Note: fmt.Sprintf("stream-100 through a gateway with a limits document whose one rule admits everything (records and bytes buckets, ACL on); %s records, %d streams × %d batches outstanding, throughput preset, %s",
			thousands(lm.records), cfg.streams, cfg.window, spread),
	}
	if b.directRate > 0 {
		row.Ratio = row.Value / b.directRate
	}
	rows := []Row{row}
	if r := lm.rate() / pm.rate(); failed == 0 {
		rows = append(rows, Row{
			Figure: "vs no limiter", Value: r, Unit: "×",
			Target: &Target{Text: "≥ 0.95× without limits", Met: r >= 0.95},
			Note: fmt.Sprintf("%s records/s with limits ÷ %s records/s of the same stream-100 runs against the gateway without limits, alternated run by run",
				thousands(int64(lm.rate()+0.5)), thousands(int64(pm.rate()+0.5))),
		})
	}
	if failed > 0 {
		row.Note += "; first failure: " + firstErr
		return rows, errFailures
	}
	return rows, nil
}
