package produce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// IdempotencyStore remembers which idempotency keys were written (see
// package dedupe).
type IdempotencyStore interface {
	ReserveProduce(ctx context.Context, topic string, intents []dedupe.Intent, ttl dedupe.ProduceTTL) ([]dedupe.ProduceState, error)
	WaitProduce(ctx context.Context, topic string, intents []dedupe.Intent, ttl dedupe.ProduceTTL) ([]dedupe.ProduceState, error)
	TakeOverProduce(ctx context.Context, topic string, in dedupe.Intent, stale *dedupe.StaleReservation, ttl dedupe.ProduceTTL) (dedupe.ProduceState, error)
	CompleteProduce(ctx context.Context, topic string, items []dedupe.Reservation, results []dedupe.ProduceResult, window time.Duration) ([]bool, error)
	AbortProduce(ctx context.Context, topic string, items []dedupe.Reservation) error
}

// EnableIdempotency makes Produce write a record with an idempotency key at
// most once per topic within window: a later Produce with the same key
// returns the first one's result without writing. Call it before Run.
func (p *Producer) EnableIdempotency(store IdempotencyStore, window time.Duration) {
	p.idem, p.idemWindow = store, window
}

// Idempotent reports whether records with an idempotency key need the
// idempotency protocol (and so go through Produce, not Send).
func (p *Producer) Idempotent(records []Record) bool {
	if p.idem == nil {
		return false
	}
	for i := range records {
		if records[i].IdempotencyKey != "" {
			return true
		}
	}
	return false
}

// settleTimeout bounds each store call that settles reservations after
// the call that made them (complete, abort).
const settleTimeout = 10 * time.Second

// pendingTTL is how long a reservation's writer has to settle it: it must
// outlast the delivery report of its record, which comes at the latest
// producer.delivery_timeout after the record was enqueued (after up to
// queue_full_wait for room), or with the purge at shutdown (after up to
// flush_timeout); 10 s more cover the store's own round trips. A
// reservation outlives its report only when its write's fate is unknown
// (see settle), or its writer died: after pendingTTL another writer may
// take it over and look for the record in the topic (see recoverKey).
func (p *Producer) pendingTTL() time.Duration {
	return p.cfg.DeliveryTimeout + p.cfg.QueueFullWait + p.cfg.FlushTimeout + p.settleMargin
}

// reservationTTL are the times of this producer's reservations: settled by
// pendingTTL, kept for the idempotency window, so a retry within the window
// of a write whose writer vanished finds the reservation and looks for the
// record rather than writing it blind.
func (p *Producer) reservationTTL() dedupe.ProduceTTL {
	settle := p.pendingTTL()
	return dedupe.ProduceTTL{Settle: settle, Keep: max(settle, p.idemWindow)}
}

// intent describes rec, written under its idempotency key, for the key's
// reservation: the partition it goes to when known in advance (explicit,
// or its key's with the Java-compatible partitioner) and the earliest
// timestamp it may carry.
func (p *Producer) intent(rec *Record, partitions int32, now time.Time) dedupe.Intent {
	in := dedupe.Intent{Key: rec.IdempotencyKey, Partition: -1, From: now}
	switch {
	case rec.Partition >= 0:
		in.Partition = rec.Partition
	case rec.Key != nil && p.javaKeys && partitions > 0:
		in.Partition = javaPartition(rec.Key, partitions)
	}
	if ts := rec.Timestamp; !ts.IsZero() && ts.Before(now) {
		in.From = ts
	}
	return in
}

// produceIdempotent writes records whose idempotency keys were not written
// before, in one reservation round trip per call:
//
//  1. reserve every distinct key (SET NX); keys written before return their
//     stored result, keys another writer holds are waited for (until they
//     are settled, or ctx ends);
//  2. write the records whose key this call reserved (the first record of
//     each key; later records with the same key in the call share its
//     result) and those without a key, in request order;
//  3. settle each reservation from its record's delivery report (see
//     settle): store the result, give the key up when the record was
//     certainly not written, or keep the reservation when its fate is
//     unknown.
//
// Step 3 belongs to the producer, not to the call: when ctx ends before
// the reports, the call returns ctx's error, and the reservations are
// settled when the reports come (the producer always gets one, at the
// latest at shutdown, whose Run waits for this). A retry meanwhile waits
// for the key, so it returns the first write's result rather than writing
// again.
//
// If the store fails, nothing is written: the call fails with
// kafkaclient.ErrUnavailable wrapped (an idempotent write needs the store).
func (p *Producer) produceIdempotent(ctx context.Context, topic string, records []Record) ([]Result, error) {
	if err := p.validate(topic, records); err != nil {
		return nil, err
	}
	// An unknown topic fails here, before anything is reserved; Send finds
	// the topic in the cache.
	partitions, err := p.topics.get(ctx, topic)
	if err != nil {
		return nil, err
	}
	index := map[string]int{} // key → position in intents
	var intents []dedupe.Intent
	now := time.Now()
	for i := range records {
		if k := records[i].IdempotencyKey; k != "" {
			if _, ok := index[k]; !ok {
				index[k] = len(intents)
				intents = append(intents, p.intent(&records[i], partitions, now))
			}
		}
	}
	ttl := p.reservationTTL()
	states, err := p.idem.ReserveProduce(ctx, topic, intents, ttl)
	if err != nil {
		return nil, fmt.Errorf("reserve idempotency keys: %w", err)
	}
	for {
		if err := p.waitPending(ctx, topic, intents, states, ttl); err != nil {
			return nil, err
		}
		stale := false
		for i := range states {
			if states[i].Stale == nil {
				continue
			}
			stale = true
			st, err := p.recoverKey(ctx, topic, intents[i], states[i].Stale, ttl)
			if err != nil {
				p.giveBack(topic, intents, states)
				return nil, fmt.Errorf("look for the write of idempotency key %q: %w", intents[i].Key, err)
			}
			states[i] = st
		}
		if !stale {
			break
		}
	}

	results := make([]Result, len(records))
	first := make(map[string]int, len(intents)) // key → index of the record that writes it
	var write []Record
	var writeAt []int
	var held []dedupe.Reservation // per record of write; Key "" for records without a key
	for i := range records {
		k := records[i].IdempotencyKey
		var r dedupe.Reservation
		if k != "" {
			st := states[index[k]]
			if st.Done != nil {
				results[i] = Result{Partition: st.Done.Partition, Offset: st.Done.Offset, Timestamp: st.Done.Timestamp, MessageID: st.Done.MessageID}
				continue
			}
			if _, dup := first[k]; dup {
				continue // filled from the first record with the key below
			}
			first[k] = i
			r = dedupe.Reservation{Key: k, Token: st.Token}
		}
		write = append(write, records[i])
		writeAt = append(writeAt, i)
		held = append(held, r)
	}

	if len(write) > 0 {
		b, err := p.writeReserved(ctx, topic, write, held)
		if err != nil {
			return nil, err
		}
		for j, i := range writeAt {
			results[i] = b.Results[j]
		}
	}
	for i := range records {
		if k := records[i].IdempotencyKey; k != "" {
			if f, ok := first[k]; ok && f != i {
				results[i] = results[f]
			}
		}
	}
	return results, nil
}

// sent is what Send made of a batch, handed to the goroutine that settles
// its reservations.
type sent struct {
	batch *Batch
	err   error
	done  <-chan *Batch
}

// writeReserved writes records, whose reservations are held (Key "" for a
// record without a key), and returns the complete batch once every record
// has its report and the reservations are settled, or ctx's error first.
// The settling goroutine is started before Send, so that it belongs to a
// producer still running (and Run waits for it).
func (p *Producer) writeReserved(ctx context.Context, topic string, records []Record, held []dedupe.Reservation) (*Batch, error) {
	handoff := make(chan sent, 1)
	settled := make(chan struct{})
	var reported bool // every record has its report; read after settled
	if !p.settling.start(func() {
		defer close(settled)
		reported = p.settle(topic, held, <-handoff)
	}) {
		// Shutting down: nothing more is enqueued.
		p.abort(topic, held)
		return nil, ErrClosed
	}
	done := make(chan *Batch, 1)
	b, err := p.Send(ctx, topic, records, done, nil)
	handoff <- sent{batch: b, err: err, done: done}
	if err != nil {
		return nil, err
	}
	select {
	case <-settled:
		if !reported {
			return nil, fmt.Errorf("%w: no delivery report before the client closed; the records may or may not be written", ErrClosed)
		}
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// settle finishes the reservations of one written batch from its delivery
// reports:
//
//   - written: the result is stored for the window, so a retry returns it;
//   - certainly not written (never enqueued, or failed with librdkafka's
//     status "not persisted": timed out or purged before it was sent,
//     refused by the broker): the reservation is deleted, so a retry
//     writes;
//   - fate unknown (timed out or purged in flight, which librdkafka calls
//     "possibly persisted", or no report before the client closed): the
//     reservation is kept. A retry meanwhile waits for it (up to its own
//     deadline); once pendingTTL has passed, a retry takes it over and
//     looks for the record in the topic (recoverKey).
//
// Each store call is bounded by settleTimeout. It reports whether the
// batch was enqueued and every record of it reported.
func (p *Producer) settle(topic string, held []dedupe.Reservation, s sent) bool {
	if s.err != nil { // nothing of the batch was enqueued
		p.abort(topic, held)
		return false
	}
	b := s.batch
	select {
	case <-s.done:
	case <-p.reportsEnded:
		select {
		case <-s.done:
		default:
			p.logger.Warn("no delivery report before the producer closed; keeping idempotency reservations until they expire",
				"topic", topic, "records", len(held))
			return false
		}
	}
	var complete, abort []dedupe.Reservation
	var stored []dedupe.ProduceResult
	unknown := 0
	for j, r := range held {
		if r.Key == "" {
			continue
		}
		res := &b.Results[j]
		switch {
		case res.Err == nil:
			complete = append(complete, r)
			stored = append(stored, dedupe.ProduceResult{Partition: res.Partition, Offset: res.Offset, Timestamp: res.Timestamp, MessageID: res.MessageID})
		case j >= b.enqueued || res.unwritten:
			abort = append(abort, r)
		default:
			unknown++
		}
	}
	if unknown > 0 {
		p.logger.Warn("records of unknown fate; keeping their idempotency reservations (a retry waits, then looks for the record in the topic)",
			"topic", topic, "records", unknown, "after", p.pendingTTL())
	}
	if len(complete) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		ok, err := p.idem.CompleteProduce(ctx, topic, complete, stored, p.idemWindow)
		cancel()
		if err != nil {
			p.logger.Warn("store idempotency results; a retry of these keys may write again", "topic", topic, "keys", len(complete), "err", err)
		}
		for j, o := range ok {
			if !o {
				p.logger.Warn("idempotency key taken over by another writer after its reservation went stale", "topic", topic, "key", complete[j].Key)
			}
		}
	}
	p.abort(topic, abort)
	return true
}

// abort gives up the reservations of records certainly not written (items
// with an empty Key are skipped), bounded by settleTimeout. A failure is
// only logged: the reservations then expire.
func (p *Producer) abort(topic string, items []dedupe.Reservation) {
	var mine []dedupe.Reservation
	for _, r := range items {
		if r.Key != "" {
			mine = append(mine, r)
		}
	}
	if len(mine) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := p.idem.AbortProduce(ctx, topic, mine); err != nil {
		p.logger.Debug("release idempotency reservations; they expire instead", "topic", topic, "keys", len(mine), "err", err)
	}
}

// waitPending waits for the keys another writer holds, updating states:
// each ends Reserved, Done or Stale.
func (p *Producer) waitPending(ctx context.Context, topic string, intents []dedupe.Intent, states []dedupe.ProduceState, ttl dedupe.ProduceTTL) error {
	var pending []dedupe.Intent
	var at []int
	for i, st := range states {
		if st.Pending() {
			pending = append(pending, intents[i])
			at = append(at, i)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	ws, err := p.idem.WaitProduce(ctx, topic, pending, ttl)
	for j, i := range at {
		if j < len(ws) {
			states[i] = ws[j]
		}
	}
	if err != nil {
		p.giveBack(topic, intents, states)
		return fmt.Errorf("wait for idempotency keys: %w", err)
	}
	return nil
}

// giveBack gives up whatever keys this call reserved, when it ends without
// writing.
func (p *Producer) giveBack(topic string, intents []dedupe.Intent, states []dedupe.ProduceState) {
	var mine []dedupe.Reservation
	for i, st := range states {
		if st.Reserved {
			mine = append(mine, dedupe.Reservation{Key: intents[i].Key, Token: st.Token})
		}
	}
	if len(mine) > 0 && !p.settling.start(func() { p.abort(topic, mine) }) {
		p.abort(topic, mine)
	}
}

// recoverKey settles a stale reservation: its writer did not store the
// result of its write in time, because it died or never learned whether
// the record was written. The caller takes the reservation over (only one
// caller does), then looks for the record in the topic, from the earliest
// timestamp it may carry, in its partition when known: found, its result is
// stored and returned (Done), and the record is not written again; not
// found, the caller holds the key (Reserved) and writes the record. The
// writer's record can no longer land by then: its delivery timeout has
// passed. When the search cannot end (the broker is unreachable), the
// error is returned and the reservation, the caller's now, turns stale
// again after pendingTTL for the next retry. A search that would read more
// than findMaxBytes gives up looking: the record is written, logged, and
// the topic may then hold it twice with one message ID.
func (p *Producer) recoverKey(ctx context.Context, topic string, in dedupe.Intent, stale *dedupe.StaleReservation, ttl dedupe.ProduceTTL) (dedupe.ProduceState, error) {
	st, err := p.idem.TakeOverProduce(ctx, topic, in, stale, ttl)
	if err != nil || !st.Reserved {
		return st, err
	}
	p.logger.Info("idempotency key left unsettled by its writer; looking for its record in the topic",
		"topic", topic, "key", in.Key, "writer", stale.Owner, "partition", stale.Partition, "from", stale.From)
	res, found, err := p.finder.Find(ctx, topic, stale.Partition, stale.From, in.Key)
	switch {
	case errors.Is(err, errTooFar):
		p.logger.Warn("idempotency key's record not looked for further; writing it (the topic may hold it twice, with one message ID)",
			"topic", topic, "key", in.Key, "max_bytes", findMaxBytes)
		return st, nil
	case err != nil:
		return dedupe.ProduceState{}, err
	case !found:
		return st, nil
	}
	ok, err := p.idem.CompleteProduce(ctx, topic, []dedupe.Reservation{{Key: in.Key, Token: st.Token}}, []dedupe.ProduceResult{res}, p.idemWindow)
	if err != nil {
		return dedupe.ProduceState{}, fmt.Errorf("store the result found: %w", err)
	}
	if !ok[0] {
		return dedupe.ProduceState{}, fmt.Errorf("%w: idempotency key %q taken over while its record was looked for", kafkaclient.ErrUnavailable, in.Key)
	}
	return dedupe.ProduceState{Done: &res}, nil
}

// background runs work that outlives the call that started it, owned by
// the producer: Run waits for it at shutdown.
type background struct {
	mu     sync.Mutex
	closed bool // no more work starts
	wg     sync.WaitGroup
}

// start runs fn on a goroutine of its own and reports true, or reports
// false once close has begun (fn does not run).
func (bg *background) start(fn func()) bool {
	bg.mu.Lock()
	defer bg.mu.Unlock()
	if bg.closed {
		return false
	}
	bg.wg.Go(fn)
	return true
}

// close stops new work from starting and waits for the work started.
func (bg *background) close() {
	bg.mu.Lock()
	bg.closed = true
	bg.mu.Unlock()
	bg.wg.Wait()
}
