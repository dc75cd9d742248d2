package consume

import (
	"context"
	"time"

	"github.com/kafkagate/gateway/internal/dedupe"
)

// Claims is the dedupe store as the consumer uses it (see package dedupe):
// claims, confirms and releases, together in one round trip.
type Claims interface {
	Do(ctx context.Context, b dedupe.Batch) (dedupe.BatchResult, error)
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
	retained   *retainedClaim // instead of r and l: the Ack of a revoked record
}

// retainedClaim is the claim of a record that its app held unacknowledged
// when the record's partition was revoked. The claim stays in Redis until
// the app settles the record or the ack timeout passes, so the partition's
// new owner holds its copy meanwhile (never two apps at once):
//
//   - a late Ack writes the done marker (if the claim is still this
//     delivery's), and the new owner drops its copy as a duplicate: the
//     Ack succeeds, though the offset is committed by the new owner;
//   - a late Nack releases the claim, and the new owner delivers its copy
//     at once (the stream's end does not: the app may live on, as after
//     any stream break with dedupe on);
//   - else the lease runs out in Redis, and the entry here is pruned.
type retainedClaim struct {
	key       dedupe.Key
	expires   time.Time
	confirmed chan struct{} // made by the first Ack, closed when its done marker is written
}

// retainLocked keeps the claim of r, in flight on a partition being
// forgotten.
func (g *group) retainLocked(l *partitionLog, r *record) {
	id := AckID{Topic: l.topic, Partition: l.partition, Offset: r.offset, Epoch: l.epoch}
	g.dd.retained[id] = &retainedClaim{key: g.dedupeKey(l, r, r.attempt), expires: r.deadline}
}

// retainedLocked returns the retained claim of id, or nil.
func (g *group) retainedLocked(id AckID) *retainedClaim {
	if g.dd == nil {
		return nil
	}
	e := g.dd.retained[id]
	if e != nil && e.confirmed == nil && g.m.now().After(e.expires) {
		delete(g.dd.retained, id)
		return nil
	}
	return e
}

// pruneRetainedLocked forgets retained claims past their ack timeout.
func (g *group) pruneRetainedLocked() {
	now := g.m.now()
	for id, e := range g.dd.retained {
		if now.After(e.expires) {
			delete(g.dd.retained, id)
		}
	}
}

// confirmRetainedLocked queues the done markers of the retained claims of
// ids[i] for each i in which, and returns what to wait for.
func (g *group) confirmRetainedLocked(ids []AckID, which []int) []<-chan struct{} {
	var waits []<-chan struct{}
	for _, i := range which {
		e := g.dd.retained[ids[i]]
		if e.confirmed == nil {
			e.confirmed = make(chan struct{})
			g.dd.confirms = append(g.dd.confirms, pendingConfirm{key: e.key, retained: e})
			g.wakeDedupe()
		}
		waits = append(waits, e.confirmed)
	}
	return waits
}

// releaseRetainedLocked queues the release of the retained claims of
// ids[i] for each i in which.
func (g *group) releaseRetainedLocked(ids []AckID, which []int) {
	for _, i := range which {
		g.dd.releases = append(g.dd.releases, g.dd.retained[ids[i]].key)
		delete(g.dd.retained, ids[i])
	}
	if len(which) > 0 {
		g.wakeDedupe()
	}
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

// dedupeWorkers is how many batches a group has in flight to Redis at
// once: while one waits for its replies, the next is being sent, so the
// gateway's and Redis's work overlap.
const dedupeWorkers = 2

// maxDedupeBatch bounds the claims, and separately the confirms, of one
// round trip, so that a deep queue is split among the workers instead of
// going out as one long pipeline while the other worker idles.
const maxDedupeBatch = 2048

// dedupeLoop is one of the group's dedupe workers: it takes the queued
// claims, confirms and releases and sends them in one pipelined round trip.
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
			claims, confirms, releases := takeBatch(&g.dd.claims), takeBatch(&g.dd.confirms), g.dd.releases
			g.dd.releases = nil
			more := len(g.dd.claims)+len(g.dd.confirms) > 0
			g.mu.Unlock()
			if len(claims)+len(confirms)+len(releases) == 0 {
				break
			}
			if more {
				g.wakeDedupe() // the other worker takes the rest meanwhile
			}
			b := dedupe.Batch{Releases: releases}
			if len(claims) > 0 {
				b.Claims = make([]dedupe.Claim, len(claims))
				for i, c := range claims {
					b.Claims[i] = c.claim
				}
			}
			if len(confirms) > 0 {
				b.Confirms = make([]dedupe.Key, len(confirms))
				for i, c := range confirms {
					b.Confirms[i] = c.key
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := g.m.dd.Claims.Do(ctx, b)
			cancel()
			if len(confirms) > 0 {
				g.applyConfirms(confirms, res.Confirmed, err)
			}
			if len(claims) > 0 {
				g.applyClaims(claims, res.Outcomes, err, backoff)
			}
			// Releases are best effort: a failed one is not retried (the
			// lease expires anyway).
			g.setDegraded(err)
			if err == nil {
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

// takeBatch removes up to maxDedupeBatch items from the front of *q.
func takeBatch[T any](q *[]T) []T {
	n := min(len(*q), maxDedupeBatch)
	if n == 0 {
		return nil
	}
	out := (*q)[:n:n]
	if n == len(*q) {
		*q = nil
	} else {
		*q = (*q)[n:]
	}
	return out
}

// applyConfirms finishes confirmed records; on error it queues the confirms
// again (the records stay unfinished, so uncommitted).
func (g *group) applyConfirms(confirms []pendingConfirm, oks []bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.stats.redisErrors.Add(1)
		for _, c := range confirms {
			if !c.bestEffort {
				g.dd.confirms = append(g.dd.confirms, c)
			}
		}
		return
	}
	var touched []*partitionLog
	for i, c := range confirms {
		if c.retained != nil {
			if !oks[i] {
				g.stats.lostClaims.Add(1)
			}
			close(c.retained.confirmed)
			continue
		}
		if !oks[i] {
			// Another owner claimed it after our lease lapsed: it may have
			// been processed twice. Count it; the record is done here.
			g.stats.lostClaims.Add(1)
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
			g.stats.duplicates.Add(1)
			// Released above: finishing must not count it out of flight
			// again. (It did: the partition's in-flight count drifted
			// below the truth, so a stream's end could skip giving its
			// records back, and revoke and drain waits ended early.)
			r.state = stateReady
			g.finishLocked(l, r)
			touched = append(touched, l)
		case outcomes[i] == dedupe.HeldElsewhere:
			g.stats.held.Add(1)
			r.state = stateBackoff
			r.deadline = now.Add(g.m.dd.HoldRetry)
			g.scheduleLocked(r, l)
		case s == nil: // the stream went away while claiming
			g.dd.releases = append(g.dd.releases, c.claim.Key())
			l.markReady(r)
		default:
			g.stats.claims.Add(1)
			r.unclaimed = false
			g.deliverLocked(s, l, r, now)
		}
	}
	if err != nil {
		g.stats.redisErrors.Add(1)
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
