package consume

import (
	"context"
	"time"

	"github.com/kafkagate/gateway/internal/dedupe"
)

// Claims is the dedupe store as the consumer uses it (see package dedupe).
type Claims interface {
	Claim(ctx context.Context, items []dedupe.Claim) ([]dedupe.Outcome, error)
	Confirm(ctx context.Context, items []dedupe.Key) ([]bool, error)
	Release(ctx context.Context, items []dedupe.Key) error
}

// Dedupe turns on consumer-side dedupe for every group.
type Dedupe struct {
	Claims Claims
	// Deliver delivers records without a claim while Redis fails
	// (on_redis_failure: deliver); otherwise delivery pauses until Redis
	// answers again.
	Deliver bool
	// HoldRetry is how often a record claimed by another live owner is
	// tried again.
	HoldRetry time.Duration
	// IDHeader names the header with the message ID of records from other
	// producers, read when the gateway's message-id header is absent.
	IDHeader string
}

// The dedupe protocol, per record (DESIGN.md, "Dedupe"):
//
//   - dispatch picks a record for a stream and marks it claiming (it holds
//     the stream's credit and the ordering slot); the group's dedupe worker
//     claims a batch of them in one pipelined round trip;
//   - Claimed: delivered. Duplicate: done at once, never delivered.
//     HeldElsewhere: back off for hold_retry (another gateway works on it).
//   - Ack: confirming; the worker writes the done markers (one round trip
//     per batch), and only then is the record done for the commit rule, so
//     a commit never passes a record whose done marker is not written.
//   - Nack, ack timeout, stream gone: the claim is released (best effort;
//     the lease expires anyway).
//
// When Redis fails, claims back off (pause) or deliver without a claim
// (deliver), confirms are retried until they land, and the state flips to
// degraded, logged once per transition.

type pendingClaim struct {
	r     *record
	l     *partitionLog
	epoch uint64
	claim dedupe.Claim
}

type pendingConfirm struct {
	r          *record
	l          *partitionLog
	epoch      uint64
	key        dedupe.Key
	bestEffort bool
}

// dedupeKey is the key of r's current delivery attempt.
// The record's identity is built once and reused by its claim, confirm and
// release.
func (g *group) dedupeKey(l *partitionLog, r *record, attempt int32) dedupe.Key {
	if r.dedupeID == "" {
		r.dedupeID = messageIDFallback(l.topic, l.partition, r.offset)
	}
	return dedupe.Key{Group: g.settings.Group, MessageID: r.messageID, Attempt: attempt, Record: r.dedupeID}
}

// claimLocked reserves s's credit and r's ordering slot and queues r's claim.
func (g *group) claimLocked(s *Stream, l *partitionLog, r *record) {
	r.state = stateClaiming
	r.stream = s
	l.inflight++
	s.inflight++
	k := g.dedupeKey(l, r, r.attempt+1)
	g.dd.claims = append(g.dd.claims, pendingClaim{r: r, l: l, epoch: l.epoch, claim: dedupe.Claim{
		Group: k.Group, MessageID: k.MessageID, Attempt: k.Attempt, Record: k.Record,
		Lease: g.settings.AckTimeout + max(g.settings.AckTimeout/2, 5*time.Second),
	}})
	g.wakeDedupe()
}

// confirmLocked marks r processed and queues its done marker.
func (g *group) confirmLocked(l *partitionLog, r *record) {
	g.releaseLocked(l, r)
	bestEffort := r.unclaimed
	if bestEffort {
		g.finishLocked(l, r) // delivered without a claim: do not hold the commit for Redis
	} else {
		r.state = stateConfirming
		r.confirmed = make(chan struct{})
		l.confirming++
		l.settle(r) // processed: the next record of its key may go
	}
	g.dd.confirms = append(g.dd.confirms, pendingConfirm{r: r, l: l, epoch: l.epoch, key: g.dedupeKey(l, r, r.attempt), bestEffort: bestEffort})
	g.wakeDedupe()
}

// releaseClaimLocked queues the release of r's claim for its last attempt.
func (g *group) releaseClaimLocked(l *partitionLog, r *record) {
	if g.dd == nil || r.unclaimed || r.attempt == 0 {
		return
	}
	g.dd.releases = append(g.dd.releases, g.dedupeKey(l, r, r.attempt))
	g.wakeDedupe()
}

func (g *group) wakeDedupe() {
	select {
	case g.dd.wake <- struct{}{}:
	default:
	}
}

// dedupeLoop is the group's dedupe worker: it turns the queued claims,
// confirms and releases into one pipelined Redis round trip each.
func (g *group) dedupeLoop() {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-g.dd.quit:
			return
		case <-g.dd.wake:
		}
		for {
			g.mu.Lock()
			claims, confirms, releases := g.dd.claims, g.dd.confirms, g.dd.releases
			g.dd.claims, g.dd.confirms, g.dd.releases = nil, nil, nil
			g.mu.Unlock()
			if len(claims)+len(confirms)+len(releases) == 0 {
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var failed error
			if len(releases) > 0 {
				_ = g.m.dd.Claims.Release(ctx, releases) // best effort: leases expire
			}
			if len(confirms) > 0 {
				keys := make([]dedupe.Key, len(confirms))
				for i, c := range confirms {
					keys[i] = c.key
				}
				oks, err := g.m.dd.Claims.Confirm(ctx, keys)
				g.applyConfirms(confirms, oks, err)
				if err != nil {
					failed = err
				}
			}
			if len(claims) > 0 {
				items := make([]dedupe.Claim, len(claims))
				for i, c := range claims {
					items[i] = c.claim
				}
				outcomes, err := g.m.dd.Claims.Claim(ctx, items)
				g.applyClaims(claims, outcomes, err, backoff)
				if err != nil {
					failed = err
				}
			}
			cancel()
			g.setDegraded(failed)
			if failed == nil {
				backoff = 100 * time.Millisecond
				continue
			}
			select {
			case <-g.dd.quit:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// applyConfirms finishes confirmed records; on error it queues the confirms
// again (the records stay unfinished, so uncommitted).
func (g *group) applyConfirms(confirms []pendingConfirm, oks []bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.m.stats.redisErrors.Add(1)
		for _, c := range confirms {
			if !c.bestEffort {
				g.dd.confirms = append(g.dd.confirms, c)
			}
		}
		return
	}
	var touched []*partitionLog
	for i, c := range confirms {
		if !oks[i] {
			// Another owner claimed it after our lease lapsed: it may have
			// been processed twice. Count it; the record is done here.
			g.m.stats.lostClaims.Add(1)
		}
		if ch := c.r.confirmed; ch != nil && !c.bestEffort {
			close(ch) // the Ack that made it waits for this
			c.r.confirmed = nil
		}
		if c.bestEffort || g.parts[tpKey{c.l.topic, c.l.partition}] != c.l || c.l.epoch != c.epoch || c.r.state != stateConfirming {
			continue
		}
		c.l.confirming--
		g.finishLocked(c.l, c.r)
		touched = append(touched, c.l)
	}
	g.storeLocked(touched)
	g.dispatchLocked()
}

// applyClaims delivers claimed records, drops duplicates, holds records
// claimed elsewhere, and on error applies the Redis failure policy.
func (g *group) applyClaims(claims []pendingClaim, outcomes []dedupe.Outcome, err error, backoff time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.m.now()
	var touched []*partitionLog
	for i, c := range claims {
		r, l := c.r, c.l
		current := g.parts[tpKey{l.topic, l.partition}] == l && l.epoch == c.epoch && r.state == stateClaiming
		if !current {
			// Revoked, acked or given back meanwhile: do not keep a claim.
			if err == nil && outcomes[i] == dedupe.Claimed {
				g.dd.releases = append(g.dd.releases, c.claim.Key())
			}
			continue
		}
		s := r.stream
		g.releaseLocked(l, r) // back to not-in-flight; each branch sets the new state
		switch {
		case err != nil && g.m.dd.Deliver && s != nil:
			r.unclaimed = true
			g.deliverLocked(s, l, r, now)
		case err != nil:
			r.state = stateBackoff
			r.deadline = now.Add(backoff)
			g.scheduleLocked(r, l)
		case outcomes[i] == dedupe.Duplicate:
			g.m.stats.duplicates.Add(1)
			g.finishLocked(l, r)
			touched = append(touched, l)
		case outcomes[i] == dedupe.HeldElsewhere:
			g.m.stats.held.Add(1)
			r.state = stateBackoff
			r.deadline = now.Add(g.m.dd.HoldRetry)
			g.scheduleLocked(r, l)
		case s == nil: // the stream went away while claiming
			g.dd.releases = append(g.dd.releases, c.claim.Key())
			l.markReady(r)
		default:
			g.m.stats.claims.Add(1)
			r.unclaimed = false
			g.deliverLocked(s, l, r, now)
		}
	}
	if err != nil {
		g.m.stats.redisErrors.Add(1)
	}
	g.storeLocked(touched)
	for _, s := range g.streams {
		s.flush()
	}
	g.dispatchLocked()
}

// setDegraded records whether Redis is failing, logging transitions only.
func (g *group) setDegraded(err error) {
	was := g.dd.degraded.Swap(err != nil)
	switch {
	case err != nil && !was:
		policy := "delivery paused until it answers"
		if g.m.dd.Deliver {
			policy = "delivering without dedupe until it answers"
		}
		g.logger.Warn("redis unavailable for dedupe; "+policy, "err", err)
	case err == nil && was:
		g.logger.Info("redis answers again; dedupe resumed")
	}
}
