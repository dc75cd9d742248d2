package main

// End-to-end consume test with dedupe on, with the built binary: a gateway
// killed (SIGKILL) with acked records it never committed.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestWithDedupeAGatewayKilledWithAckedUncommittedRecordsDeliversThemNoMore
// kills the gateway (SIGKILL) after the app acked 300 of 500 records, with
// dedupe on and the background commit never running, so nothing acked was
// committed. The next gateway (same flags, so the same Redis and key
// prefix) must drop the acked records as duplicates instead of delivering
// them again, deliver every other record (those in flight at the kill once
// the dead gateway's claims lapse), and commit every partition to its end:
// each record processed exactly once across both runs.
func TestWithDedupeAGatewayKilledWithAckedUncommittedRecordsDeliversThemNoMore(t *testing.T) {
	t.Parallel()
	bootstrap, redisAddr := testenv.Kafka(t), testenv.Redis(t)
	const partitions, n, ackTarget = 4, 500, 300
	topic := testenv.CreateTopic(t, bootstrap, partitions)
	group := testenv.UniqueName("g")
	prefix := testenv.UniqueName("e2e") + ":"
	args := append(consumeArgs(bootstrap),
		"--dedupe.enabled=true",
		"--dedupe.redis.addrs="+redisAddr,
		"--dedupe.key_prefix="+prefix,
		"--dedupe.hold_retry=200ms",
	)
	// A claim lasts ack_timeout + max(ack_timeout/2, 5s): the short ack
	// timeout bounds how long the second gateway waits for the claims of
	// the records the first one had in flight when it died.
	req := &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE,
		MaxInFlight: 100, AckTimeout: durationpb.New(2 * time.Second)}

	p1 := startBinary(t, args...)
	ends := produceE2E(t, p1, topic, n)
	ids := map[tpo]string{}
	for _, m := range testenv.ReadTopic(t, bootstrap, topic) {
		id, ok := testenv.Header(m, "message-id")
		if !ok {
			t.Fatalf("record %s has no message-id", testenv.String(m))
		}
		ids[tpo{m.TopicPartition.Partition, int64(m.TopicPartition.Offset)}] = id
	}
	if len(ids) != n {
		t.Fatalf("topic holds %d records, want %d", len(ids), n)
	}

	delivered1, acked1, cancel1 := runUntilKill(t, p1, req, ackTarget, 50)
	defer cancel1()
	if err := p1.cmd.Process.Kill(); err != nil { // right after the last Ack returned
		t.Fatal(err)
	}
	<-p1.done
	committed := committedE2E(t, bootstrap, group, topic, partitions)
	claims, dones := dedupeKeys(t, redisAddr, prefix)
	t.Logf("after the kill: committed %v (commit_interval is 1h); in Redis %d claims and %d done markers", committed, claims, dones)

	// Run 2: an app acks everything delivered, until every record not
	// acked in run 1 is acked and every message is done in Redis (the done
	// markers of run 2's acks are written after the Ack returns); then
	// SIGTERM, whose shutdown commits. Should an acked record of run 1 come
	// again (its done marker missing, once the dead gateway's claim lapses),
	// the app acks it too, so the run still ends, and the record counts as
	// processed twice.
	p2 := startBinary(t, args...)
	app := &e2eApp{ids: ids, delivered: map[tpo]int{}, acked: map[tpo]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	go app.run(ctx, gatewayv1.NewConsumerServiceClient(dial(t, p2.addr)), req)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		keys = append(keys, prefix+"dedupe:"+group+":"+topic+":"+id) // package dedupe's key layout
	}
	var progress string
	defer func() {
		if t.Failed() {
			t.Logf("run 2: %s\n%s", progress, p2.logs)
		}
	}()
	testenv.Eventually(t, 35*time.Second, "every record to be acked in one of the runs and every message to be done in Redis", func() bool {
		app.mu.Lock()
		acked2 := maps.Clone(app.acked)
		end := app.end
		app.mu.Unlock()
		var missing []tpo
		for k := range ids {
			if !acked1[k] && !acked2[k] {
				missing = append(missing, k)
			}
		}
		sortTPOs(missing)
		notDone := len(keys)
		if vals, err := rdb.MGet(ctx, keys...).Result(); err == nil {
			notDone = 0
			for _, v := range vals {
				if s, _ := v.(string); !dedupe.IsDone(s) {
					notDone++
				}
			}
		}
		progress = fmt.Sprintf("%d records acked in neither run (first %v), %d messages not done in Redis, stream end %v",
			len(missing), missing[:min(len(missing), 10)], notDone, end)
		return len(missing) == 0 && notDone == 0
	})
	app.mu.Lock()
	delivered2, acked2, ackErr, wrongID := maps.Clone(app.delivered), maps.Clone(app.acked), app.ackErr, app.wrongID
	app.mu.Unlock()
	if ackErr != nil {
		t.Errorf("run 2: ack failed: %v", ackErr)
	}
	for _, w := range wrongID {
		t.Errorf("run 2 delivered a record with the wrong message ID: %s", w)
	}
	var again []tpo // acked in run 1, delivered in run 2
	for k := range delivered2 {
		if acked1[k] {
			again = append(again, k)
		}
	}
	// commit_interval is 1h: the commits come from the shutdown. They reach
	// the end only if the records acked in run 1 were dropped as done.
	if err := p2.stop(t); err != nil {
		t.Errorf("second gateway's exit after SIGTERM: %v\n%s", err, p2.logs)
	}
	cancel()
	final := committedE2E(t, bootstrap, group, topic, partitions)
	for part, end := range ends {
		if final[part] != end {
			t.Errorf("after the second run partition %d is committed at %d, want its end %d", part, final[part], end)
		}
	}

	// Every record processed exactly once across both runs, by message ID.
	processed := map[string]int{}
	for k := range acked1 {
		processed[ids[k]]++
	}
	for k := range acked2 {
		processed[ids[k]]++
	}
	var notOnce []string
	for _, k := range sortedTPOs(ids) {
		if c := processed[ids[k]]; c != 1 {
			notOnce = append(notOnce, fmt.Sprintf("%d@%d (message %s) %d times", k.p, k.o, ids[k], c))
		}
	}
	if len(notOnce) > 0 {
		t.Errorf("%d records not processed exactly once across both runs: %v", len(notOnce), notOnce[:min(len(notOnce), 5)])
	}
	for k, c := range delivered2 {
		if c > 1 {
			t.Errorf("record %d@%d delivered %d times in run 2", k.p, k.o, c)
		}
	}
	if len(again) > 0 {
		sortTPOs(again)
		t.Errorf("%d records acked before the kill were delivered again after the restart (dedupe should drop them), first %v",
			len(again), again[:min(len(again), 10)])
	}
	inflight := 0 // delivered but not acked in run 1: redelivered in run 2
	for k := range delivered1 {
		if !acked1[k] && delivered2[k] > 0 {
			inflight++
		}
	}
	t.Logf("run 1: %d delivered to the app, %d acked; run 2: %d delivered (%d of them seen unacked by the app in run 1), %d acked records of run 1 delivered again; committed at the end %v",
		len(delivered1), len(acked1), len(delivered2), inflight, len(again), final)
}

// runUntilKill subscribes to the first gateway and acks deliveries in the
// order they arrive, up to ackTarget-last acks. Then it goes on receiving,
// without acking, until it holds more than last unacked deliveries (so some
// records are in flight, claimed by this gateway, when it dies), acks the
// last of its ackTarget records in one call and returns as soon as that
// call has succeeded: the caller kills the gateway at once.
func runUntilKill(t *testing.T, p *process, req *gatewayv1.SubscribeRequest, ackTarget, last int) (delivered, acked map[tpo]bool, cancel context.CancelFunc) {
	t.Helper()
	client := gatewayv1.NewConsumerServiceClient(dial(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	delivered, acked = map[tpo]bool{}, map[tpo]bool{}
	var queue []*gatewayv1.Delivery // delivered, not acked, in arrival order
	ack := func(ds []*gatewayv1.Delivery) {
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.GetAckId()
		}
		if _, err := client.Ack(ctx, &gatewayv1.AckRequest{Group: req.GetGroup(), AckIds: ids}); err != nil {
			cancel()
			t.Fatalf("ack: %v\n%s", err, p.logs)
		}
		for _, d := range ds {
			acked[tpo{d.GetPartition(), d.GetOffset()}] = true
		}
	}
	for len(acked) < ackTarget-last || len(queue) <= last {
		resp, err := stream.Recv()
		if err != nil {
			cancel()
			t.Fatalf("first gateway's stream after %d acks, %d deliveries: %v\n%s", len(acked), len(delivered), err, p.logs)
		}
		for _, d := range resp.GetDeliveries().GetDeliveries() {
			delivered[tpo{d.GetPartition(), d.GetOffset()}] = true
			queue = append(queue, d)
		}
		if k := min(len(queue), ackTarget-last-len(acked)); k > 0 {
			ack(queue[:k])
			queue = queue[k:]
		}
	}
	ack(queue[:last])
	return delivered, acked, cancel
}

// dedupeKeys counts the consumer dedupe keys under prefix: claims held
// (values "c|...") and done markers ("d|...").
func dedupeKeys(t *testing.T, redisAddr, prefix string) (claims, dones int) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"dedupe:*", 1000).Iterator()
	for iter.Next(ctx) {
		v, err := rdb.Get(ctx, iter.Val()).Result()
		switch {
		case err != nil:
		case dedupe.IsDone(v):
			dones++
		case len(v) > 2 && v[:2] == "c|":
			claims++
		}
	}
	if err := iter.Err(); err != nil {
		t.Logf("scan dedupe keys: %v", err)
	}
	return claims, dones
}

// e2eApp is an app on one Subscribe stream that acks every delivery in
// batches as it arrives, and checks each delivery's message ID.
type e2eApp struct {
	ids map[tpo]string

	mu        sync.Mutex
	delivered map[tpo]int
	acked     map[tpo]bool
	wrongID   []string
	ackErr    error
	end       error
}

func (a *e2eApp) run(ctx context.Context, client gatewayv1.ConsumerServiceClient, req *gatewayv1.SubscribeRequest) {
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		a.mu.Lock()
		a.end = err
		a.mu.Unlock()
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			a.mu.Lock()
			a.end = err
			a.mu.Unlock()
			return
		}
		ds := resp.GetDeliveries().GetDeliveries()
		if len(ds) == 0 {
			continue
		}
		ackIDs := make([]string, len(ds))
		a.mu.Lock()
		for i, d := range ds {
			k := tpo{d.GetPartition(), d.GetOffset()}
			ackIDs[i] = d.GetAckId()
			a.delivered[k]++
			if want := a.ids[k]; d.GetMessageId() != want {
				a.wrongID = append(a.wrongID, fmt.Sprintf("%d@%d: %q, want %q", k.p, k.o, d.GetMessageId(), want))
			}
		}
		a.mu.Unlock()
		_, err = client.Ack(ctx, &gatewayv1.AckRequest{Group: req.GetGroup(), AckIds: ackIDs})
		a.mu.Lock()
		if err == nil {
			for _, d := range ds {
				a.acked[tpo{d.GetPartition(), d.GetOffset()}] = true
			}
		} else if ctx.Err() == nil && a.ackErr == nil {
			a.ackErr = err
		}
		a.mu.Unlock()
	}
}

func sortedTPOs[V any](m map[tpo]V) []tpo {
	s := slices.Collect(maps.Keys(m))
	sortTPOs(s)
	return s
}

func sortTPOs(s []tpo) {
	slices.SortFunc(s, func(a, b tpo) int {
		if a.p != b.p {
			return int(a.p - b.p)
		}
		return int(a.o - b.o)
	})
}
