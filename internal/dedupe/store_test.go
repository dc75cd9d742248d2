package dedupe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/testenv"
)

const week = 168 * time.Hour

func TestClaimOutcomes(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		stores := map[string]*Store{
			"a":    NewStore(rdb, prefix, week, "gw-a"),
			"b":    NewStore(rdb, prefix, week, "gw-b"),
			"gw":   NewStore(rdb, prefix, week, "gw"),
			"gw|1": NewStore(rdb, prefix, week, "gw|1"),
		}
		type step struct {
			owner   string
			attempt uint32
			record  string
			confirm bool // confirm after claiming
		}
		tests := []struct {
			name  string
			prior []step
			claim step
			want  Outcome
		}{
			{name: "free", claim: step{"a", 1, "t/0/1", false}, want: Claimed},
			{name: "done", prior: []step{{"a", 1, "t/0/1", true}}, claim: step{"a", 2, "t/0/1", false}, want: Duplicate},
			{name: "done by another owner", prior: []step{{"a", 1, "t/0/1", true}}, claim: step{"b", 1, "t/0/1", false}, want: Duplicate},
			{name: "held by another owner", prior: []step{{"a", 1, "t/0/1", false}}, claim: step{"b", 1, "t/0/1", false}, want: HeldElsewhere},
			{name: "own earlier attempt taken over", prior: []step{{"a", 1, "t/0/1", false}}, claim: step{"a", 2, "t/0/1", false}, want: Claimed},
			{name: "own same claim again", prior: []step{{"a", 3, "t/0/1", false}}, claim: step{"a", 3, "t/0/1", false}, want: Claimed},
			{name: "own claim for another record", prior: []step{{"a", 1, "t/0/1", false}}, claim: step{"a", 1, "t/0/2", false}, want: HeldElsewhere},
			{name: "owner with a bar is not a prefix", prior: []step{{"gw|1", 5, "r", false}}, claim: step{"gw", 1, "5|r", false}, want: HeldElsewhere},
			{name: "empty record matches only empty", prior: []step{{"a", 1, "", false}}, claim: step{"a", 2, "", false}, want: Claimed},
			{name: "empty record vs record", prior: []step{{"a", 1, "", false}}, claim: step{"a", 2, "x", false}, want: HeldElsewhere},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				msg := "m-" + strconv.Itoa(int(time.Now().UnixNano()))
				mk := func(s step) Claim {
					return Claim{Group: "g", Topic: "t", MessageID: msg, Delivery: s.attempt, Record: s.record, Lease: time.Minute}
				}
				for _, p := range tc.prior {
					if got := claim1(t, stores[p.owner], mk(p)); got != Claimed {
						t.Fatalf("prior claim %+v: %v", p, got)
					}
					if p.confirm && !confirm1(t, stores[p.owner], mk(p).Key()) {
						t.Fatalf("prior confirm %+v: false", p)
					}
				}
				if got := claim1(t, stores[tc.claim.owner], mk(tc.claim)); got != tc.want {
					t.Fatalf("claim %+v: got %v, want %v", tc.claim, got, tc.want)
				}
				if tc.want == Claimed {
					// The key now holds exactly the new claim: it confirms.
					if !confirm1(t, stores[tc.claim.owner], mk(tc.claim).Key()) {
						t.Fatalf("confirm of the new claim: false")
					}
				}
			})
		}
	})
}

func TestTakeoverReplacesAttemptAndLease(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		first := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/7", Lease: 100 * time.Millisecond}
		second := first
		second.Delivery, second.Lease = 2, time.Minute
		if got := claim1(t, a, first); got != Claimed {
			t.Fatal(got)
		}
		if got := claim1(t, a, second); got != Claimed {
			t.Fatal(got)
		}
		// A late Release of attempt 1 leaves attempt 2's claim alone.
		release1(t, a, first.Key())
		time.Sleep(300 * time.Millisecond) // past the first lease
		if got := claim1(t, b, Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Minute}); got != HeldElsewhere {
			t.Fatalf("other owner after the first lease: got %v, want held (the takeover's lease holds)", got)
		}
		if !confirm1(t, a, second.Key()) {
			t.Fatal("confirm attempt 2: false")
		}
	})
}

func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		ca := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/1", Lease: 300 * time.Millisecond}
		cb := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/3/9", Lease: time.Minute}
		start := time.Now()
		if got := claim1(t, a, ca); got != Claimed {
			t.Fatal(got)
		}
		// Under load (-race, -cpu 1) the lease may pass before b asks.
		if got := claim1(t, b, cb); got != HeldElsewhere && time.Since(start) < ca.Lease {
			t.Fatalf("b before expiry: %v", got)
		}
		time.Sleep(2 * ca.Lease)
		if got := claim1(t, b, cb); got != Claimed {
			t.Fatalf("b after a's lease expired: %v", got)
		}
		// a finished late: its Confirm finds b's claim and reports the
		// duplicate delivery, leaving b's claim in place.
		if confirm1(t, a, ca.Key()) {
			t.Fatal("a's late confirm over b's claim: true")
		}
		if !confirm1(t, b, cb.Key()) {
			t.Fatal("b's confirm: false")
		}
		if got := claim1(t, a, Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/1", Lease: time.Minute}); got != Duplicate {
			t.Fatalf("after b's confirm: %v", got)
		}
	})
}

// TestLapsedConfirmAfterAnotherDeliverysConfirm is finding 14 of the
// reliability report: a's lease lapses while its confirm waits (Redis was
// down), b claims, delivers and confirms first; a's confirm then finds the
// message done, but by b, and must not count as a's.
func TestLapsedConfirmAfterAnotherDeliverysConfirm(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		ca := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/1/1", Lease: time.Minute}
		cb := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/1/2", Lease: time.Minute}
		if got := claim1(t, a, ca); got != Claimed {
			t.Fatal(got)
		}
		// a's lease lapses (the key expires, as after a Redis outage
		// longer than the lease).
		if err := rdb.Del(testCtx(t), a.claimKey("g", "t", "m")).Err(); err != nil {
			t.Fatal(err)
		}
		if got := claim1(t, b, cb); got != Claimed {
			t.Fatalf("b after a's lease lapsed: %v", got)
		}
		if !confirm1(t, b, cb.Key()) {
			t.Fatal("b's confirm: false")
		}
		if confirm1(t, a, ca.Key()) {
			t.Fatal("a's confirm after b's: true, so both acks of the message would answer OK")
		}
		// b's confirm, run again (its answer lost), still succeeds, and the
		// marker is b's.
		if !confirm1(t, b, cb.Key()) {
			t.Fatal("b's repeated confirm: false")
		}
		v := rdb.Get(testCtx(t), a.claimKey("g", "t", "m")).Val()
		if !IsDone(v) || v != doneValue(b.claimValue(cb.Delivery, cb.Record)) {
			t.Fatalf("the key holds %q, want b's done marker", v)
		}
	})
}

func TestDoneValue(t *testing.T) {
	a := doneValue("c|gw-a|1|t/0/1/1")
	if !IsDone(a) || len(a) != 18 || a[:2] != "d|" {
		t.Fatalf("done marker %q, want d| and 16 hex digits", a)
	}
	if a != doneValue("c|gw-a|1|t/0/1/1") {
		t.Fatal("the done marker of one claim changes")
	}
	for _, other := range []string{"c|gw-b|1|t/0/1/1", "c|gw-a|2|t/0/1/1", "c|gw-a|1|t/0/1/2"} {
		if doneValue(other) == a {
			t.Fatalf("%q has the done marker of another claim", other)
		}
	}
	if IsDone("c|gw-a|1|t/0/1/1") || IsDone("") {
		t.Fatal("a claim or nothing is done")
	}
}

// TestExtendMovesOnlyThisDeliverysLease: an extension holds the claim past
// its first lease, never shortens it, and does nothing for a claim that is
// not this delivery's (another delivery, another owner, done, or lapsed).
func TestExtendMovesOnlyThisDeliverysLease(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		extend1 := func(s *Store, k Key, lease time.Duration) bool {
			t.Helper()
			ok, err := s.Extend(ctx, []Extension{{Key: k, Lease: lease}})
			if err != nil || len(ok) != 1 {
				t.Fatalf("Extend: %v, %v", ok, err)
			}
			return ok[0]
		}
		ca := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/1", Lease: 300 * time.Millisecond}
		cb := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/3/9", Lease: time.Minute}
		if got := claim1(t, a, ca); got != Claimed {
			t.Fatal(got)
		}
		if !extend1(a, ca.Key(), time.Minute) {
			t.Fatal("a's extension of its own claim: false")
		}
		if !extend1(a, ca.Key(), time.Millisecond) {
			t.Fatal("a's shorter extension of its own claim: false")
		}
		if ttl := rdb.PTTL(ctx, a.claimKey("g", "t", "m")).Val(); ttl < 30*time.Second {
			t.Fatalf("after extending to 1 min and then to 1 ms, the claim lives %v more", ttl)
		}
		time.Sleep(2 * ca.Lease)
		if got := claim1(t, b, cb); got != HeldElsewhere {
			t.Fatalf("b after a's first lease, which a extended: %v", got)
		}
		other := ca.Key()
		other.Delivery++
		if extend1(a, other, time.Minute) {
			t.Fatal("an extension of another delivery's claim: true")
		}
		if extend1(b, ca.Key(), time.Minute) {
			t.Fatal("an extension by another owner: true")
		}
		if !confirm1(t, a, ca.Key()) {
			t.Fatal("a's confirm: false")
		}
		if extend1(a, ca.Key(), time.Minute) {
			t.Fatal("an extension of a done message: true")
		}
		if v := rdb.Get(ctx, a.claimKey("g", "t", "m")).Val(); v != doneValue(a.claimValue(ca.Delivery, ca.Record)) {
			t.Fatalf("the done marker became %q", v)
		}

		// A lapsed claim is not brought back.
		cl := Claim{Group: "g", Topic: "t", MessageID: "lapsed", Delivery: 1, Record: "t/0/2", Lease: 50 * time.Millisecond}
		if got := claim1(t, a, cl); got != Claimed {
			t.Fatal(got)
		}
		time.Sleep(200 * time.Millisecond)
		if extend1(a, cl.Key(), time.Minute) {
			t.Fatal("an extension of a lapsed claim: true")
		}
		if n := rdb.Exists(ctx, a.claimKey("g", "t", "lapsed")).Val(); n != 0 {
			t.Fatal("the lapsed claim's key exists again")
		}
	})
}

func TestConfirm(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		own := Claim{Group: "g", Topic: "t", MessageID: "", Delivery: 2, Record: "t/0/1", Lease: time.Minute}
		tests := []struct {
			name  string
			prior func(t *testing.T, c Claim) // sets the key's state
			key   func(c Claim) Key           // what a confirms
			want  bool
			after Outcome // what a new claim by b then gets
		}{
			{
				name:  "own claim",
				prior: func(t *testing.T, c Claim) { claim1(t, a, c) },
				key:   Claim.Key,
				want:  true, after: Duplicate,
			},
			{
				name:  "absent key",
				prior: func(*testing.T, Claim) {},
				key:   Claim.Key,
				want:  true, after: Duplicate,
			},
			{
				name:  "already done",
				prior: func(t *testing.T, c Claim) { claim1(t, a, c); confirm1(t, a, c.Key()) },
				key:   Claim.Key,
				want:  true, after: Duplicate,
			},
			{
				name: "another owner's claim",
				prior: func(t *testing.T, c Claim) {
					c.Record = "t/5/5"
					claim1(t, b, c)
				},
				key:  Claim.Key,
				want: false, after: Claimed, // b's own claim again (same record): still b's, not done
			},
			{
				name:  "own claim of another attempt",
				prior: func(t *testing.T, c Claim) { c.Delivery = 3; claim1(t, a, c) },
				key:   Claim.Key,
				want:  false, after: HeldElsewhere,
			},
			// Finding 14: the marker of another delivery is not this
			// delivery's confirm; the message stays done.
			{
				name: "done by another owner",
				prior: func(t *testing.T, c Claim) {
					c.Record = "t/5/5"
					claim1(t, b, c)
					confirm1(t, b, c.Key())
				},
				key:  Claim.Key,
				want: false, after: Duplicate,
			},
			{
				name:  "done by another attempt of the same owner",
				prior: func(t *testing.T, c Claim) { c.Delivery = 3; claim1(t, a, c); confirm1(t, a, c.Key()) },
				key:   Claim.Key,
				want:  false, after: Duplicate,
			},
			{
				name: "done by another record of the same owner and attempt",
				prior: func(t *testing.T, c Claim) {
					c.Record = "t/0/7"
					claim1(t, a, c)
					confirm1(t, a, c.Key())
				},
				key:  Claim.Key,
				want: false, after: Duplicate,
			},
			{
				name: "done marker of an older gateway",
				prior: func(t *testing.T, c Claim) {
					if err := rdb.Set(testCtx(t), a.claimKey(c.Group, "t", c.MessageID), "d", time.Minute).Err(); err != nil {
						t.Fatal(err)
					}
				},
				key:  Claim.Key,
				want: false, after: Duplicate,
			},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				c := own
				c.MessageID = "confirm-" + tc.name
				tc.prior(t, c)
				if got := confirm1(t, a, tc.key(c)); got != tc.want {
					t.Fatalf("confirm: got %v, want %v", got, tc.want)
				}
				cb := Claim{Group: c.Group, Topic: "t", MessageID: c.MessageID, Delivery: 1, Record: "t/5/5", Lease: time.Minute}
				if got := claim1(t, b, cb); got != tc.after {
					t.Fatalf("claim by b afterwards: got %v, want %v", got, tc.after)
				}
				if tc.want {
					ttl, err := rdb.PTTL(testCtx(t), a.claimKey(c.Group, "t", c.MessageID)).Result()
					if err != nil {
						t.Fatal(err)
					}
					if ttl < week-time.Minute || ttl > week {
						t.Fatalf("done TTL %v, want about %v", ttl, week)
					}
				}
			})
		}
	})
}

func TestRelease(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		b := NewStore(rdb, prefix, week, "gw-b")
		base := Claim{Group: "g", Topic: "t", Delivery: 1, Record: "t/0/1", Lease: time.Minute}
		tests := []struct {
			name    string
			release func(t *testing.T, c Claim) // after a claimed c
			want    Outcome                     // b's claim afterwards
		}{
			{"own claim", func(t *testing.T, c Claim) { release1(t, a, c.Key()) }, Claimed},
			{"other attempt", func(t *testing.T, c Claim) { c.Delivery++; release1(t, a, c.Key()) }, HeldElsewhere},
			{"other record", func(t *testing.T, c Claim) { c.Record = "t/0/2"; release1(t, a, c.Key()) }, HeldElsewhere},
			{"other owner", func(t *testing.T, c Claim) { release1(t, b, c.Key()) }, HeldElsewhere},
			{"after done", func(t *testing.T, c Claim) { confirm1(t, a, c.Key()); release1(t, a, c.Key()) }, Duplicate},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				c := base
				c.MessageID = "release-" + tc.name
				if got := claim1(t, a, c); got != Claimed {
					t.Fatal(got)
				}
				tc.release(t, c)
				if got := claim1(t, b, Claim{Group: "g", Topic: "t", MessageID: c.MessageID, Delivery: 1, Lease: time.Minute}); got != tc.want {
					t.Fatalf("b afterwards: got %v, want %v", got, tc.want)
				}
			})
		}
	})
}

// Finding 12 of the review: keys were <group>:<messageID>, so a message ID
// seen in one topic made the group drop a record of another topic that
// reused it as a duplicate. A message is a (topic, message ID) per group.
func TestGroupsAndTopicsAreNamespaced(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		a := NewStore(rdb, prefix, week, "gw-a")
		ctx := testCtx(t)
		items := []Claim{
			{Group: "g1", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Minute},
			{Group: "g2", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Minute},
			// Without escaping, both would be "<prefix>dedupe:a:b:c".
			{Group: "a:b", Topic: "t", MessageID: "c", Delivery: 1, Lease: time.Minute},
			{Group: "a", Topic: "t", MessageID: "b:c", Delivery: 1, Lease: time.Minute},
			{Group: "a%3Ab", Topic: "t", MessageID: "c", Delivery: 1, Lease: time.Minute},
		}
		out, err := a.Claim(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range out {
			if o != Claimed {
				t.Errorf("%+v: %v", items[i], o)
			}
		}
		if ok := confirm1(t, a, items[0].Key()); !ok {
			t.Fatal("confirm g1")
		}
		out, err = a.Claim(ctx, []Claim{
			{Group: "g1", Topic: "t", MessageID: "m", Delivery: 1, Record: "other", Lease: time.Minute},
			{Group: "g2", Topic: "t", MessageID: "m", Delivery: 1, Record: "other", Lease: time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
		if out[0] != Duplicate || out[1] != HeldElsewhere {
			t.Fatalf("after confirming in g1: %v", out)
		}
		// The same message ID in another topic of the same group is another
		// message: not a duplicate of the one done in topic t.
		if got := claim1(t, a, Claim{Group: "g1", Topic: "t2", MessageID: "m", Delivery: 1, Record: "t2/0/0", Lease: time.Minute}); got != Claimed {
			t.Fatalf("message m of topic t2, after m of topic t was done in the same group: %v, want claimed", got)
		}
		if got, want := a.claimKey("g1", "t", "m"), prefix+"dedupe:g1:t:m"; got != want {
			t.Fatalf("key %q, want %q", got, want)
		}
	})
}

func TestBatchIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		s := NewStore(rdb, prefix, week, "gw-a")
		ctx := testCtx(t)
		warmUp(t, s)
		var h countHook
		rdb.AddHook(&h)
		const n = 1000
		items := make([]Claim, n)
		keys := make([]Key, n)
		for i := range items {
			items[i] = Claim{Group: "g", Topic: "t", MessageID: fmt.Sprintf("m-%04d", i), Delivery: 1, Record: strconv.Itoa(i), Lease: time.Minute}
			keys[i] = items[i].Key()
		}
		check := func(what string, pipelines, commands int64) {
			t.Helper()
			if p, c, piped := h.pipelines.Load(), h.processes.Load(), h.piped.Load(); p != pipelines || c != 0 || piped != commands {
				t.Fatalf("%s of %d: %d pipelines of %d commands and %d single commands, want %d pipeline(s) of %d", what, n, p, piped, c, pipelines, commands)
			}
			h.reset()
		}
		h.reset()
		out, err := s.Claim(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range out {
			if o != Claimed {
				t.Fatalf("item %d: %v", i, o)
			}
		}
		check("claim", 1, n) // a plain SET NX per free key
		if _, err := s.Confirm(ctx, keys); err != nil {
			t.Fatal(err)
		}
		check("confirm", 1, (n+confirmChunk-1)/confirmChunk) // several keys per script call
		out, err = s.Claim(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range out {
			if o != Duplicate {
				t.Fatalf("item %d after confirm: %v", i, o)
			}
		}
		check("claim again", 2, 2*n) // SET NX finds them taken; the script tells why
		if err := s.Release(ctx, keys); err != nil {
			t.Fatal(err)
		}
		check("release", 1, n)
	})
}

func TestDoMixesOperations(t *testing.T) {
	t.Parallel()
	forEachRedis(t, func(t *testing.T, rdb redis.UniversalClient) {
		prefix := testPrefix(t, rdb)
		s := NewStore(rdb, prefix, week, "gw-a")
		other := NewStore(rdb, prefix, week, "gw-b")
		ctx := testCtx(t)
		warmUp(t, s)
		claim := func(id string) Claim {
			return Claim{Group: "g", Topic: "t", MessageID: id, Delivery: 1, Record: "r-" + id, Lease: time.Minute}
		}
		// Set the scene: "done" is done, "mine" and "gone" are claimed by
		// s, "theirs" by another gateway.
		if _, err := s.Claim(ctx, []Claim{claim("done"), claim("mine"), claim("gone")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Confirm(ctx, []Key{claim("done").Key()}); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Claim(ctx, []Claim{claim("theirs")}); err != nil {
			t.Fatal(err)
		}
		var h countHook
		rdb.AddHook(&h)
		res, err := s.Do(ctx, Batch{
			Claims:   []Claim{claim("free"), claim("done"), claim("theirs"), claim("gone")},
			Confirms: []Key{claim("mine").Key(), claim("theirs").Key()},
			Releases: []Key{claim("gone").Key()},
		})
		if err != nil {
			t.Fatal(err)
		}
		// Releases run first, so "gone" is free again for its claim.
		if want := []Outcome{Claimed, Duplicate, HeldElsewhere, Claimed}; !slices.Equal(res.Outcomes, want) {
			t.Fatalf("outcomes %v, want %v", res.Outcomes, want)
		}
		if want := []bool{true, false}; !slices.Equal(res.Confirmed, want) {
			t.Fatalf("confirmed %v, want %v", res.Confirmed, want)
		}
		if p := h.pipelines.Load(); p != 2 {
			t.Fatalf("%d pipelines, want 2 (the batch, then the claims of taken keys)", p)
		}
		if v, _ := rdb.Get(ctx, s.claimKey("g", "t", "mine")).Result(); !IsDone(v) {
			t.Fatalf("mine holds %q after confirm, want a done marker", v)
		}
		if v, _ := rdb.Get(ctx, s.claimKey("g", "t", "theirs")).Result(); v != other.claimValue(1, "r-theirs") {
			t.Fatalf("theirs holds %q after a foreign confirm, want their claim", v)
		}
		if _, err := s.Do(ctx, Batch{Confirms: []Key{{Group: "g"}}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "confirm[0]") {
			t.Fatalf("empty message ID: %v, want ErrInvalid naming confirm[0]", err)
		}
	})
}

// TestNoScriptRecovery flushes the script cache of the server, so it does
// not run in parallel with the other tests (they would pay the extra
// round trip, which TestBatchIsOneRoundTrip counts).
func TestNoScriptRecovery(t *testing.T) {
	for _, tc := range []struct {
		name string
		rdb  func(testing.TB) redis.UniversalClient
	}{{"redis", realClient}, {"miniredis", miniClient}} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := tc.rdb(t)
			prefix := testPrefix(t, rdb)
			s := NewStore(rdb, prefix, week, "gw-a")
			ctx := testCtx(t)
			warmUp(t, s)
			var h countHook
			rdb.AddHook(&h)
			for round := range 2 {
				if err := rdb.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				h.reset()
				items := []Claim{
					{Group: "g", Topic: "t", MessageID: fmt.Sprintf("a%d", round), Delivery: 1, Lease: time.Minute},
					{Group: "g", Topic: "t", MessageID: fmt.Sprintf("b%d", round), Delivery: 1, Lease: time.Minute},
				}
				out, err := s.Claim(ctx, items)
				if err != nil || out[0] != Claimed || out[1] != Claimed {
					t.Fatalf("claim after SCRIPT FLUSH: %v %v", out, err)
				}
				if p := h.pipelines.Load(); p != 1 {
					t.Fatalf("claim of free keys: %d pipelines, want 1 (no script)", p)
				}
				h.reset()
				// Confirm is a script: EVALSHA fails NOSCRIPT, EVAL runs it.
				if ok, err := s.Confirm(ctx, []Key{items[0].Key()}); err != nil || !ok[0] {
					t.Fatalf("confirm after SCRIPT FLUSH: %v %v", ok, err)
				}
				if p := h.pipelines.Load(); p != 2 {
					t.Fatalf("confirm after SCRIPT FLUSH: %d pipelines, want 2 (EVALSHA, then EVAL)", p)
				}
				h.reset()
				// A taken key goes on to the claim script, itself flushed.
				out, err = s.Claim(ctx, items)
				if err != nil || out[0] != Duplicate || out[1] != Claimed {
					t.Fatalf("claim again: %v %v", out, err)
				}
				if p := h.pipelines.Load(); p != 3 {
					t.Fatalf("claim of taken keys after SCRIPT FLUSH: %d pipelines, want 3 (SET NX, EVALSHA, EVAL)", p)
				}
				h.reset()
				// EVAL cached the script again: EVALSHA works.
				if out, err = s.Claim(ctx, items); err != nil || out[0] != Duplicate {
					t.Fatalf("claim once more: %v %v", out, err)
				}
				if p := h.pipelines.Load(); p != 2 {
					t.Fatalf("claim once more: %d pipelines, want 2", p)
				}
				st, err := s.ReserveProduce(ctx, "topic", in([]string{fmt.Sprintf("k%d", round)}...), ttl(time.Minute))
				if err != nil || !st[0].Reserved {
					t.Fatalf("reserve after SCRIPT FLUSH: %+v %v", st, err)
				}
			}
			// LoadScripts fills the cache up front.
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if err := s.LoadScripts(ctx); err != nil {
				t.Fatal(err)
			}
			h.reset()
			if _, err := s.Confirm(ctx, []Key{{Group: "g", Topic: "t", MessageID: "c", Delivery: 1}}); err != nil {
				t.Fatal(err)
			}
			if p := h.pipelines.Load(); p != 1 {
				t.Fatalf("after LoadScripts: %d pipelines, want 1", p)
			}
		})
	}
}

// TestUnavailable and TestUnavailableTimeout time failures, so they do not
// run in parallel with the CPU-heavy tests (miniredis under -race).
func TestUnavailable(t *testing.T) {
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{closedAddr(t)}
	cfg.DialTimeout = 200 * time.Millisecond
	rdb := newClient(t, cfg)
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewStore(rdb, "x:", week, "gw-a")
	res := ProduceResult{Partition: 1}
	ops := []struct {
		name string
		do   func() error
	}{
		{"claim", func() error {
			_, err := s.Claim(t.Context(), []Claim{{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Second}})
			return err
		}},
		{"confirm", func() error {
			_, err := s.Confirm(t.Context(), []Key{{Group: "g", Topic: "t", MessageID: "m"}})
			return err
		}},
		{"release", func() error { return s.Release(t.Context(), []Key{{Group: "g", Topic: "t", MessageID: "m"}}) }},
		{"reserve", func() error {
			_, err := s.ReserveProduce(t.Context(), "t", in([]string{"k"}...), ttl(time.Second))
			return err
		}},
		{"wait", func() error {
			_, err := s.WaitProduce(t.Context(), "t", in([]string{"k"}...), ttl(time.Second))
			return err
		}},
		{"complete", func() error {
			_, err := s.CompleteProduce(t.Context(), "t", []Reservation{{Key: "k", Token: "x"}}, []ProduceResult{res}, time.Minute)
			return err
		}},
		{"abort", func() error { return s.AbortProduce(t.Context(), "t", []Reservation{{Key: "k", Token: "x"}}) }},
		{"ping", func() error { return s.Ping(t.Context()) }},
		{"load scripts", func() error { return s.LoadScripts(t.Context()) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			err := op.do()
			elapsed := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
			if elapsed > time.Second {
				t.Fatalf("took %v to fail", elapsed)
			}
			t.Logf("%v after %v", err, elapsed)
		})
	}
}

func TestUnavailableTimeout(t *testing.T) {
	// A server that accepts connections and never answers: the read
	// timeout bounds the call.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{l.Addr().String()}
	cfg.ReadTimeout = 100 * time.Millisecond
	rdb := newClient(t, cfg)
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewStore(rdb, "x:", week, "gw-a")
	start := time.Now()
	_, err = s.Claim(t.Context(), []Claim{{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Second}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("took %v to fail", elapsed)
	}
	// The caller's deadline, shorter than the read timeout, bounds the
	// call too, and counts as unavailable.
	cfg.ReadTimeout = 10 * time.Second
	slow := newClient(t, cfg)
	t.Cleanup(func() { _ = slow.Close() })
	s = NewStore(slow, "x:", week, "gw-a")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = s.Claim(ctx, []Claim{{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Second}})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("took %v to fail", elapsed)
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	rdb := miniClient(t)
	s := NewStore(rdb, "x:", week, "gw-a")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Claim(ctx, []Claim{{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Second}})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want context.Canceled (not ErrUnavailable)", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	// Nothing listens: an argument error must come before any round trip.
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{closedAddr(t)}
	rdb := newClient(t, cfg)
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewStore(rdb, "x:", week, "gw-a")
	ctx := t.Context()
	res := []ProduceResult{{}}
	tests := []struct {
		name string
		do   func() error
	}{
		{"claim without group", func() error {
			_, err := s.Claim(ctx, []Claim{{MessageID: "m", Lease: time.Second}})
			return err
		}},
		{"claim without message ID", func() error {
			_, err := s.Claim(ctx, []Claim{{Group: "g", Topic: "t", Lease: time.Second}})
			return err
		}},
		{"claim without lease", func() error { _, err := s.Claim(ctx, []Claim{{Group: "g", Topic: "t", MessageID: "m"}}); return err }},
		{"confirm without group", func() error { _, err := s.Confirm(ctx, []Key{{MessageID: "m"}}); return err }},
		{"release without message ID", func() error { return s.Release(ctx, []Key{{Group: "g"}}) }},
		{"reserve without topic", func() error { _, err := s.ReserveProduce(ctx, "", in([]string{"k"}...), ttl(time.Second)); return err }},
		{"reserve with empty key", func() error { _, err := s.ReserveProduce(ctx, "t", in([]string{""}...), ttl(time.Second)); return err }},
		{"reserve with repeated key", func() error {
			_, err := s.ReserveProduce(ctx, "t", in([]string{"k", "j", "k"}...), ttl(time.Second))
			return err
		}},
		{"reserve without TTL", func() error { _, err := s.ReserveProduce(ctx, "t", in([]string{"k"}...), ttl(0)); return err }},
		{"wait with repeated key", func() error {
			_, err := s.WaitProduce(ctx, "t", in([]string{"k", "k"}...), ttl(time.Second))
			return err
		}},
		{"complete with fewer results", func() error {
			_, err := s.CompleteProduce(ctx, "t", []Reservation{{"k", "x"}, {"j", "x"}}, res, time.Minute)
			return err
		}},
		{"complete without token", func() error {
			_, err := s.CompleteProduce(ctx, "t", []Reservation{{Key: "k"}}, res, time.Minute)
			return err
		}},
		{"complete without window", func() error {
			_, err := s.CompleteProduce(ctx, "t", []Reservation{{"k", "x"}}, res, 0)
			return err
		}},
		{"abort without topic", func() error { return s.AbortProduce(ctx, "", []Reservation{{"k", "x"}}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.do(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestEmptyBatches(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{closedAddr(t)}
	rdb := newClient(t, cfg)
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewStore(rdb, "x:", week, "gw-a")
	ctx := t.Context()
	if out, err := s.Claim(ctx, nil); err != nil || len(out) != 0 {
		t.Errorf("claim: %v %v", out, err)
	}
	if out, err := s.Confirm(ctx, nil); err != nil || len(out) != 0 {
		t.Errorf("confirm: %v %v", out, err)
	}
	if err := s.Release(ctx, nil); err != nil {
		t.Errorf("release: %v", err)
	}
	if out, err := s.ReserveProduce(ctx, "t", nil, ttl(time.Second)); err != nil || len(out) != 0 {
		t.Errorf("reserve: %v %v", out, err)
	}
	if out, err := s.WaitProduce(ctx, "t", nil, ttl(time.Second)); err != nil || len(out) != 0 {
		t.Errorf("wait: %v %v", out, err)
	}
	if out, err := s.CompleteProduce(ctx, "t", nil, nil, time.Second); err != nil || len(out) != 0 {
		t.Errorf("complete: %v %v", out, err)
	}
	if err := s.AbortProduce(ctx, "t", nil); err != nil {
		t.Errorf("abort: %v", err)
	}
}

func TestForeignValue(t *testing.T) {
	t.Parallel()
	rdb := miniClient(t)
	s := NewStore(rdb, "x:", week, "gw-a")
	ctx := testCtx(t)
	if err := rdb.HSet(ctx, s.claimKey("g", "t", "m"), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Claim(ctx, []Claim{{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Lease: time.Second}})
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim over a hash: got %v, want a plain error", err)
	}
	if err := rdb.Set(ctx, s.produceKey("t", "k"), "junk", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReserveProduce(ctx, "t", in([]string{"k"}...), ttl(time.Second)); err == nil {
		t.Fatal("reserve over a foreign value: no error")
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[Outcome]string{Claimed: "claimed", Duplicate: "duplicate", HeldElsewhere: "held-elsewhere", 9: "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("%d: %q, want %q", o, got, want)
		}
	}
}

func TestMillis(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]int64{time.Nanosecond: 1, time.Millisecond: 1, 1500 * time.Microsecond: 2, time.Second: 1000} {
		if got := millis(d); got != want {
			t.Errorf("millis(%v) = %d, want %d", d, got, want)
		}
	}
}

func BenchmarkClaim(b *testing.B) {
	const batch = 256
	rdb := realClient(b)
	s := NewStore(rdb, testPrefix(b, rdb), week, "gw-bench")
	ctx := b.Context()
	if err := s.LoadScripts(ctx); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, base string) {
		items := make([]Claim, batch)
		for i := range items {
			items[i] = Claim{Group: "g", Topic: "t", Delivery: 1, Lease: 30 * time.Second}
		}
		n := 0
		for b.Loop() {
			for i := range items {
				items[i].MessageID = base + strconv.Itoa(n)
				n++
			}
			if _, err := s.Claim(ctx, items); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("serial", func(b *testing.B) {
		start := time.Now()
		run(b, testenv.UniqueName("s"))
		b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "items/s")
	})
	b.Run("parallel", func(b *testing.B) {
		start := time.Now()
		var total atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			base := testenv.UniqueName("p")
			items := make([]Claim, batch)
			for i := range items {
				items[i] = Claim{Group: "g", Topic: "t", Delivery: 1, Lease: 30 * time.Second}
			}
			n := 0
			for pb.Next() {
				for i := range items {
					items[i].MessageID = base + strconv.Itoa(n)
					n++
				}
				if _, err := s.Claim(ctx, items); err != nil {
					b.Error(err)
					return
				}
				total.Add(batch)
			}
		})
		b.ReportMetric(float64(total.Load())/time.Since(start).Seconds(), "items/s")
	})
}

func TestRedisGoesAwayAndBack(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	m.ClockTTL(true)
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{m.Addr()}
	rdb := newClient(t, cfg)
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewStore(rdb, "x:", week, "gw-a")
	c := Claim{Group: "g", Topic: "t", MessageID: "m", Delivery: 1, Record: "t/0/1", Lease: time.Minute}
	if got := claim1(t, s, c); got != Claimed {
		t.Fatal(got)
	}
	m.Close()
	if _, err := s.Claim(testCtx(t), []Claim{c}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim while down: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(testCtx(t)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ping while down: %v, want ErrUnavailable", err)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	// The pool recovers on its own; the retried claim takes its own claim
	// over (same record), if the data survived.
	testenv.Eventually(t, 5*time.Second, "redis back", func() bool { return s.Ping(testCtx(t)) == nil })
	if got := claim1(t, s, c); got != Claimed {
		t.Fatalf("claim after restart: %v", got)
	}
}
