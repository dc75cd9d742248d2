package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/kafkagate/gateway/internal/invalid"
)

// ErrDenied is wrapped by a DeniedError.
var ErrDenied = errors.New("not allowed by the limits ACL")

// DeniedError is a call the ACL does not allow (PERMISSION_DENIED): an
// operation on a topic, or one on a consumer group.
type DeniedError struct {
	Op       Operation
	GroupOp  GroupOperation
	Identity string
	Topic    string
	Group    string
}

func (e *DeniedError) Error() string {
	if e.GroupOp != "" {
		return fmt.Sprintf("identity %q may not %s consumer group %q: %v", e.Identity, e.GroupOp, e.Group, ErrDenied)
	}
	return fmt.Sprintf("identity %q may not %s topic %q: %v", e.Identity, e.Op, e.Topic, ErrDenied)
}

// Unwrap returns ErrDenied.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// ErrLimited is wrapped by a LimitedError.
var ErrLimited = errors.New("over the rate limit")

// LimitedError is a call over its limit that was not admitted
// (RESOURCE_EXHAUSTED). RetryAfter is when the same call would pass if
// nothing else took the tokens meanwhile.
type LimitedError struct {
	Rule       string
	RetryAfter time.Duration
	// MaxWait is set when a wait rule refused to block longer than this
	// (its max_wait or the call's deadline).
	MaxWait time.Duration
}

func (e *LimitedError) Error() string {
	retry := strconv.FormatInt(RetryAfterMillis(e.RetryAfter), 10) + "ms"
	if e.MaxWait > 0 {
		return fmt.Sprintf("%v of rule %q: the tokens would take %s, longer than this call may wait (%s); retry after %s",
			ErrLimited, e.Rule, e.RetryAfter.Round(time.Millisecond), e.MaxWait.Round(time.Millisecond), retry)
	}
	return fmt.Sprintf("%v of rule %q: retry after %s", ErrLimited, e.Rule, retry)
}

// Unwrap returns ErrLimited.
func (e *LimitedError) Unwrap() error { return ErrLimited }

// RetryAfterMillis rounds d up to whole milliseconds (at least 1), as the
// retry-after-ms trailer carries it.
func RetryAfterMillis(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}

// Counts is what one rule decided since the gateway started. Records are
// counted, whatever the bytes.
type Counts struct {
	Admitted int64 // records admitted (shadowed ones included)
	Waited   int64 // calls that waited for tokens, then were admitted
	Rejected int64 // records refused as limited (reject, or a wait too long)
	Shadowed int64 // records a shadow rule would have limited
}

type counts struct{ admitted, waited, rejected, shadowed atomic.Int64 }

// Limiter applies the limits document in force. It is safe for concurrent
// use; Apply replaces the document while calls are admitted.
type Limiter struct {
	logger *slog.Logger
	fleet  *FleetStore // nil: fleet rules are enforced per replica

	policy atomic.Pointer[policy]

	mu         sync.RWMutex
	buckets    map[bucketKey]*bucket
	counts     map[string]*counts
	deliveries map[*rate.Limiter]deliveryReg
	swept      time.Time // when evictIdleLocked last looked
	denied     atomic.Int64
}

// policy is one compiled document.
type policy struct {
	version  string
	rules    []Rule // most specific first; ties in document order
	acl      bool
	groups   []GroupRule // most specific first; ties in document order
	groupACL bool
}

type bucketKey struct{ rule, identity string }

// bucket holds a rule's token buckets for one identity, each nil when the
// rule has no such limit.
type bucket struct {
	rule           Rule
	records, bytes tokens
	lastUsed       atomic.Int64 // unix nanoseconds
}

// tokens is a token bucket, local or shared by the fleet.
type tokens interface {
	// reserve takes n tokens as of now and returns how long the caller
	// must wait before using them; ok is false when n exceeds the burst.
	// cancel gives them back.
	reserve(now time.Time, n int) (delay time.Duration, ok bool, cancel func())
	set(l Limit)
	close()
}

type localTokens struct{ lim *rate.Limiter }

func newLocal(l Limit) *localTokens {
	return &localTokens{rate.NewLimiter(rate.Limit(l.PerSecond), l.burst())}
}

func (t *localTokens) reserve(now time.Time, n int) (time.Duration, bool, func()) {
	r := t.lim.ReserveN(now, n)
	if !r.OK() {
		return 0, false, nil
	}
	return r.DelayFrom(now), true, func() { r.CancelAt(now) }
}

func (t *localTokens) set(l Limit) {
	now := time.Now()
	t.lim.SetLimitAt(now, rate.Limit(l.PerSecond))
	t.lim.SetBurstAt(now, l.burst())
}

func (t *localTokens) close() {}

type deliveryReg struct {
	identity string
	topics   []string
}

// New returns a limiter with an empty document (everything admitted).
// fleet shares the buckets of fleet rules among replicas; with nil, each
// replica enforces a fleet rule's full rate by itself.
func New(fleet *FleetStore, logger *slog.Logger) *Limiter {
	l := &Limiter{
		logger:     logger,
		fleet:      fleet,
		buckets:    make(map[bucketKey]*bucket),
		counts:     make(map[string]*counts),
		deliveries: make(map[*rate.Limiter]deliveryReg),
	}
	l.policy.Store(&policy{})
	return l
}

// Apply puts doc in force, labelled version. doc must be valid (see
// Document.Validate). Buckets of rules that keep their name, scope and
// kinds of limit keep their tokens and take the new rates; the others
// start afresh.
func (l *Limiter) Apply(doc Document, version string) {
	p := &policy{version: version, rules: slices.Clone(doc.Rules), groups: slices.Clone(doc.Groups)}
	slices.SortStableFunc(p.rules, func(a, b Rule) int { return b.Specificity() - a.Specificity() })
	slices.SortStableFunc(p.groups, func(a, b GroupRule) int { return b.Specificity() - a.Specificity() })
	for _, r := range p.rules {
		if r.Allow != nil {
			p.acl = true
		}
	}
	p.groupACL = p.acl || len(p.groups) > 0
	byName := make(map[string]Rule, len(p.rules))
	for _, r := range p.rules {
		byName[r.Name] = r
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		r, ok := byName[k.rule]
		if !ok || r.Scope != b.rule.Scope || (r.Records == nil) != (b.records == nil) || (r.Bytes == nil) != (b.bytes == nil) {
			b.close()
			delete(l.buckets, k)
			continue
		}
		if b.records != nil {
			b.records.set(*r.Records)
		}
		if b.bytes != nil {
			b.bytes.set(*r.Bytes)
		}
		b.rule = r
	}
	l.policy.Store(p)
	for lim, reg := range l.deliveries {
		setDelivery(lim, p.deliverLimit(reg.identity, reg.topics))
	}
	l.logger.Info("limits in force", "version", version, "rules", len(p.rules), "group_rules", len(p.groups), "acl", p.acl, "group_acl", p.groupACL)
}

// Version returns the version of the document in force ("" before the
// first Apply).
func (l *Limiter) Version() string { return l.policy.Load().version }

// Counts returns what each rule decided, by rule name, and the number of
// calls the ACL denied.
func (l *Limiter) Counts() (byRule map[string]Counts, denied int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	byRule = make(map[string]Counts, len(l.counts))
	for name, c := range l.counts {
		byRule[name] = Counts{Admitted: c.admitted.Load(), Waited: c.waited.Load(), Rejected: c.rejected.Load(), Shadowed: c.shadowed.Load()}
	}
	return byRule, l.denied.Load()
}

// match returns the rule for identity and topic, or nil.
func (p *policy) match(identity, topic string) *Rule {
	for i := range p.rules {
		if r := &p.rules[i]; match(r.Identity, identity) && match(r.Topic, topic) {
			return r
		}
	}
	return nil
}

// CheckGroup applies the group ACL to op on group by identity.
func (l *Limiter) CheckGroup(op GroupOperation, identity, group string) error {
	p := l.policy.Load()
	if !p.groupACL {
		return nil
	}
	for i := range p.groups {
		if r := &p.groups[i]; match(r.Identity, identity) && match(r.Group, group) {
			if r.allows(op) {
				return nil
			}
			break
		}
	}
	l.denied.Add(1)
	return &DeniedError{GroupOp: op, Identity: identity, Group: group}
}

// Check applies the ACL to op on topic by identity.
func (l *Limiter) Check(op Operation, identity, topic string) error {
	return l.check(l.policy.Load(), op, identity, topic)
}

func (l *Limiter) check(p *policy, op Operation, identity, topic string) error {
	if !p.acl {
		return nil
	}
	return l.allowed(p, p.match(identity, topic), op, identity, topic)
}

// allowed applies the ACL to op by identity on topic, r being the rule
// that applies (nil: none).
func (l *Limiter) allowed(p *policy, r *Rule, op Operation, identity, topic string) error {
	if p.acl && (r == nil || !r.allows(op)) {
		l.denied.Add(1)
		return &DeniedError{Op: op, Identity: identity, Topic: topic}
	}
	return nil
}

// Admit applies the ACL and the produce limits to a batch of records
// records, bytes bytes in all, that identity produces to topic. It returns
// nil when the batch may go on (at once, or after waiting under a wait
// rule), a *DeniedError, a *LimitedError, ctx's error when ctx ended while
// waiting, or an *invalid.Error when the batch is larger than the rule's
// burst and so could never pass.
func (l *Limiter) Admit(ctx context.Context, identity, topic string, records, bytes int) error {
	p := l.policy.Load()
	if len(p.rules) == 0 {
		return nil
	}
	r := p.match(identity, topic)
	if err := l.allowed(p, r, Produce, identity, topic); err != nil {
		return err
	}
	if r == nil || r.Records == nil && r.Bytes == nil {
		return nil
	}
	b, c := l.bucket(r, identity)
	now := time.Now()
	var delay time.Duration
	var cancels [2]func()
	cancel := func() {
		for _, f := range cancels {
			if f != nil {
				f()
			}
		}
	}
	for i, t := range []struct {
		tokens tokens
		n      int
		what   string
		limit  *Limit
	}{{b.records, records, "records", r.Records}, {b.bytes, bytes, "bytes", r.Bytes}} {
		if t.tokens == nil || t.n == 0 {
			continue
		}
		d, ok, undo := t.tokens.reserve(now, t.n)
		if !ok {
			cancel()
			return invalid.Field("records", "this batch of %d records (%d bytes) holds more %s than the burst of limit rule %q allows at once (%d): send smaller batches",
				records, bytes, t.what, r.Name, t.limit.burst())
		}
		cancels[i] = undo
		delay = max(delay, d)
	}
	if delay <= 0 {
		c.admitted.Add(int64(records))
		return nil
	}
	switch r.action() {
	case Shadow:
		cancel()
		c.shadowed.Add(int64(records))
		c.admitted.Add(int64(records))
		return nil
	case Reject:
		cancel()
		c.rejected.Add(int64(records))
		return &LimitedError{Rule: r.Name, RetryAfter: delay}
	}
	limit := r.maxWait()
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl))
	}
	if delay > limit {
		cancel()
		c.rejected.Add(int64(records))
		return &LimitedError{Rule: r.Name, RetryAfter: delay, MaxWait: max(limit, 0)}
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		c.waited.Add(1)
		c.admitted.Add(int64(records))
		return nil
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
}

// bucket returns the buckets of rule r for identity, creating them on
// first use, and the rule's counters.
func (l *Limiter) bucket(r *Rule, identity string) (*bucket, *counts) {
	k := bucketKey{r.Name, identity}
	now := time.Now()
	l.mu.RLock()
	b, c := l.buckets[k], l.counts[r.Name]
	l.mu.RUnlock()
	if b != nil && c != nil {
		b.lastUsed.Store(now.UnixNano())
		return b, c
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c = l.counts[r.Name]; c == nil {
		c = &counts{}
		l.counts[r.Name] = c
	}
	if b = l.buckets[k]; b != nil {
		b.lastUsed.Store(now.UnixNano())
		return b, c
	}
	l.evictIdleLocked(now)
	b = &bucket{rule: *r}
	b.lastUsed.Store(now.UnixNano())
	if r.Records != nil {
		b.records = l.newTokens(r, identity, "records", *r.Records)
	}
	if r.Bytes != nil {
		b.bytes = l.newTokens(r, identity, "bytes", *r.Bytes)
	}
	l.buckets[k] = b
	return b, c
}

// Buckets are per rule and caller identity, and identities come from
// callers: idle buckets are closed (a fleet bucket's lease goroutine with
// them) and forgotten, so that callers naming ever new identities cannot
// grow the limiter without bound.
const (
	// bucketIdle is how long a bucket may go unused before it is evicted;
	// a bucket idle that long is full anyway, as a new one would be.
	bucketIdle = 10 * time.Minute
	// maxBuckets bounds the buckets; beyond it the least recently used go
	// first.
	maxBuckets = 10_000
)

// evictIdleLocked closes and forgets idle buckets, at most once a minute,
// or at once when there are maxBuckets.
func (l *Limiter) evictIdleLocked(now time.Time) {
	if len(l.buckets) < maxBuckets && now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for k, b := range l.buckets {
		if now.Sub(time.Unix(0, b.lastUsed.Load())) >= bucketIdle {
			b.close()
			delete(l.buckets, k)
		}
	}
	for len(l.buckets) >= maxBuckets {
		var oldest bucketKey
		at := int64(math.MaxInt64)
		for k, b := range l.buckets {
			if u := b.lastUsed.Load(); u < at {
				oldest, at = k, u
			}
		}
		l.buckets[oldest].close()
		delete(l.buckets, oldest)
	}
}

// bucketCount is the number of buckets, for tests.
func (l *Limiter) bucketCount() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.buckets)
}

func (l *Limiter) newTokens(r *Rule, identity, kind string, lim Limit) tokens {
	if r.Scope == Fleet && l.fleet != nil {
		return l.fleet.bucket(r.Name+"|"+identity+"|"+kind, lim)
	}
	return newLocal(lim)
}

func (b *bucket) close() {
	if b.records != nil {
		b.records.close()
	}
	if b.bytes != nil {
		b.bytes.close()
	}
}

// Close stops the fleet buckets' background work.
func (l *Limiter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		b.close()
		delete(l.buckets, k)
	}
}

// DeliveryLimiter returns a limiter of the records per second pushed to one
// Subscribe stream of identity on topics: the lowest deliver limit among
// the rules that apply to its topics. It follows later documents until
// ReleaseDelivery; with no deliver limit its rate is infinite.
func (l *Limiter) DeliveryLimiter(identity string, topics []string) *rate.Limiter {
	lim := rate.NewLimiter(rate.Inf, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	setDelivery(lim, l.policy.Load().deliverLimit(identity, topics))
	l.deliveries[lim] = deliveryReg{identity: identity, topics: slices.Clone(topics)}
	return lim
}

// ReleaseDelivery stops updating lim.
func (l *Limiter) ReleaseDelivery(lim *rate.Limiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.deliveries, lim)
}

func (p *policy) deliverLimit(identity string, topics []string) *Limit {
	var out *Limit
	for _, t := range topics {
		if r := p.match(identity, t); r != nil && r.Deliver != nil && (out == nil || r.Deliver.PerSecond < out.PerSecond) {
			out = r.Deliver
		}
	}
	return out
}

func setDelivery(lim *rate.Limiter, l *Limit) {
	now := time.Now()
	if l == nil {
		lim.SetLimitAt(now, rate.Inf)
		lim.SetBurstAt(now, math.MaxInt32)
		return
	}
	lim.SetLimitAt(now, rate.Limit(l.PerSecond))
	lim.SetBurstAt(now, l.burst())
}
