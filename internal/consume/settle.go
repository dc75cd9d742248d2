package consume

import "time"

// settlement is how a group takes records from dispatch to done: directly
// (no dedupe), or through claims and done markers in Redis
// (dedupeSettlement). It is chosen once when the group starts; the group
// never asks whether dedupe is on. Every method but start and stop runs
// under the group's mutex and changes records only through their
// partition log's transitions.
type settlement interface {
	// dispatch hands r, picked by dispatch for s, towards s: delivered now,
	// or once its claim is taken.
	dispatch(s *Stream, l *partitionLog, r *record)
	// processed settles r after an Ack of its latest delivery (or after its
	// dead letter was written). It returns what the Ack waits for, or nil
	// when r is done already.
	processed(l *partitionLog, r *record) *confirmation
	// abandoned is told that r's delivery ended without the record being
	// processed (a Nack, its ack deadline, taken back unsent) before r is
	// requeued: a claim is given back.
	abandoned(l *partitionLog, r *record)
	// deadLettered settles r, whose dead letter of the given delivery was
	// written; its partition may have been forgotten meanwhile.
	deadLettered(l *partitionLog, r *record, delivery uint32)
	// extend moves the ack deadline of r (in flight, its latest delivery
	// named by an Extend) out to deadline. It returns what the Extend
	// waits for (with dedupe: the claim's lease moved in Redis before the
	// deadline moves), or nil when the deadline has moved already.
	extend(l *partitionLog, r *record, deadline time.Time) *confirmation
	// streamGone is told that the stream holding r ended.
	streamGone(l *partitionLog, r *record)
	// forgetting sees r, not done, as its partition is forgotten; retain
	// keeps (with dedupe) the claim of a record an app holds, so that its
	// late Ack still settles it, instead of releasing it.
	forgetting(l *partitionLog, r *record, retain bool)
	// retained returns the claim kept for id's delivery on a forgotten
	// partition, or nil; ackRetained and nackRetained settle it.
	retained(id AckID) *retainedClaim
	ackRetained(id AckID, rc *retainedClaim) *confirmation
	nackRetained(id AckID, rc *retainedClaim)
	// degraded reports whether the settlement cannot do its work (Redis
	// unreachable).
	degraded() bool
	// start starts the settlement's workers (owned by the group's wait
	// group); stop sends what is queued (bounded) and stops them.
	start()
	stop()
}

// directSettlement is the settlement without dedupe: at-least-once. A
// delivery goes out at once, an Ack makes the record done, and the records
// of a stream that ends go to the group's other streams at once (the app
// did not fail them, so the attempt is not counted).
type directSettlement struct{ g *group }

func (d directSettlement) dispatch(s *Stream, l *partitionLog, r *record) {
	d.g.deliverLocked(s, l, r)
}

func (d directSettlement) processed(l *partitionLog, r *record) *confirmation {
	l.finish(r)
	return nil
}

func (directSettlement) abandoned(*partitionLog, *record) {}

func (directSettlement) extend(l *partitionLog, r *record, deadline time.Time) *confirmation {
	l.extend(r, deadline)
	return nil
}

func (directSettlement) deadLettered(l *partitionLog, r *record, delivery uint32) {
	if r.state == stateDeadLetter && r.delivery == delivery {
		l.finish(r)
	}
}

func (directSettlement) streamGone(l *partitionLog, r *record) {
	if r.state == stateInflight {
		l.giveBack(r)
	}
}

func (directSettlement) forgetting(*partitionLog, *record, bool)         {}
func (directSettlement) retained(AckID) *retainedClaim                   { return nil }
func (directSettlement) ackRetained(AckID, *retainedClaim) *confirmation { return nil }
func (directSettlement) nackRetained(AckID, *retainedClaim)              {}
func (directSettlement) degraded() bool                                  { return false }
func (directSettlement) start()                                          {}
func (directSettlement) stop()                                           {}
