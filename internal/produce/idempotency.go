package produce

import (
	"context"
	"fmt"
	"time"

	"github.com/kafkagate/gateway/internal/dedupe"
)

// IdempotencyStore remembers which idempotency keys were written (see
// package dedupe).
type IdempotencyStore interface {
	ReserveProduce(ctx context.Context, topic string, keys []string, pendingTTL time.Duration) ([]dedupe.ProduceState, error)
	WaitProduce(ctx context.Context, topic string, keys []string, pendingTTL time.Duration) ([]dedupe.ProduceState, error)
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

// produceIdempotent writes records whose idempotency keys were not written
// before, in one reservation round trip per call:
//
//  1. reserve every distinct key (SET NX); keys written before return their
//     stored result, keys another writer holds are waited for;
//  2. write the records whose key this call reserved (the first record of
//     each key; later records with the same key in the call share its
//     result) and those without a key, in request order;
//  3. store each written record's result under its key, or give the key up
//     when the write failed, so that a retry may write it.
//
// If the store fails, nothing is written: the call fails with
// kafkaclient.ErrUnavailable wrapped (an idempotent write needs the store).
func (p *Producer) produceIdempotent(ctx context.Context, topic string, records []Record) ([]Result, error) {
	if err := p.validate(topic, records); err != nil {
		return nil, err
	}
	index := map[string]int{} // key → position in keys
	var keys []string
	for i := range records {
		if k := records[i].IdempotencyKey; k != "" {
			if _, ok := index[k]; !ok {
				index[k] = len(keys)
				keys = append(keys, k)
			}
		}
	}
	pendingTTL := p.cfg.DeliveryTimeout + 10*time.Second
	states, err := p.idem.ReserveProduce(ctx, topic, keys, pendingTTL)
	if err != nil {
		return nil, fmt.Errorf("reserve idempotency keys: %w", err)
	}
	if err := p.waitPending(ctx, topic, keys, states, pendingTTL); err != nil {
		return nil, err
	}

	results := make([]Result, len(records))
	first := make(map[string]int, len(keys)) // key → index of the record that writes it
	var write []Record
	var writeAt []int
	for i := range records {
		k := records[i].IdempotencyKey
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
		}
		write = append(write, records[i])
		writeAt = append(writeAt, i)
	}

	var written []Result
	if len(write) > 0 {
		written, err = p.produce(ctx, topic, write)
	}
	var complete, abort []dedupe.Reservation
	var stored []dedupe.ProduceResult
	for j, i := range writeAt {
		if err == nil {
			results[i] = written[j]
		}
		k := records[i].IdempotencyKey
		if k == "" {
			continue
		}
		r := dedupe.Reservation{Key: k, Token: states[index[k]].Token}
		if err == nil && written[j].Err == nil {
			complete = append(complete, r)
			stored = append(stored, dedupe.ProduceResult{Partition: written[j].Partition, Offset: written[j].Offset, Timestamp: written[j].Timestamp, MessageID: written[j].MessageID})
		} else {
			abort = append(abort, r)
		}
	}
	// Recording outcomes must not depend on the caller still waiting.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if len(complete) > 0 {
		if ok, cerr := p.idem.CompleteProduce(rctx, topic, complete, stored, p.idemWindow); cerr != nil {
			p.logger.Warn("store idempotency results; a retry of these keys may write again", "topic", topic, "keys", len(complete), "err", cerr)
		} else {
			for j, o := range ok {
				if !o {
					p.logger.Warn("idempotency key taken over by another writer after its reservation expired", "topic", topic, "key", complete[j].Key)
				}
			}
		}
	}
	if len(abort) > 0 {
		if aerr := p.idem.AbortProduce(rctx, topic, abort); aerr != nil {
			p.logger.Debug("release idempotency reservations", "err", aerr)
		}
	}
	if err != nil {
		return nil, err
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

// waitPending waits for the keys another writer holds, updating states.
func (p *Producer) waitPending(ctx context.Context, topic string, keys []string, states []dedupe.ProduceState, pendingTTL time.Duration) error {
	var pending []string
	var at []int
	for i, st := range states {
		if st.Pending() {
			pending = append(pending, keys[i])
			at = append(at, i)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	ws, err := p.idem.WaitProduce(ctx, topic, pending, pendingTTL)
	for j, i := range at {
		if j < len(ws) {
			states[i] = ws[j]
		}
	}
	if err != nil {
		// Give back whatever this call reserved; nothing is written.
		var mine []dedupe.Reservation
		for i, st := range states {
			if st.Reserved {
				mine = append(mine, dedupe.Reservation{Key: keys[i], Token: st.Token})
			}
		}
		if len(mine) > 0 {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = p.idem.AbortProduce(actx, topic, mine)
			cancel()
		}
		return fmt.Errorf("wait for idempotency keys: %w", err)
	}
	return nil
}
