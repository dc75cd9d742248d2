package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/dedupe"
)

// gateway-consume-none-dedupe checks after each run that every record of
// the topic got its done marker in Redis. When the gateway's dedupe keys
// came to name the source topic (a message is a group, a topic and a
// message ID), the check kept looking for the old keys: it found none of
// the markers the gateway wrote, so the scenario failed every run with
// "1000000 of 1000000 records have no done marker". The check must read
// the keys the gateway's own dedupe store writes.
func TestDoneMarkerCheckReadsTheMarkersTheGatewayWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })

	b := &bench{dedupePrefix: "gatewaybench:test:"}
	topic := &filledTopic{name: "gatewaybench.consume.test", high: []int64{3, 2}, total: 5}
	const group = "gatewaybench.gateway-consume-none-dedupe.test.0"
	store := dedupe.NewStore(rdb, b.dedupePrefix, time.Hour, dedupe.NewOwner("bench-test"))

	// What the gateway does per record: claim, then confirm after the Ack.
	// The last record is claimed and never confirmed.
	var claims []dedupe.Claim
	for p, high := range topic.high {
		for off := range high {
			id := fmt.Sprintf("%s/%d/%d", topic.name, p, off)
			claims = append(claims, dedupe.Claim{Group: group, Topic: topic.name, MessageID: id, Delivery: 1, Record: id + "/1", Lease: time.Minute})
		}
	}
	if _, err := store.Claim(ctx, claims); err != nil {
		t.Fatal(err)
	}
	var keys []dedupe.Key
	for _, c := range claims[:len(claims)-1] {
		keys = append(keys, c.Key())
	}
	if _, err := store.Confirm(ctx, keys); err != nil {
		t.Fatal(err)
	}
	err := b.checkDoneMarkers(ctx, rdb, topic, group)
	if err == nil || !strings.Contains(err.Error(), "1 of 5 records have no done marker ([1] 1 missing from offset 1)") ||
		!strings.Contains(err.Error(), "1 claims left") {
		t.Errorf("with one record claimed and not confirmed: %v, want it named, and its claim counted", err)
	}

	// A complete run: every marker is found (and deleted).
	if _, err := store.Claim(ctx, claims); err != nil {
		t.Fatal(err)
	}
	keys = keys[:0]
	for _, c := range claims {
		keys = append(keys, c.Key())
	}
	if _, err := store.Confirm(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if err := b.checkDoneMarkers(ctx, rdb, topic, group); err != nil {
		t.Errorf("every record confirmed: %v", err)
	}
	if n := len(mr.Keys()); n != 0 {
		t.Errorf("%d keys left after the check, want none: %v", n, mr.Keys())
	}
}

// The dedupe scenario's analysis says when Redis's CPU per record and what
// consuming costs without dedupe already take the machine's cores at the
// target's rate (no gateway could meet it here), and does not say so when
// they leave room.
func TestTheDedupeAnalysisSaysWhenRedisAloneRulesTheTargetOut(t *testing.T) {
	cores := float64(runtime.NumCPU())
	const noneRate, ddRate = 400000.0, 80000.0
	wall := 10 * time.Second
	perUS := func(us, rate float64) time.Duration { return time.Duration(us * rate * wall.Seconds() * 1e3) }
	none := Row{Scenario: "gateway-consume-none", Figure: "throughput", Unit: "records/s", Value: noneRate,
		CPU: CPU{Wall: wall, Gateway: perUS(3, noneRate), Bench: perUS(2, noneRate)}}
	goal := dedupeTarget * noneRate
	for _, tc := range []struct {
		redisUS float64
		out     bool
	}{
		{redisUS: cores/goal*1e6 - 5 + 1, out: true},  // Redis + 5 µs of consuming exceed the cores
		{redisUS: cores/goal*1e6 - 5 - 1, out: false}, // they leave a µs per record
	} {
		dd := Row{Scenario: "gateway-consume-none-dedupe", Figure: "throughput", Unit: "records/s", Value: ddRate,
			CPU: CPU{Wall: wall, Gateway: perUS(9, ddRate), Bench: perUS(2, ddRate), Redis: perUS(tc.redisUS, ddRate)}}
		r := &Report{Rows: []Row{none, dd}}
		var line string
		for _, l := range r.analysis() {
			if strings.HasPrefix(l, "gateway-consume-none-dedupe:") {
				line = l
			}
		}
		want := fmt.Sprintf("Redis alone would need %.2f cores at this run's %.1f µs per record", tc.redisUS*goal/1e6, tc.redisUS)
		if !strings.Contains(line, want) {
			t.Errorf("Redis at %.1f µs per record: %q, want %q", tc.redisUS, line, want)
		}
		if got := strings.Contains(line, "cannot be met on this machine"); got != tc.out {
			t.Errorf("Redis at %.1f µs per record: says the target cannot be met: %v, want %v (%q)", tc.redisUS, got, tc.out, line)
		}
	}
}

// Redis's commandstats are taken per command before and after each run:
// the report gives the calls and Redis's own time per record of each
// command the protocol sends, a script's including the commands it runs.
func TestRedisCommandStatsArePerRecordOverTheRuns(t *testing.T) {
	stats := func(set, get, evalsha [2]int64) redisCounts {
		return redisCounts{calls: map[string]int64{"set": set[0], "get": get[0], "evalsha": evalsha[0]},
			usec: map[string]int64{"set": set[1], "get": get[1], "evalsha": evalsha[1]}}
	}
	var total redisCounts
	// Two runs of 1000 records: a SET NX per claim, a script per 100
	// confirms running a GET and a SET per record.
	total.add(stats([2]int64{5, 10}, [2]int64{0, 0}, [2]int64{1, 40}), stats([2]int64{2005, 4010}, [2]int64{1000, 1000}, [2]int64{11, 5040}))
	total.add(stats([2]int64{2005, 4010}, [2]int64{1000, 1000}, [2]int64{11, 5040}), stats([2]int64{4005, 8010}, [2]int64{2000, 2000}, [2]int64{21, 10040}))
	got := total.perRecord(2000)
	want := "SET 2.00 calls, 4.00 µs; GET 1.00 calls, 1.00 µs; EVALSHA (scripts, their GET and SET included) 0.01 calls, 5.00 µs"
	if got != want {
		t.Errorf("per record:\n got %q\nwant %q", got, want)
	}
}
