package ratelimit

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fleet rules share one token bucket among every replica that enforces
// them. The bucket lives in Redis (leaseScript), but the per-call path stays
// local: each replica leases tokens in chunks (a tenth of a second's worth)
// into a local pool and spends from it, fetching the next chunk in the
// background when half the pool is spent. A lease also registers the replica
// as a member of the bucket; the member count is each replica's share when
// Redis cannot be reached: then every replica refills its pool by itself at
// rate/members, so the fleet stays near its quota until Redis answers.

// leaseScript takes up to ARGV[3] tokens from the bucket KEYS[1] (a hash:
// tokens, ts in ms), refilled at ARGV[1] tokens a second up to ARGV[2], and
// registers ARGV[4] in the member set KEYS[2] (scores: last lease, ms),
// dropping members silent for ARGV[5] ms. It returns {granted, members,
// ms until the rest of the request could be granted}. Redis's clock is the
// only clock, so replicas' clocks need not agree.
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil or ts == nil then
  tokens, ts = burst, now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
end
local grant = math.max(0, math.min(want, math.floor(tokens)))
tokens = tokens - grant
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]) * 2)
local wait = 0
if grant < want then
  wait = math.ceil((math.min(want - grant, burst) - tokens) / rate * 1000)
end
return {grant, redis.call('ZCARD', KEYS[2]), wait}
`)

// memberTTL is how long a replica counts as a member of a fleet bucket
// after its last lease.
const memberTTL = 10 * time.Second

// FleetStore keeps the fleet buckets in Redis.
type FleetStore struct {
	rdb    redis.UniversalClient
	prefix string
	owner  string
	logger *slog.Logger
}

// NewFleetStore returns a fleet store writing under keyPrefix; owner names
// this replica (unique per process).
func NewFleetStore(rdb redis.UniversalClient, keyPrefix, owner string, logger *slog.Logger) *FleetStore {
	return &FleetStore{rdb: rdb, prefix: keyPrefix + "limits:fleet:", owner: owner, logger: logger}
}

// lease asks the bucket key for want tokens.
func (s *FleetStore) lease(ctx context.Context, key string, l Limit, want int) (granted, members int, wait time.Duration, err error) {
	// One hash tag for both keys: a script's keys share a Cluster slot.
	tag := "{" + key + "}"
	vals, err := leaseScript.Run(ctx, s.rdb, []string{s.prefix + tag + ":tokens", s.prefix + tag + ":members"},
		l.PerSecond, l.burst(), want, s.owner, memberTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, 0, err
	}
	if len(vals) != 3 {
		return 0, 0, 0, redis.Nil
	}
	return int(vals[0]), max(1, int(vals[1])), time.Duration(vals[2]) * time.Millisecond, nil
}

// fleetTokens is this replica's pool of one fleet bucket.
type fleetTokens struct {
	s   *FleetStore
	key string

	mu       sync.Mutex
	lim      Limit
	avail    float64 // leased and unspent; negative: owed to waiting callers
	members  int     // replicas sharing the bucket, as of the last lease
	degraded bool    // Redis failed: refill locally at the share
	refilled time.Time
	kicked   bool

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

func (s *FleetStore) bucket(key string, l Limit) *fleetTokens {
	t := &fleetTokens{s: s, key: key, lim: l, members: 1, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	// The first chunk is leased before the first call spends, so that a
	// reject rule does not refuse the calls that find the pool empty.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	granted, members, _, err := s.lease(ctx, key, l, t.chunk())
	cancel()
	if err != nil {
		s.logger.Warn("fleet limit: redis unavailable; enforcing this replica's share locally", "bucket", key, "err", err)
		t.degraded, t.refilled, t.avail = true, time.Now(), float64(l.burst())
	} else {
		t.avail, t.members = float64(granted), members
	}
	go t.refill()
	return t
}

// chunk is how many tokens one lease asks for: a tenth of a second's worth,
// within the burst.
func (t *fleetTokens) chunk() int {
	return max(1, min(t.lim.burst(), int(math.Ceil(t.lim.PerSecond/10))))
}

func (t *fleetTokens) reserve(now time.Time, n int) (time.Duration, bool, func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n > t.lim.burst() {
		return 0, false, nil
	}
	// A caller the pool cannot cover waits for the tokens this replica
	// will lease, which arrive at its share of the rate: the fleet's rate
	// divided among the members. Waiting only rate/1 would admit every
	// replica's queue at the whole fleet's rate before the leases pay for
	// it.
	share := t.lim.PerSecond / float64(t.members)
	if t.degraded {
		if !t.refilled.IsZero() {
			cap := float64(t.lim.burst()) / float64(t.members)
			t.avail = math.Min(cap, t.avail+now.Sub(t.refilled).Seconds()*share)
		}
		t.refilled = now
	}
	t.avail -= float64(n)
	if t.avail < float64(t.chunk())/2 {
		t.kickLocked()
	}
	var delay time.Duration
	if t.avail < 0 {
		delay = time.Duration(-t.avail / share * float64(time.Second))
	}
	return delay, true, func() {
		t.mu.Lock()
		t.avail += float64(n)
		t.mu.Unlock()
	}
}

func (t *fleetTokens) kickLocked() {
	if t.kicked {
		return
	}
	t.kicked = true
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func (t *fleetTokens) set(l Limit) {
	t.mu.Lock()
	t.lim = l
	t.mu.Unlock()
}

func (t *fleetTokens) close() {
	close(t.quit)
	<-t.done
}

// refill leases chunks while the pool is below half a chunk.
func (t *fleetTokens) refill() {
	defer close(t.done)
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-t.quit:
			return
		case <-t.kick:
		}
		for {
			t.mu.Lock()
			lim, want := t.lim, t.chunk()-int(math.Floor(t.avail))
			if t.avail >= float64(t.chunk())/2 {
				t.kicked = false
				t.mu.Unlock()
				break
			}
			t.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			granted, members, wait, err := t.s.lease(ctx, t.key, lim, want)
			cancel()
			t.mu.Lock()
			if err != nil {
				if !t.degraded {
					t.s.logger.Warn("fleet limit: redis unavailable; enforcing this replica's share locally", "bucket", t.key, "members", t.members, "err", err)
					t.degraded, t.refilled = true, time.Now()
				}
				t.mu.Unlock()
				if !t.sleep(backoff) {
					return
				}
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			if t.degraded {
				t.s.logger.Info("fleet limit: redis answers again; leasing from the shared bucket", "bucket", t.key)
				// The local refill stands in for leases while degraded;
				// what it admitted is not owed to Redis.
				t.avail = math.Max(t.avail, 0)
			}
			t.degraded, backoff = false, 100*time.Millisecond
			t.avail += float64(granted)
			t.members = members
			t.mu.Unlock()
			if granted < want && !t.sleep(max(wait, 5*time.Millisecond)) {
				return
			}
		}
	}
}

// sleep waits d, or returns false when the bucket closes first.
func (t *fleetTokens) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.quit:
		return false
	case <-timer.C:
		return true
	}
}
