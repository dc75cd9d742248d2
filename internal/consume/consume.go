package consume

import (
	"context"
	"errors"
	"time"

	"github.com/kafkagate/gateway/internal/invalid"
)

// Outcome is what became of one delivery named in a Settle.
type Outcome uint8

const (
	// Applied: done as asked. An ack's record is done (with dedupe: its
	// done marker is written); a nack's is redelivered or dead-lettered;
	// an extension's deadline moved (with dedupe: with its claim's lease).
	Applied Outcome = iota + 1
	// Stale: the token names no live delivery of this stream: unknown or
	// settled already, the record went out again (its deadline passed, or
	// it was nacked), its partition moved away, or (with dedupe) its claim
	// was taken by another delivery. Nothing was applied.
	Stale
	// AlreadyAcked: a nack or extension of a record acknowledged already.
	AlreadyAcked
	// Pending: with dedupe, an ack applied whose done marker is not yet in
	// Redis (the gateway keeps trying; the record is not redelivered by
	// this gateway), or an extension Redis did not confirm (its deadline
	// stands as it was).
	Pending
)

// SettleRequest settles deliveries of a Consume stream, named by token.
type SettleRequest struct {
	Acks      []uint64
	Nacks     []uint64
	Nack      NackOptions
	Extends   []uint64
	Extension time.Duration // for Extends; positive, at most consumer.max_ack_timeout
}

// SettleResult is the outcome of each token of a SettleRequest, in its
// order, and each extension's ack deadline.
type SettleResult struct {
	Acks, Nacks, Extends []Outcome
	Deadlines            []time.Time // per extension; zero where not applied
}

// PendingSettle is a Settle applied to the group, whose acks and
// extensions may still wait for Redis.
type PendingSettle struct {
	res   SettleResult
	acks  []*confirmation // per ack; nil: nothing to wait for
	exts  []*confirmation // per extension
	until time.Duration
}

// Settle applies the acks, nacks and extensions of deliveries this stream
// holds, each on its own: a token that is not live is Stale, and the rest
// apply. Wait on the result for the outcomes. It fails, applying nothing,
// on bad options (the error names the field under "settle.").
func (s *Stream) Settle(req SettleRequest) (*PendingSettle, error) {
	g := s.g
	cfg := &g.m.cfg
	switch {
	case req.Nack.RetryAfter < 0 || req.Nack.RetryAfter > cfg.MaxRetryAfter:
		return nil, invalid.Field("settle.retry_after", "is %v; it must lie between 0 and consumer.max_retry_after (%v)", req.Nack.RetryAfter, cfg.MaxRetryAfter)
	case len(req.Nack.Reason) > 1024:
		return nil, invalid.Field("settle.reason", "is %d bytes long; at most 1024 are allowed", len(req.Nack.Reason))
	case len(req.Extends) > 0 && (req.Extension <= 0 || req.Extension > cfg.MaxAckTimeout):
		return nil, invalid.Field("settle.extension", "is %v; with extends it must be positive and at most consumer.max_ack_timeout (%v)", req.Extension, cfg.MaxAckTimeout)
	}
	p := &PendingSettle{
		res: SettleResult{
			Acks: make([]Outcome, len(req.Acks)), Nacks: make([]Outcome, len(req.Nacks)),
			Extends: make([]Outcome, len(req.Extends)), Deadlines: make([]time.Time, len(req.Extends)),
		},
		acks: make([]*confirmation, len(req.Acks)), exts: make([]*confirmation, len(req.Extends)),
		until: confirmWait,
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	resolve := func(tok uint64) (target, Outcome) {
		id, ok := s.tokens.lookup(tok)
		if !ok {
			return target{}, Stale
		}
		t, stale := g.resolveOneLocked(id)
		if stale != "" {
			return target{}, Stale
		}
		return t, 0
	}
	var touched []*partitionLog
	acked := 0
	for i, tok := range req.Acks {
		t, o := resolve(tok)
		if o == 0 && ackable(t) != nil {
			o = Stale
		}
		if o != 0 {
			p.res.Acks[i] = o
			continue
		}
		p.acks[i] = g.ackLocked(t, &touched)
		p.res.Acks[i] = Applied
		acked++
	}
	now := g.m.now()
	nacked := 0
	for i, tok := range req.Nacks {
		t, o := resolve(tok)
		if o == 0 {
			if err := nackable(t); err != nil {
				o = outcomeOf(err)
			}
		}
		if o != 0 {
			p.res.Nacks[i] = o
			continue
		}
		g.nackLocked(t, req.Nack, now)
		p.res.Nacks[i] = Applied
		nacked++
	}
	extended := 0
	for i, tok := range req.Extends {
		t, o := resolve(tok)
		if o == 0 {
			if err := extendable(t); err != nil {
				o = outcomeOf(err)
			}
		}
		if o != 0 {
			p.res.Extends[i] = o
			continue
		}
		p.res.Deadlines[i], p.exts[i] = g.extendLocked(t, req.Extension)
		p.res.Extends[i] = Applied
		extended++
	}
	g.storeLocked(touched...)
	g.metricsAcked(acked)
	g.metricsNacked(nacked)
	g.stats.extended.Add(int64(extended))
	g.dispatchLocked()
	return p, nil
}

// outcomeOf is the outcome of a refusal.
func outcomeOf(err error) Outcome {
	if errors.Is(err, ErrAlreadyAcked) {
		return AlreadyAcked
	}
	return Stale
}

// Wait waits for the done markers of the acks and the leases of the
// extensions (at most 10 s in all, or until ctx ends) and returns the
// outcomes: an ack or extension not yet confirmed then is Pending.
func (p *PendingSettle) Wait(ctx context.Context) SettleResult {
	timeout := time.NewTimer(p.until)
	defer timeout.Stop()
	expired := false
	outcome := func(c *confirmation) Outcome {
		if !expired {
			select {
			case <-c.done:
			case <-ctx.Done():
				expired = true
			case <-timeout.C:
				expired = true
			}
		}
		if o := c.ready(); o != 0 {
			return o
		}
		return Pending
	}
	for i, c := range p.acks {
		if c != nil {
			p.res.Acks[i] = outcome(c)
		}
	}
	for i, c := range p.exts {
		if c != nil {
			if p.res.Extends[i] = outcome(c); p.res.Extends[i] != Applied {
				p.res.Deadlines[i] = time.Time{}
			}
		}
	}
	return p.res
}
