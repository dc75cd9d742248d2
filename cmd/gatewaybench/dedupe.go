package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/rediskeys"
)

// The dedupe scenario: gateway-consume-none with consumer-side dedupe on.
//
// Its gateway has the flags of gateway-consume-none plus dedupe, with a key
// prefix unique to this bench run (b.dedupePrefix): a done marker left by
// an earlier run would make its record a duplicate, never delivered, and
// the run would measure duplicate drops (and miss records). Every run also
// has a fresh group, and the keys of a run are
//
//	<prefix>dedupe:<group>:<topic>:<topic>/<partition>/<offset>
//
// (a message is a group, a source topic and a message ID; the records of
// the consume topic, written by a direct producer, carry no message-id
// header, so the gateway identifies them by topic, partition and offset). After a run has committed the whole topic, every record must
// have its done marker ("d|..."); the run's keys are then deleted, so that each
// run starts with the same Redis.

// dedupeDoneTTL is the done TTL of the dedupe gateway. The markers are
// deleted after each run anyway; the TTL only bounds what a bench that died
// midway leaves in Redis (about 200 bytes per record). The TTL is an
// argument of the same script call whatever its value, so it costs nothing.
const dedupeDoneTTL = time.Hour

// redisClient returns the bench's Redis client, connecting on first use.
func (b *bench) redisClient(ctx context.Context) (*redis.Client, error) {
	if b.opts.redisAddr == "" {
		return nil, errors.New("no Redis: pass --redis or set GATEWAY_TEST_REDIS (scripts/bench.sh does both)")
	}
	if b.rdb == nil {
		b.rdb = redis.NewClient(&redis.Options{Addr: b.opts.redisAddr, ReadTimeout: 10 * time.Second})
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.rdb.Ping(cctx).Err(); err != nil {
		return nil, fmt.Errorf("redis %s: %w", b.opts.redisAddr, err)
	}
	return b.rdb, nil
}

// gatewayConsumeDedupe is gateway-consume-none with dedupe on, on a gateway
// of its own: the same topic, streams, max_in_flight, acker and consumer
// flags. It returns the throughput row (ratio to direct-consume) and the
// ratio to gateway-consume-none, whose target is ≥ 0.8×.
func (b *bench) gatewayConsumeDedupe(ctx context.Context) ([]Row, error) {
	const name = "gateway-consume-none-dedupe"
	rdb, err := b.redisClient(ctx)
	if err != nil {
		return nil, err
	}
	t, err := b.consumeTopic(ctx)
	if err != nil {
		return nil, err
	}
	spec := b.consumeGatewaySpec("consume-none-dedupe", b.opts.consumeBuffered)
	spec.flags = append(spec.flags, b.dedupeFlags()...)
	spec.usesRedis = true
	gw, err := b.gatewayWith(ctx, spec)
	if err != nil {
		return nil, err
	}
	if b.opts.redisPID > 0 && procCPU(b.opts.redisPID) == 0 {
		fmt.Fprintf(os.Stderr, "   redis pid %d: no CPU times readable; Redis CPU not reported\n", b.opts.redisPID)
	}
	cfg := consumeClientConfig{ordering: gatewayv1.Ordering_ORDERING_NONE, streams: b.opts.consumeStreams,
		maxInFlight: b.opts.consumeInFlight, ackMode: b.opts.consumeAck}

	// Redis script calls and commands per record, over the verified runs:
	// what Redis processed from just before a run's Subscribe until its
	// group committed the whole topic (so every done marker was written).
	var before, total redisCounts
	var cmdRecords int64
	row, err := b.consumeRuns(ctx, name, t, gw, func(run int) (consumeResult, string, error) {
		group := b.newGroupName(name, run)
		before = redisCounters(ctx, rdb)
		res, err := b.gatewayConsumeRun(ctx, gw, t, group, cfg)
		if res.dups > 0 {
			// What dedupe is there to prevent (the other scenarios only count them).
			res.firstErr = firstNonEmpty(res.firstErr, fmt.Sprintf("%d records delivered more than once with dedupe on", res.dups))
		}
		return res, group, err
	}, func(group string) error {
		if after := redisCounters(ctx, rdb); before.commands > 0 && after.commands > before.commands {
			total.add(before, after)
			cmdRecords += t.total
		}
		return b.checkDoneMarkers(ctx, rdb, t, group)
	})
	// Whatever the runs left (a run that was not clean is not verified).
	if n, derr := rediskeys.Delete(ctx, rdb, b.dedupePrefix+"*"); derr != nil {
		fmt.Fprintf(os.Stderr, "   delete redis keys %s*: %v (%d deleted)\n", b.dedupePrefix, derr, n)
	}

	hwm, _ := procStatusKB(gw.pid(), "VmHWM")
	dd := fmt.Sprintf("dedupe on (Redis %s, key prefix %s, done TTL %s): a claim before delivery and a done marker after the Ack, per record",
		b.opts.redisAddr, b.dedupePrefix, dedupeDoneTTL)
	if cmdRecords > 0 {
		dd += fmt.Sprintf("; per record %.2f Redis script calls (%.2f commands, counting those the scripts run)",
			float64(total.scripts)/float64(cmdRecords), float64(total.commands)/float64(cmdRecords))
		if per := total.perRecord(cmdRecords); per != "" {
			dd += "; Redis's own time in them per record (INFO commandstats): " + per
		}
	}
	if n := gw.redisDown.Load(); n > 0 {
		dd += fmt.Sprintf("; the gateway logged \"redis unavailable for dedupe\" %d times (see its log)", n)
	}
	row.Note = fmt.Sprintf("%s, %s; gateway max_buffered_records=%d; %s; %s; every run's done markers checked in Redis "+
		"(one per record of the topic), then deleted; gateway VmHWM %.0f MiB",
		cfg.ordering, cfg, b.opts.consumeBuffered, dd, row.Note, float64(hwm)/1024)
	if b.directConsumeRate > 0 && row.Value > 0 {
		row.Ratio = row.Value / b.directConsumeRate
	}
	rows := []Row{row}
	if b.consumeNoneRate > 0 && row.Value > 0 && row.Failures == 0 {
		r := row.Value / b.consumeNoneRate
		rows = append(rows, Row{
			Figure: "vs dedupe off", Value: r, Unit: "×",
			Target: &Target{Text: fmt.Sprintf("≥ %.2f× gateway-consume-none", dedupeTarget), Met: r >= dedupeTarget},
			Note: fmt.Sprintf("%s records/s with dedupe ÷ %s records/s of gateway-consume-none (dedupe off), same run, topic and client settings",
				thousands(int64(row.Value+0.5)), thousands(int64(b.consumeNoneRate+0.5))),
		})
	}
	return rows, err
}

// dedupeFlags are the flags the dedupe gateway has beyond those of
// gateway-consume-none.
func (b *bench) dedupeFlags() []string {
	return []string{
		"--dedupe.enabled=true",
		"--dedupe.redis.addrs=" + b.opts.redisAddr,
		"--dedupe.key_prefix=" + b.dedupePrefix,
		"--dedupe.done_ttl=" + dedupeDoneTTL.String(),
	}
}

// checkDoneMarkers checks that every record of t has a done marker of
// group, and nothing else of the group and topic is left (a claim still
// held), then deletes those keys.
func (b *bench) checkDoneMarkers(ctx context.Context, rdb *redis.Client, t *filledTopic, group string) error {
	base := b.dedupePrefix + "dedupe:" + dedupeNameEscaper.Replace(group) + ":" + dedupeNameEscaper.Replace(t.name) + ":"
	cov := newCoverage(t, nil)
	var claims, others int64
	var parts []int32
	var offs []int64
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, base+"*", 10_000).Result()
		if err != nil {
			return fmt.Errorf("scan %s*: %w", base, err)
		}
		if len(keys) > 0 {
			vals, err := rdb.MGet(ctx, keys...).Result()
			if err != nil {
				return fmt.Errorf("read done markers: %w", err)
			}
			parts, offs = parts[:0], offs[:0]
			for i, k := range keys {
				v, ok := vals[i].(string)
				switch {
				case vals[i] == nil:
					// Deleted already: SCAN returned it again.
				case !ok || !dedupe.IsDone(v):
					claims++
				default:
					p, off, ok := parseRecordID(strings.TrimPrefix(k, base), t.name)
					if !ok {
						others++
						continue
					}
					parts, offs = append(parts, p), append(offs, off)
				}
			}
			cov.add(len(parts), func(i int) (int32, int64) { return parts[i], offs[i] })
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("delete done markers: %w", err)
			}
		}
		cursor = next
		if cursor == 0 {
			break
		}
	}
	var problems []string
	if !cov.complete() {
		problems = append(problems, fmt.Sprintf("%d of %d records have no done marker (%s)", cov.remaining, t.total, cov.missingText()))
	}
	if claims > 0 {
		problems = append(problems, fmt.Sprintf("%d claims left (not done markers)", claims))
	}
	if n := others + cov.outside; n > 0 {
		problems = append(problems, fmt.Sprintf("%d done markers of records not in the topic", n))
	}
	if len(problems) > 0 {
		return fmt.Errorf("redis, group %s: %s", group, strings.Join(problems, "; "))
	}
	return nil
}

// dedupeNameEscaper escapes a group or topic name in a dedupe key, as the
// gateway's dedupe store does.
var dedupeNameEscaper = strings.NewReplacer("%", "%25", ":", "%3A")

// parseRecordID parses "<topic>/<partition>/<offset>", the message ID the
// gateway gives a record without a message-id header.
func parseRecordID(id, topic string) (int32, int64, bool) {
	rest, ok := strings.CutPrefix(id, topic+"/")
	if !ok {
		return 0, 0, false
	}
	ps, offs, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	p, err1 := strconv.ParseInt(ps, 10, 32)
	off, err2 := strconv.ParseInt(offs, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return int32(p), off, true
}

// deleteRedisKeys deletes whatever the run left under its key prefix (the
// gateways are stopped by then).
func (b *bench) deleteRedisKeys() {
	if b.rdb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rediskeys.Delete(ctx, b.rdb, b.dedupePrefix+"*"); err != nil {
		fmt.Fprintf(os.Stderr, "gatewaybench: delete redis keys %s*: %v\n", b.dedupePrefix, err)
	}
}

// redisCounts are counters of Redis's INFO.
type redisCounts struct {
	commands int64 // total_commands_processed (commands run by scripts included)
	scripts  int64 // calls of EVALSHA and EVAL
	// calls and usec per command (commandstats): a script's usec include
	// those of the commands it runs, which are also counted on their own.
	calls, usec map[string]int64
}

// add adds the counters of after less those of before to c.
func (c *redisCounts) add(before, after redisCounts) {
	c.commands += after.commands - before.commands
	c.scripts += after.scripts - before.scripts
	if c.calls == nil {
		c.calls, c.usec = map[string]int64{}, map[string]int64{}
	}
	for name, n := range after.calls {
		c.calls[name] += n - before.calls[name]
		c.usec[name] += after.usec[name] - before.usec[name]
	}
}

// perRecord says, for the commands the dedupe protocol sends, how many
// Redis ran per record and the time it spent in them per record (its own
// measure, commandstats).
func (c redisCounts) perRecord(records int64) string {
	var parts []string
	for _, name := range []string{"set", "get", "evalsha", "del", "pexpire"} {
		if c.calls[name] <= 0 || records <= 0 {
			continue
		}
		what := strings.ToUpper(name)
		if name == "evalsha" {
			what = "EVALSHA (scripts, their GET and SET included)"
		}
		parts = append(parts, fmt.Sprintf("%s %.2f calls, %.2f µs", what,
			float64(c.calls[name])/float64(records), float64(c.usec[name])/float64(records)))
	}
	return strings.Join(parts, "; ")
}

// redisCounters reads the counters; zero when INFO fails.
func redisCounters(ctx context.Context, rdb *redis.Client) redisCounts {
	var c redisCounts
	info, err := rdb.Info(ctx, "stats", "commandstats").Result()
	if err != nil {
		return c
	}
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			c.commands, _ = strconv.ParseInt(v, 10, 64)
			continue
		}
		// cmdstat_evalsha:calls=123,usec=456,usec_per_call=…
		name, rest, ok := strings.Cut(line, ":")
		cmd, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		var calls, usec int64
		for field := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if c.calls == nil {
			c.calls, c.usec = map[string]int64{}, map[string]int64{}
		}
		c.calls[cmd], c.usec[cmd] = calls, usec
		if cmd == "evalsha" || cmd == "eval" {
			c.scripts += calls
		}
	}
	return c
}
