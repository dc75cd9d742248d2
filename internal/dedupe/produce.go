package dedupe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// ProduceResult is what a Produce of a record with an idempotency key
// answered, returned again to every later Produce with the same key.
type ProduceResult struct {
	// Partition and Offset locate the record written.
	Partition int32
	Offset    int64
	// Timestamp is the record's CreateTime, kept to the nanosecond;
	// compare with Equal (it comes back in the local time zone).
	Timestamp time.Time
	// MessageID is the record's message-id header.
	MessageID string
}

// ProduceState is the state of one idempotency key. With neither Reserved
// nor Done, another writer is in progress: wait for it with
// [Store.WaitProduce].
type ProduceState struct {
	// Reserved: this caller holds the key and must write the record, then
	// [Store.CompleteProduce] or [Store.AbortProduce] it with Token.
	Reserved bool
	// Token identifies this caller's reservation (set with Reserved).
	Token string
	// Done is the result of the record written earlier with this key.
	Done *ProduceResult
}

// Pending reports whether another writer holds the key.
func (st ProduceState) Pending() bool { return !st.Reserved && st.Done == nil }

// Reservation is a key reserved by [Store.ReserveProduce] or
// [Store.WaitProduce], with the Token of its [ProduceState].
type Reservation struct {
	Key   string
	Token string
}

// ReserveProduce reserves each key of topic for writing, in one pipelined
// round trip: a free key becomes this caller's reservation (Reserved, for
// pendingTTL unless completed or aborted); a key with a stored result
// returns it (Done); a key reserved by another writer, in this process or
// another, is pending. keys must be distinct and not empty.
//
// pendingTTL must outlast the write (the Produce deadline, or the
// producer's delivery timeout): a reservation that expires before
// CompleteProduce lets another writer write the record too.
func (s *Store) ReserveProduce(ctx context.Context, topic string, keys []string, pendingTTL time.Duration) ([]ProduceState, error) {
	if err := checkProduce("reserve", topic, keys, pendingTTL); err != nil {
		return nil, err
	}
	states := make([]ProduceState, len(keys))
	if len(keys) == 0 {
		return states, nil
	}
	all := make([]int, len(keys))
	for i := range all {
		all[i] = i
	}
	if _, err := s.reserve(ctx, "reserve", topic, keys, all, nonce(), pendingTTL, states); err != nil {
		return nil, err
	}
	return states, nil
}

// WaitProduce waits for keys of topic held by other writers, polling them
// with backoff (5 ms doubling to 200 ms), one pipelined round trip per
// poll: a key is resolved when its result is stored (Done), or when its
// reservation is gone (the writer aborted, or died and its pendingTTL
// passed), in which case WaitProduce reserves it for this caller
// (Reserved). A key free or done from the start resolves at once, so
// WaitProduce also serves keys never passed to ReserveProduce.
//
// When ctx ends or Redis fails first, it returns the states known so far,
// unresolved ones pending, with the error: reservations it made are in
// them, to complete or abort.
func (s *Store) WaitProduce(ctx context.Context, topic string, keys []string, pendingTTL time.Duration) ([]ProduceState, error) {
	if err := checkProduce("wait", topic, keys, pendingTTL); err != nil {
		return nil, err
	}
	states := make([]ProduceState, len(keys))
	if len(keys) == 0 {
		return states, nil
	}
	pending := make([]int, len(keys))
	for i := range pending {
		pending[i] = i
	}
	token := nonce()
	backoff := 5 * time.Millisecond
	for {
		var err error
		if pending, err = s.reserve(ctx, "wait", topic, keys, pending, token, pendingTTL, states); err != nil {
			return states, err
		}
		if len(pending) == 0 {
			return states, nil
		}
		// Full jitter over the upper half spreads the waiters of one key.
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return states, fmt.Errorf("dedupe: wait: %w", ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// reserve runs reserveScript for keys[i] of each index in which, filling
// states[i], and returns the indexes still pending.
func (s *Store) reserve(ctx context.Context, op, topic string, keys []string, which []int, token string, pendingTTL time.Duration, states []ProduceState) ([]int, error) {
	value := s.reservationValue(token)
	calls := make([]call, len(which))
	for j, i := range which {
		calls[j] = call{reserveScript, []string{s.produceKey(topic, keys[i])}, []any{value, millis(pendingTTL)}}
	}
	cmds, err := s.run(ctx, op, calls)
	if err != nil {
		return which, err
	}
	var pending []int
	for j, i := range which {
		v, err := cmds[j].Text()
		if err != nil {
			return which, fmt.Errorf("dedupe: %s: unexpected reply %v (%v)", op, cmds[j].Val(), err)
		}
		switch {
		case v == "":
			states[i] = ProduceState{Reserved: true, Token: token}
		case strings.HasPrefix(v, "r|"):
			res, err := decodeResult(v)
			if err != nil {
				return which, fmt.Errorf("dedupe: %s: key %q: %w", op, keys[i], err)
			}
			states[i] = ProduceState{Done: &res}
		case strings.HasPrefix(v, "p|"):
			pending = append(pending, i)
		default:
			return which, fmt.Errorf("dedupe: %s: key %q holds an unknown value %q", op, keys[i], v)
		}
	}
	return pending, nil
}

// CompleteProduce stores the result of each reservation (results[i] for
// items[i]) for window, in one pipelined round trip, and returns per item
// whether it is stored: where the reservation is still there, or no
// longer anything (it expired and nobody reserved since). false, changing
// nothing, means another writer reserved the key after this reservation
// expired: the record may be written twice, and later Produces get that
// writer's result.
func (s *Store) CompleteProduce(ctx context.Context, topic string, items []Reservation, results []ProduceResult, window time.Duration) ([]bool, error) {
	if len(results) != len(items) {
		return nil, fmt.Errorf("%w: complete: %d results for %d reservations", ErrInvalid, len(results), len(items))
	}
	if err := checkReservations("complete", topic, items, window); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, nil
	}
	calls := make([]call, len(items))
	for i, it := range items {
		calls[i] = call{completeScript, []string{s.produceKey(topic, it.Key)},
			[]any{s.reservationValue(it.Token), encodeResult(results[i]), millis(window)}}
	}
	cmds, err := s.run(ctx, "complete", calls)
	if err != nil {
		return nil, err
	}
	return flags("complete", cmds)
}

// AbortProduce deletes each reservation that is still there, in one
// pipelined round trip, so a waiting or later Produce with the key may
// write. Call it when the write failed for sure (not when its fate is
// unknown: then let the reservation expire).
func (s *Store) AbortProduce(ctx context.Context, topic string, items []Reservation) error {
	if err := checkReservations("abort", topic, items, time.Millisecond); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	calls := make([]call, len(items))
	for i, it := range items {
		calls[i] = call{deleteIfScript, []string{s.produceKey(topic, it.Key)}, []any{s.reservationValue(it.Token)}}
	}
	_, err := s.run(ctx, "abort", calls)
	return err
}

// produceKey returns <prefix>produce:<topic>:<key>.
func (s *Store) produceKey(topic, key string) string {
	return s.prefix + "produce:" + nameEscaper.Replace(topic) + ":" + key
}

// reservationValue returns "p|<owner>|<token>".
func (s *Store) reservationValue(token string) string {
	return "p|" + s.owner + "|" + token
}

func checkProduce(op, topic string, keys []string, ttl time.Duration) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: %s: empty topic", ErrInvalid, op)
	case ttl <= 0:
		return fmt.Errorf("%w: %s: pending TTL must be > 0", ErrInvalid, op)
	}
	seen := make(map[string]struct{}, len(keys))
	for i, k := range keys {
		if k == "" {
			return fmt.Errorf("%w: %s: keys[%d] is empty", ErrInvalid, op, i)
		}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%w: %s: keys[%d] %q is repeated", ErrInvalid, op, i, k)
		}
		seen[k] = struct{}{}
	}
	return nil
}

func checkReservations(op, topic string, items []Reservation, ttl time.Duration) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: %s: empty topic", ErrInvalid, op)
	case ttl <= 0:
		return fmt.Errorf("%w: %s: window must be > 0", ErrInvalid, op)
	}
	for i, it := range items {
		if it.Key == "" || it.Token == "" {
			return fmt.Errorf("%w: %s: items[%d] has an empty key or token", ErrInvalid, op, i)
		}
	}
	return nil
}

// encodeResult returns "r|<partition>|<offset>|<unix ns>|<messageID>", with
// an empty time field for the zero time.
func encodeResult(r ProduceResult) string {
	ts := ""
	if !r.Timestamp.IsZero() {
		ts = strconv.FormatInt(r.Timestamp.UnixNano(), 10)
	}
	return "r|" + strconv.FormatInt(int64(r.Partition), 10) + "|" + strconv.FormatInt(r.Offset, 10) + "|" + ts + "|" + r.MessageID
}

// errBadResult reports a stored result that does not parse.
var errBadResult = errors.New("malformed stored result")

// decodeResult parses what encodeResult wrote.
func decodeResult(v string) (ProduceResult, error) {
	f := strings.SplitN(strings.TrimPrefix(v, "r|"), "|", 4)
	if len(f) != 4 {
		return ProduceResult{}, fmt.Errorf("%w %q", errBadResult, v)
	}
	p, err1 := strconv.ParseInt(f[0], 10, 32)
	off, err2 := strconv.ParseInt(f[1], 10, 64)
	var ts time.Time
	var err3 error
	if f[2] != "" {
		var ns int64
		ns, err3 = strconv.ParseInt(f[2], 10, 64)
		ts = time.Unix(0, ns)
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return ProduceResult{}, fmt.Errorf("%w %q: %v", errBadResult, v, err)
	}
	return ProduceResult{Partition: int32(p), Offset: off, Timestamp: ts, MessageID: f[3]}, nil
}
