package main

import (
	"context"
	"fmt"
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
