package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/testenv"
)

func mustParse(t *testing.T, doc string) Document {
	t.Helper()
	d, err := ParseDocument([]byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return d
}

func newLimiter(t *testing.T, doc string) *Limiter {
	t.Helper()
	l := New(nil, testenv.Logger(t))
	t.Cleanup(l.Close)
	l.Apply(mustParse(t, doc), "test")
	return l
}

func TestParseDocumentRefusesBadDocumentsNamingTheField(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"rules:\n- {name: a, records: {per_second: 0}}", "rules[0].records.per_second: must be a positive number"},
		{"rules:\n- {name: a, bytes: {per_second: 10, burst: -1}}", "rules[0].bytes.burst: must not be negative"},
		{"rules:\n- {name: a, records: {per_second: 1}}\n- {name: a, records: {per_second: 1}}", `rules[1].name: "a" is also the name of rules[0]`},
		{"rules:\n- {records: {per_second: 1}}", "rules[0].name: must not be empty"},
		{"rules:\n- {name: a, records: {per_second: 1}, action: drop}", `rules[0].action: "drop" is not one of wait, reject, shadow`},
		{"rules:\n- {name: a, records: {per_second: 1}, scope: global}", `rules[0].scope: "global" is not one of local, fleet`},
		{"rules:\n- {name: a, allow: [produce, write]}", `rules[0].allow[1]: "write" is not one of produce, consume`},
		{"rules:\n- {name: a, deliver: {per_second: 5}, scope: fleet}", "rules[0].deliver: is per Subscribe stream"},
		{"rules:\n- {name: a, topic: x}", "rules[0]: sets no limit"},
		{"rules:\n- {name: a, records: {per_second: 1}, max_wait: -1s}", "rules[0].max_wait: must not be negative"},
		{"rules:\n- {name: a, record: {per_second: 1}}", "field record not found"},
	} {
		_, err := ParseDocument([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	// Every problem is reported, not only the first.
	_, err := ParseDocument([]byte("rules:\n- {name: a, records: {per_second: -1}}\n- {name: b, action: x, records: {per_second: 1}}"))
	if err == nil || !strings.Contains(err.Error(), "rules[0].records") || !strings.Contains(err.Error(), "rules[1].action") {
		t.Fatalf("two bad rules: %v", err)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"", "anything", true},
		{"*", "anything", true},
		{"orders", "orders", true},
		{"orders", "orders.eu", false},
		{"orders.*", "orders.eu", true},
		{"orders.*", "orders", false},
		{"*.dlq", "orders.dlq", true},
		{"*.dlq", "orders.dlq.x", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXcYb", false},
		{"a*a", "a", false},
		{"spiffe://prod/*", "spiffe://prod/checkout", true},
	} {
		if got := match(tc.pattern, tc.name); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestTheMostSpecificRuleApplies(t *testing.T) {
	l := newLimiter(t, `
rules:
- {name: default, records: {per_second: 1}}
- {name: orders-any, topic: "orders.*", records: {per_second: 2}}
- {name: orders-eu, topic: "orders.eu", records: {per_second: 3}}
- {name: checkout-orders, identity: checkout, topic: "orders.*", records: {per_second: 4}}
- {name: checkout-orders-too, identity: checkout, topic: "orders.*", records: {per_second: 5}}
`)
	p := l.policy.Load()
	for _, tc := range []struct{ identity, topic, want string }{
		{"billing", "payments", "default"},
		{"billing", "orders.us", "orders-any"},
		{"billing", "orders.eu", "orders-eu"},
		{"checkout", "orders.us", "checkout-orders"}, // first of two equally specific
		{"checkout", "orders.eu", "checkout-orders"}, // exact identity + a 7-letter prefix outranks an exact 9-letter topic alone
	} {
		if r := p.match(tc.identity, tc.topic); r == nil || r.Name != tc.want {
			t.Errorf("%s on %s: rule %v, want %s", tc.identity, tc.topic, r, tc.want)
		}
	}
}

// admitFor offers batches of n records of size bytes each, back to back, for
// d, and returns the records admitted and the time it took.
func admitFor(t *testing.T, l *Limiter, d time.Duration, n, size int) (admitted int, elapsed time.Duration) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		err := l.Admit(context.Background(), "app", "topic", n, n*size)
		if err != nil {
			t.Fatalf("admit: %v", err)
		}
		admitted += n
	}
	return admitted, time.Since(start)
}

func TestAdmittedRecordRateIsWithinTenPercentOfTheLimit(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, "rules:\n- {name: r, records: {per_second: 1000, burst: 50}, action: wait, max_wait: 5s}")
	admitted, elapsed := admitAfterBurst(t, l, 5*time.Second, 10, 1, 50)
	checkRate(t, "records", float64(admitted)/elapsed.Seconds(), 1000, 0.10)
}

func TestAdmittedByteRateIsWithinTenPercentOfTheLimit(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, "rules:\n- {name: r, bytes: {per_second: 1048576, burst: 65536}, action: wait, max_wait: 5s}")
	admitted, elapsed := admitAfterBurst(t, l, 5*time.Second, 8, 1024, 64)
	checkRate(t, "bytes", float64(admitted*1024)/elapsed.Seconds(), 1<<20, 0.10)
}

// admitAfterBurst spends the saved burst (burstRecords), then measures.
func admitAfterBurst(t *testing.T, l *Limiter, d time.Duration, n, size, burstRecords int) (int, time.Duration) {
	t.Helper()
	for spent := 0; spent < burstRecords; spent += n {
		if err := l.Admit(context.Background(), "app", "topic", n, n*size); err != nil {
			t.Fatal(err)
		}
	}
	return admitFor(t, l, d, n, size)
}

func checkRate(t *testing.T, what string, got, want, tolerance float64) {
	t.Helper()
	t.Logf("%s: admitted %.0f/s, limit %.0f/s", what, got, want)
	if math.Abs(got-want) > tolerance*want {
		t.Fatalf("%s: admitted %.0f/s, want %.0f/s ± %.0f%%", what, got, want, tolerance*100)
	}
}

func TestWaitNeverPassesTheDeadlineOrMaxWait(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, `
rules:
- {name: slow, topic: slow, records: {per_second: 10, burst: 1}, action: wait, max_wait: 10s}
- {name: short, topic: short, records: {per_second: 10, burst: 1}, action: wait, max_wait: 20ms}
`)
	for _, topic := range []string{"slow", "short"} {
		if err := l.Admit(context.Background(), "app", topic, 1, 1); err != nil {
			t.Fatalf("%s: the burst: %v", topic, err)
		}
	}
	// The next token comes in 100 ms: a call with 30 ms left is refused
	// at once rather than held past its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Admit(ctx, "app", "slow", 1, 1)
	var lim *LimitedError
	if !errors.As(err, &lim) || lim.Rule != "slow" || lim.MaxWait <= 0 || lim.MaxWait > 30*time.Millisecond || lim.RetryAfter <= 0 {
		t.Fatalf("deadline 30ms: %v (%+v), want a LimitedError naming rule slow", err, lim)
	}
	if ctx.Err() != nil || time.Since(start) >= 30*time.Millisecond {
		t.Fatalf("the refusal came after the deadline")
	}
	err = l.Admit(context.Background(), "app", "short", 1, 1)
	if !errors.As(err, &lim) || lim.Rule != "short" || lim.MaxWait != 20*time.Millisecond {
		t.Fatalf("max_wait 20ms: %v, want a LimitedError naming rule short", err)
	}
	// Within the deadline, the call waits and passes.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Admit(ctx, "app", "slow", 1, 1); err != nil {
		t.Fatalf("within the deadline: %v", err)
	}
	c, _ := l.Counts()
	if c["slow"].Waited != 1 || c["slow"].Rejected != 1 || c["short"].Rejected != 1 {
		t.Fatalf("counts %+v", c)
	}
	// A cancelled wait gives its tokens back and returns the context's error.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if err := l.Admit(ctx, "app", "slow", 1, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

func TestRejectAnswersAtOnceWithTheRetryDelay(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, "rules:\n- {name: strict, records: {per_second: 4, burst: 2}, action: reject}")
	for i := range 2 {
		if err := l.Admit(context.Background(), "app", "t", 1, 1); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	err := l.Admit(context.Background(), "app", "t", 1, 1)
	var lim *LimitedError
	if !errors.As(err, &lim) || !errors.Is(err, ErrLimited) {
		t.Fatalf("over the limit: %v", err)
	}
	// One token every 250 ms.
	if lim.RetryAfter <= 150*time.Millisecond || lim.RetryAfter > 250*time.Millisecond {
		t.Fatalf("retry after %v, want about 250ms", lim.RetryAfter)
	}
	if !strings.Contains(err.Error(), `rule "strict"`) || !strings.Contains(err.Error(), "retry after") {
		t.Fatalf("message %q", err)
	}
	// A rejected call takes no tokens: after the delay the call passes.
	time.Sleep(lim.RetryAfter)
	if err := l.Admit(context.Background(), "app", "t", 1, 1); err != nil {
		t.Fatalf("after retry-after: %v", err)
	}
	if c, _ := l.Counts(); c["strict"].Rejected != 1 || c["strict"].Admitted != 3 {
		t.Fatalf("counts %+v", c["strict"])
	}
}

func TestShadowAdmitsEverythingAndCountsWhatItWouldLimit(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, "rules:\n- {name: trial, records: {per_second: 10, burst: 10}, action: shadow}")
	for range 100 {
		if err := l.Admit(context.Background(), "app", "t", 1, 1); err != nil {
			t.Fatalf("shadow refused: %v", err)
		}
	}
	c, _ := l.Counts()
	if c["trial"].Admitted != 100 || c["trial"].Shadowed < 85 || c["trial"].Shadowed > 90 {
		t.Fatalf("counts %+v: want 100 admitted and about 90 shadow-limited", c["trial"])
	}
}

func TestABatchLargerThanTheBurstIsRefusedAsInvalid(t *testing.T) {
	l := newLimiter(t, "rules:\n- {name: small, records: {per_second: 100, burst: 10}}")
	err := l.Admit(context.Background(), "app", "t", 11, 11)
	var inv *invalid.Error
	if !errors.As(err, &inv) || inv.Violations[0].Field != "records" || !strings.Contains(err.Error(), `"small"`) {
		t.Fatalf("batch over the burst: %v", err)
	}
	// Nothing was taken.
	if err := l.Admit(context.Background(), "app", "t", 10, 10); err != nil {
		t.Fatalf("a batch of the burst: %v", err)
	}
}

func TestACL(t *testing.T) {
	l := newLimiter(t, `
rules:
- {name: checkout-orders, identity: checkout, topic: "orders.*", allow: [produce, consume]}
- {name: billing-reads, identity: billing, topic: "orders.*", allow: [consume], records: {per_second: 100}}
`)
	for _, tc := range []struct {
		op             Operation
		identity, topc string
		allowed        bool
	}{
		{Produce, "checkout", "orders.eu", true},
		{Consume, "checkout", "orders.eu", true},
		{Consume, "billing", "orders.eu", true},
		{Produce, "billing", "orders.eu", false}, // the rule that applies allows consume only
		{Produce, "checkout", "payments", false}, // no rule matches
		{Consume, "", "orders.eu", false},
	} {
		err := l.Check(tc.op, tc.identity, tc.topc)
		if tc.allowed != (err == nil) {
			t.Errorf("%s %s %s: %v, want allowed=%v", tc.identity, tc.op, tc.topc, err, tc.allowed)
		}
		var d *DeniedError
		if err != nil && (!errors.As(err, &d) || !errors.Is(err, ErrDenied)) {
			t.Errorf("%v is not a DeniedError", err)
		}
	}
	if err := l.Admit(context.Background(), "billing", "orders.eu", 1, 1); !errors.Is(err, ErrDenied) {
		t.Fatalf("produce without allow: %v", err)
	}
	if _, denied := l.Counts(); denied != 6-3+1 {
		t.Fatalf("denied %d", denied)
	}
	// Without allow in any rule, there is no ACL.
	open := newLimiter(t, "rules:\n- {name: r, records: {per_second: 100}}")
	if err := open.Check(Produce, "anyone", "anything"); err != nil {
		t.Fatal(err)
	}
}

// Consumer groups are authorized per identity and operation: who may
// subscribe to a group, ack or nack its deliveries, reset its offsets, or
// describe it. Deny by default once any rule exists.
func TestGroupACL(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, `
rules:
- {name: all-topics, allow: [produce, consume]}
groups:
- {name: checkout, identity: checkout, group: "checkout-*", allow: [subscribe, ack, describe]}
- {name: checkout-ops, identity: checkout-ops, group: "checkout-*", allow: [reset, describe]}
- {name: billing-billing, identity: billing, group: billing, allow: [subscribe, ack]}
`)
	for _, tc := range []struct {
		op              GroupOperation
		identity, group string
		allowed         bool
	}{
		{Subscribe, "checkout", "checkout-orders", true},
		{Ack, "checkout", "checkout-orders", true},
		{Reset, "checkout", "checkout-orders", false},
		{Reset, "checkout-ops", "checkout-orders", true},
		{Subscribe, "checkout-ops", "checkout-orders", false},
		{Subscribe, "billing", "checkout-orders", false}, // no rule matches
		{Ack, "billing", "checkout-orders", false},
		{Subscribe, "billing", "billing", true},
		{Describe, "billing", "billing", false},
		{Subscribe, "", "billing", false},
	} {
		err := l.CheckGroup(tc.op, tc.identity, tc.group)
		if tc.allowed != (err == nil) {
			t.Errorf("%s %s %s: %v, want allowed=%v", tc.identity, tc.op, tc.group, err, tc.allowed)
		}
		var d *DeniedError
		if err != nil && (!errors.As(err, &d) || d.Group != tc.group || !strings.Contains(err.Error(), string(tc.op))) {
			t.Errorf("%v is not a DeniedError naming the group and the operation", err)
		}
	}
	// Group rules alone turn group ACLs on; without any rule with allow and
	// without group rules there are none.
	only := newLimiter(t, "groups:\n- {name: g, identity: a, group: g, allow: [subscribe]}")
	if err := only.CheckGroup(Subscribe, "b", "g"); err == nil {
		t.Error("a group rule alone does not deny other identities")
	}
	open := newLimiter(t, "rules:\n- {name: r, records: {per_second: 100}}")
	if err := open.CheckGroup(Reset, "anyone", "anything"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseDocument([]byte("groups:\n- {name: g, allow: [produce]}")); err == nil || !strings.Contains(err.Error(), "groups[0].allow[0]") {
		t.Fatalf("a group rule allowing produce: %v", err)
	}
}

func TestApplyChangesRatesLiveAndKeepsBuckets(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, "rules:\n- {name: r, records: {per_second: 1, burst: 1}, action: reject}")
	if err := l.Admit(context.Background(), "app", "t", 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Admit(context.Background(), "app", "t", 1, 1); !errors.Is(err, ErrLimited) {
		t.Fatalf("second call at 1/s: %v", err)
	}
	l.Apply(mustParse(t, "rules:\n- {name: r, records: {per_second: 1000, burst: 1}, action: reject}"), "v2")
	if l.Version() != "v2" {
		t.Fatalf("version %q", l.Version())
	}
	time.Sleep(5 * time.Millisecond) // 5 tokens' time at the new rate
	if err := l.Admit(context.Background(), "app", "t", 1, 1); err != nil {
		t.Fatalf("after raising the limit: %v", err)
	}
	// Removing every rule admits everything.
	l.Apply(Document{}, "empty")
	for range 100 {
		if err := l.Admit(context.Background(), "app", "t", 1, 1); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDeliveryLimiterFollowsTheDocument(t *testing.T) {
	l := newLimiter(t, `
rules:
- {name: a, topic: a, deliver: {per_second: 50}}
- {name: b, topic: b, deliver: {per_second: 20, burst: 5}}
`)
	lim := l.DeliveryLimiter("app", []string{"a", "b", "c"})
	if lim.Limit() != 20 || lim.Burst() != 5 {
		t.Fatalf("the lowest deliver limit of the topics: %v/%d", lim.Limit(), lim.Burst())
	}
	l.Apply(mustParse(t, "rules:\n- {name: a, topic: a, deliver: {per_second: 50}}"), "v2")
	if lim.Limit() != 50 || lim.Burst() != 50 {
		t.Fatalf("after a change: %v/%d", lim.Limit(), lim.Burst())
	}
	l.ReleaseDelivery(lim)
	l.Apply(Document{}, "v3")
	if lim.Limit() != 50 {
		t.Fatalf("a released limiter changed: %v", lim.Limit())
	}
	if free := l.DeliveryLimiter("app", []string{"c"}); free.Limit() != rate.Inf {
		t.Fatalf("no deliver rule: %v", free.Limit())
	}
}

func TestConcurrentAdmitsShareTheBucket(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, "rules:\n- {name: r, records: {per_second: 500, burst: 10}, max_wait: 10s}")
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for time.Since(start) < 2*time.Second {
				if err := l.Admit(context.Background(), "app", "t", 5, 5); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += 5
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	checkRate(t, "records (8 callers)", float64(total-10)/time.Since(start).Seconds(), 500, 0.10)
}

// The review found that buckets, one per rule and caller identity, were
// never evicted: callers naming ever new identities (a header identity is
// self-asserted) grew the limiter, and each fleet bucket kept a lease
// goroutine. The limiter now stays bounded.
func TestBucketsOfEverNewIdentitiesStayBounded(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, "rules:\n- {name: r, records: {per_second: 1000}}")
	for i := range maxBuckets + 500 {
		if err := l.Admit(context.Background(), fmt.Sprintf("caller-%d", i), "t", 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.bucketCount(); n > maxBuckets {
		t.Fatalf("%d buckets, more than %d", n, maxBuckets)
	}
}
