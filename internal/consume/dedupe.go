package consume

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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

// errLostClaim answers an Ack whose done marker found another delivery's
// claim: the ack's lease had lapsed and the message was claimed again, so
// the Ack is not applied.
var errLostClaim = fmt.Errorf("its dedupe claim was taken by another delivery after its lease lapsed: %w", ErrStaleAck)

// errClaimGone answers an Extend whose claim is no longer this delivery's
// in Redis, or whose record left flight while the lease was being moved.
var errClaimGone = fmt.Errorf("its lease ended before it could be extended: %w", ErrStaleAck)

// dedupeSettlement is the settlement with consumer-side dedupe: a message
// ID is processed once per group and source topic (DESIGN.md, "Dedupe"):
//
//   - dispatch picks a record for a stream (claiming: it holds the stream's
//     credit and the ordering slot); a worker claims a batch of them in one
//     pipelined round trip. Claimed: delivered. Duplicate: done at once,
//     never delivered. HeldElsewhere: back off for hold_retry.
//   - Ack: confirming; a worker writes the done markers, and only then is
//     the record done for the commit rule, and the Ack answered OK. A done
//     marker that finds another delivery's claim answers the Ack
//     FAILED_PRECONDITION and the record goes out again (it is then held
//     or found done).
//   - Nack, ack deadline, taken back unsent: the claim is released (best
//     effort; the lease expires anyway).
//   - Stream gone: the record stays in flight under its claim until its
//     ack deadline (the app may still work on it); its late Ack settles it.
//   - Partition revoked or lost while an app holds a record: its claim is
//     retained here (by ack ID, until the ack deadline) and stays in Redis,
//     so the partition's next owner holds its copy; the late Ack writes the
//     done marker, a late Nack releases the claim.
//
// A claim's Record is "topic/partition/offset/epoch": this gateway takes
// over its own claim only within the same assignment of the partition (a
// release that was lost), never one it retains for an app from an earlier
// assignment.
//
// When Redis fails, claims back off (pause) or deliver without a claim
// (deliver), confirms are retried until they land, and the state flips to
// degraded, logged once per transition.
type dedupeSettlement struct {
	g   *group
	cfg *Dedupe

	wake       chan struct{}
	quit       chan struct{}
	stopOnce   sync.Once
	workers    sync.WaitGroup
	isDegraded atomic.Bool

	// Guarded by g.mu.
	claims   []pendingClaim
	confirms []pendingConfirm
	releases []dedupe.Key
	extends  []pendingExtend
	kept     map[AckID]*retainedClaim
}

// pendingExtend is an Extend of a claimed delivery: its claim's lease is
// moved in Redis first, then its ack deadline.
type pendingExtend struct {
	l        *partitionLog
	r        *record
	delivery uint32
	deadline time.Time
	ext      dedupe.Extension
	conf     *confirmation
}

type pendingClaim struct {
	l        *partitionLog
	r        *record
	delivery uint32
	claim    dedupe.Claim
}

type pendingConfirm struct {
	key  dedupe.Key
	conf *confirmation // nil: best effort, nobody waits
	// For a record of a live log (nil for a retained claim): the record to
	// finish once its marker is written.
	l          *partitionLog
	r          *record
	deadLetter bool // the record was dead-lettered: done even if the claim was lost
}

// retainedClaim is the claim of a record that its app held unacknowledged
// when the record's partition was forgotten (see dedupeSettlement).
type retainedClaim struct {
	key     dedupe.Key
	expires time.Time
	confirm *confirmation // made by the first Ack
}

func newDedupeSettlement(g *group, cfg *Dedupe) *dedupeSettlement {
	return &dedupeSettlement{g: g, cfg: cfg, wake: make(chan struct{}, 1), quit: make(chan struct{}), kept: make(map[AckID]*retainedClaim)}
}

// key names the claim of r's delivery.
func (d *dedupeSettlement) key(l *partitionLog, r *record, delivery uint32) dedupe.Key {
	rec := make([]byte, 0, len(l.topic)+48)
	rec = append(rec, l.topic...)
	rec = append(rec, '/')
	rec = strconv.AppendInt(rec, int64(l.partition), 10)
	rec = append(rec, '/')
	rec = strconv.AppendInt(rec, r.offset, 10)
	rec = append(rec, '/')
	rec = strconv.AppendUint(rec, l.epoch, 10)
	return dedupe.Key{Group: d.g.settings.Group, Topic: l.topic, MessageID: l.messageID(r), Delivery: delivery, Record: string(rec)}
}

// lease is how long a claim holds without a confirm or release: the ack
// timeout and a margin, so that it outlasts the delivery's ack deadline.
func (d *dedupeSettlement) lease() time.Duration {
	return d.g.settings.AckTimeout + d.leaseMargin()
}

// leaseMargin is how long a claim outlasts its delivery's ack deadline.
func (d *dedupeSettlement) leaseMargin() time.Duration {
	return max(d.g.settings.AckTimeout/2, 5*time.Second)
}

func (d *dedupeSettlement) extend(l *partitionLog, r *record, deadline time.Time) *confirmation {
	if r.unclaimed {
		// Delivered without a claim (Redis was down): nothing to move there.
		l.extend(r, deadline)
		return nil
	}
	k := d.key(l, r, r.delivery)
	c := newConfirmation()
	d.extends = append(d.extends, pendingExtend{
		l: l, r: r, delivery: r.delivery, deadline: deadline, conf: c,
		ext: dedupe.Extension{Key: k, Lease: deadline.Sub(d.g.m.now()) + d.leaseMargin()},
	})
	d.kick()
	return c
}

func (d *dedupeSettlement) dispatch(s *Stream, l *partitionLog, r *record) {
	l.pick(r, s)
	k := d.key(l, r, r.delivery)
	d.claims = append(d.claims, pendingClaim{l: l, r: r, delivery: r.delivery, claim: dedupe.Claim{
		Group: k.Group, Topic: k.Topic, MessageID: k.MessageID, Delivery: k.Delivery, Record: k.Record, Lease: d.lease(),
	}})
	d.kick()
}

func (d *dedupeSettlement) processed(l *partitionLog, r *record) *confirmation {
	k := d.key(l, r, r.delivery)
	if r.unclaimed {
		// Delivered without a claim (Redis was down): the marker is best
		// effort, and the commit does not wait for Redis.
		d.confirms = append(d.confirms, pendingConfirm{key: k})
		l.finish(r)
		d.kick()
		return nil
	}
	dl := r.state == stateDeadLetter
	c := l.confirming(r)
	d.confirms = append(d.confirms, pendingConfirm{key: k, conf: c, l: l, r: r, deadLetter: dl})
	d.kick()
	return c
}

func (d *dedupeSettlement) abandoned(l *partitionLog, r *record) {
	if r.state == stateInflight && !r.unclaimed {
		d.release(d.key(l, r, r.delivery))
	}
}

func (d *dedupeSettlement) release(k dedupe.Key) {
	d.releases = append(d.releases, k)
	d.kick()
}

func (d *dedupeSettlement) streamGone(l *partitionLog, r *record) {
	// Claiming: the claim's answer gives it back. In flight: it stays under
	// its claim until its deadline; a late Ack of the app settles it.
	l.orphan(r)
}

func (d *dedupeSettlement) forgetting(l *partitionLog, r *record, retain bool) {
	switch {
	case r.state != stateInflight || r.unclaimed:
		// Claiming: the claim's answer finds the log gone and releases it.
		// Confirming: its marker is on its way. Dead-lettering: the dead
		// letter's marker is written when it lands.
	case retain:
		now := d.g.m.now()
		for id, e := range d.kept {
			if now.After(e.expires) && e.confirm == nil {
				delete(d.kept, id)
			}
		}
		id := AckID{Topic: l.topic, Partition: l.partition, Offset: r.offset, Epoch: l.epoch, Delivery: r.delivery}
		d.kept[id] = &retainedClaim{key: d.key(l, r, r.delivery), expires: r.deadline}
	default:
		d.release(d.key(l, r, r.delivery))
	}
}

func (d *dedupeSettlement) retained(id AckID) *retainedClaim {
	e := d.kept[id]
	if e != nil && e.confirm == nil && d.g.m.now().After(e.expires) {
		delete(d.kept, id)
		return nil
	}
	return e
}

func (d *dedupeSettlement) ackRetained(_ AckID, rc *retainedClaim) *confirmation {
	if rc.confirm == nil {
		rc.confirm = newConfirmation()
		d.confirms = append(d.confirms, pendingConfirm{key: rc.key, conf: rc.confirm})
		d.kick()
	}
	return rc.confirm
}

func (d *dedupeSettlement) nackRetained(id AckID, rc *retainedClaim) {
	d.release(rc.key)
	delete(d.kept, id)
}

func (d *dedupeSettlement) deadLettered(l *partitionLog, r *record, delivery uint32) {
	if !l.gone && r.state == stateDeadLetter && r.delivery == delivery {
		d.processed(l, r)
		return
	}
	// Forgotten while its dead letter was being written: the done marker
	// still makes the partition's next owner drop its copy instead of
	// delivering it again.
	d.confirms = append(d.confirms, pendingConfirm{key: d.key(l, r, delivery)})
	d.kick()
}

func (d *dedupeSettlement) degraded() bool { return d.isDegraded.Load() }

func (d *dedupeSettlement) kick() {
	select {
	case d.wake <- struct{}{}:
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

func (d *dedupeSettlement) start() {
	for range dedupeWorkers {
		d.workers.Add(1)
		d.g.wg.Go(func() {
			defer d.workers.Done()
			d.loop()
		})
	}
}

// stop stops the workers, then sends what is still queued (releases and
// done markers: claims of a stopping group are moot) in one last bounded
// round trip, so that the partitions' next owner need not wait out leases,
// and Acks waiting for their markers get their answer.
func (d *dedupeSettlement) stop() {
	d.stopOnce.Do(func() { close(d.quit) })
	d.workers.Wait()
	g := d.g
	g.mu.Lock()
	confirms, releases := d.confirms, d.releases
	d.claims, d.confirms, d.releases = nil, nil, nil
	for _, e := range d.extends {
		e.conf.settle(ErrClosed)
	}
	d.extends = nil
	g.mu.Unlock()
	if len(confirms)+len(releases) == 0 {
		return
	}
	b := dedupe.Batch{Releases: releases, Confirms: make([]dedupe.Key, len(confirms))}
	for i, c := range confirms {
		b.Confirms[i] = c.key
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	res, err := d.cfg.Claims.Do(ctx, b)
	cancel()
	if err != nil {
		g.logger.Warn("final dedupe batch failed; the next owner waits for the leases", "releases", len(releases), "confirms", len(confirms), "err", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, c := range confirms {
		if c.conf == nil {
			continue
		}
		switch {
		case err != nil:
			c.conf.settle(fmt.Errorf("%w: %w", ErrConfirmPending, err))
		case !res.Confirmed[i]:
			c.conf.settle(errLostClaim)
		default:
			c.conf.settle(nil)
		}
	}
}

// loop is one of the group's dedupe workers: it takes the queued claims,
// confirms and releases and sends them in one pipelined round trip.
func (d *dedupeSettlement) loop() {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-d.quit:
			return
		case <-d.wake:
		}
		for {
			g := d.g
			g.mu.Lock()
			claims, confirms, extends, releases := takeBatch(&d.claims), takeBatch(&d.confirms), takeBatch(&d.extends), d.releases
			d.releases = nil
			more := len(d.claims)+len(d.confirms)+len(d.extends) > 0
			g.mu.Unlock()
			if len(claims)+len(confirms)+len(extends)+len(releases) == 0 {
				break
			}
			if more {
				d.kick() // the other worker takes the rest meanwhile
			}
			b := dedupe.Batch{Releases: releases}
			if len(extends) > 0 {
				b.Extends = make([]dedupe.Extension, len(extends))
				for i, e := range extends {
					b.Extends[i] = e.ext
				}
			}
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
			res, err := d.cfg.Claims.Do(ctx, b)
			cancel()
			if len(confirms) > 0 {
				d.applyConfirms(confirms, res.Confirmed, err)
			}
			if len(claims) > 0 {
				d.applyClaims(claims, res.Outcomes, err, backoff)
			}
			if len(extends) > 0 {
				d.applyExtends(extends, res.Extended, err)
			}
			// Releases are best effort: a failed one is not retried (the
			// lease expires anyway).
			d.setDegraded(err)
			if err == nil {
				backoff = 100 * time.Millisecond
				continue
			}
			select {
			case <-d.quit:
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

// applyConfirms settles confirmations; on error it queues the confirms
// again (their records stay confirming, so uncommitted).
func (d *dedupeSettlement) applyConfirms(confirms []pendingConfirm, oks []bool, err error) {
	g := d.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.stats.redisErrors.Add(1)
		for _, c := range confirms {
			if c.conf != nil {
				d.confirms = append(d.confirms, c)
			}
		}
		return
	}
	var touched []*partitionLog
	for i, c := range confirms {
		if !oks[i] {
			// Another delivery claimed the message after this one's lease
			// lapsed (an app slower than its lease while the gateway could
			// not reach Redis, say): it may be processed twice. Counted.
			g.stats.lostClaims.Add(1)
		}
		if c.conf == nil {
			continue
		}
		l, r := c.l, c.r
		lost := !oks[i] && !c.deadLetter
		if lost {
			c.conf.settle(errLostClaim)
		} else {
			c.conf.settle(nil)
		}
		if l == nil || l.gone || r.state != stateConfirming || r.confirm != c.conf {
			continue
		}
		r.confirm = nil
		if lost {
			// Not this delivery's to settle: deliver it again; its claim is
			// then held elsewhere or found done.
			r.ackedBy = 0
			l.requeue(r, time.Time{})
			continue
		}
		l.finish(r)
		touched = append(touched, l)
	}
	g.storeLocked(touched...)
	g.dispatchLocked()
}

// applyExtends moves the ack deadlines of the records whose claims' leases
// moved, and answers their Extends. An Extend that Redis did not answer is
// not retried: its record keeps the deadline it had, and the app may ask
// again.
func (d *dedupeSettlement) applyExtends(extends []pendingExtend, oks []bool, err error) {
	g := d.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.stats.redisErrors.Add(1)
	}
	for i, e := range extends {
		switch {
		case err != nil:
			e.conf.settle(fmt.Errorf("%w: %w", ErrExtendPending, err))
		case !oks[i] || e.l.gone || e.r.state != stateInflight || e.r.delivery != e.delivery:
			e.conf.settle(errClaimGone)
		default:
			e.l.extend(e.r, e.deadline)
			e.conf.settle(nil)
		}
	}
}

// applyClaims delivers claimed records, drops duplicates, holds records
// claimed elsewhere, and on error applies the Redis failure policy.
func (d *dedupeSettlement) applyClaims(claims []pendingClaim, outcomes []dedupe.Outcome, err error, backoff time.Duration) {
	g := d.g
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.m.now()
	var touched []*partitionLog
	for i, c := range claims {
		l, r := c.l, c.r
		if l.gone || r.state != stateClaiming || r.delivery != c.delivery {
			// Forgotten or taken back meanwhile: do not keep a claim.
			if err == nil && outcomes[i] == dedupe.Claimed {
				d.release(c.claim.Key())
			}
			continue
		}
		s := r.stream
		switch {
		case err != nil && d.cfg.Deliver && s != nil:
			r.unclaimed = true
			g.deliverLocked(s, l, r)
		case err != nil:
			l.requeue(r, now.Add(backoff))
		case outcomes[i] == dedupe.Duplicate:
			g.stats.duplicates.Add(1)
			l.finish(r)
			touched = append(touched, l)
		case outcomes[i] == dedupe.HeldElsewhere:
			g.stats.held.Add(1)
			l.requeue(r, now.Add(d.cfg.HoldRetry))
		case s == nil: // the stream went away while claiming
			d.release(c.claim.Key())
			l.requeue(r, time.Time{})
		default:
			g.stats.claims.Add(1)
			r.unclaimed = false
			g.deliverLocked(s, l, r)
		}
	}
	if err != nil {
		g.stats.redisErrors.Add(1)
	}
	g.storeLocked(touched...)
	for _, s := range g.streams {
		s.flush()
	}
	g.dispatchLocked()
}

// setDegraded records whether Redis is failing, logging transitions only.
func (d *dedupeSettlement) setDegraded(err error) {
	was := d.isDegraded.Swap(err != nil)
	switch {
	case err != nil && !was:
		policy := "delivery paused until it answers"
		if d.cfg.Deliver {
			policy = "delivering without dedupe until it answers"
		}
		d.g.logger.Warn("redis unavailable for dedupe; "+policy, "err", err)
	case err == nil && was:
		d.g.logger.Info("redis answers again; dedupe resumed")
	}
}
