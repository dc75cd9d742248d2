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

// ProduceState is the state of one idempotency key. With neither Reserved,
// Done nor Stale, another writer is in progress: wait for it with
// [Store.WaitProduce].
type ProduceState struct {
	// Reserved: this caller holds the key and must write the record, then
	// [Store.CompleteProduce] or [Store.AbortProduce] it with Token.
	Reserved bool
	// Token identifies this caller's reservation (set with Reserved).
	Token string
	// Done is the result of the record written earlier with this key.
	Done *ProduceResult
	// Stale is another writer's reservation that should have been settled
	// by now and was not: its writer died, or could not learn its write's
	// fate. Whether that write is in the topic is for the caller to find
	// out ([Store.TakeOverProduce] first).
	Stale *StaleReservation
}

// Pending reports whether another writer holds the key.
func (st ProduceState) Pending() bool { return !st.Reserved && st.Done == nil && st.Stale == nil }

// Intent is a record about to be written under an idempotency key, as a
// reservation remembers it for whoever has to look for the record in the
// topic should its writer vanish.
type Intent struct {
	Key string
	// Partition the record goes to, or -1 when it is not known in advance
	// (a record without a key goes to a partition the partitioner picks).
	Partition int32
	// From is a time at or before the record's timestamp: the reservation
	// time, or the record's own timestamp when that is earlier. Zero means
	// now.
	From time.Time
}

// ProduceTTL are the times of a reservation.
type ProduceTTL struct {
	// Settle is how long its writer has to settle it: by then the record's
	// delivery report has come and its result is stored, or its writer is
	// gone. After Settle (and a few seconds for clocks that differ), other
	// writers see it as Stale.
	Settle time.Duration
	// Keep is how long Redis keeps it, at least Settle: a reservation
	// nobody settles or takes over disappears then, and the key is free.
	Keep time.Duration
}

// StaleReservation is a reservation whose writer did not settle it in time.
type StaleReservation struct {
	value string // as stored, for the compare-and-set of a take-over
	// Owner is the writer that reserved it.
	Owner string
	// From is the earliest timestamp its record may carry.
	From time.Time
	// Partition is where its record would be, or -1 when not known.
	Partition int32
}

// staleSkew is how long after its settle time another gateway takes a
// reservation for stale: room for clocks that differ between pods.
const staleSkew = 5 * time.Second

// Reservation is a key reserved by [Store.ReserveProduce] or
// [Store.WaitProduce], with the Token of its [ProduceState].
type Reservation struct {
	Key   string
	Token string
}

// ReserveProduce reserves the key of each intent for writing, in one
// pipelined round trip: a free key becomes this caller's reservation
// (Reserved, kept for ttl.Keep unless completed or aborted); a key with a
// stored result returns it (Done); a key reserved by another writer, in
// this process or another, is pending, or Stale once that writer should
// have settled it. Keys must be distinct and not empty.
//
// ttl.Settle must outlast the write (the producer's delivery timeout and
// more): a reservation not settled by then may be taken over by another
// writer, who looks for the record in the topic.
func (s *Store) ReserveProduce(ctx context.Context, topic string, intents []Intent, ttl ProduceTTL) ([]ProduceState, error) {
	keys := intentKeys(intents)
	if err := checkProduce("reserve", topic, keys, ttl); err != nil {
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
	if _, err := s.reserve(ctx, "reserve", topic, intents, all, nonce(), ttl, states); err != nil {
		return nil, err
	}
	return states, nil
}

func intentKeys(intents []Intent) []string {
	keys := make([]string, len(intents))
	for i, in := range intents {
		keys[i] = in.Key
	}
	return keys
}

// WaitProduce waits for keys of topic held by other writers, polling them
// with backoff (5 ms doubling to 200 ms), one pipelined round trip per
// poll: a key is resolved when its result is stored (Done), when its
// reservation is gone (the writer aborted, or it expired), in which case
// WaitProduce reserves it for this caller (Reserved), or when the
// reservation is Stale. A key free or done from the start resolves at
// once, so WaitProduce also serves keys never passed to ReserveProduce.
//
// When ctx ends or Redis fails first, it returns the states known so far,
// unresolved ones pending, with the error: reservations it made are in
// them, to complete or abort.
func (s *Store) WaitProduce(ctx context.Context, topic string, intents []Intent, ttl ProduceTTL) ([]ProduceState, error) {
	keys := intentKeys(intents)
	if err := checkProduce("wait", topic, keys, ttl); err != nil {
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
		if pending, err = s.reserve(ctx, "wait", topic, intents, pending, token, ttl, states); err != nil {
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

// reserve runs reserveScript for intents[i] of each index in which,
// filling states[i], and returns the indexes still pending.
func (s *Store) reserve(ctx context.Context, op, topic string, intents []Intent, which []int, token string, ttl ProduceTTL, states []ProduceState) ([]int, error) {
	now := s.clock()
	prefix := s.reservationPrefix(token)
	calls := make([]call, len(which))
	for j, i := range which {
		calls[j] = call{reserveScript, []string{s.produceKey(topic, intents[i].Key)},
			[]any{s.reservationValue(token, now, ttl.Settle, intents[i]), millis(ttl.Keep), prefix}}
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
		st, err := s.state(v, token, now)
		if err != nil {
			return which, fmt.Errorf("dedupe: %s: key %q: %w", op, intents[i].Key, err)
		}
		states[i] = st
		if st.Pending() {
			pending = append(pending, i)
		}
	}
	return pending, nil
}

// state reads what a reservation script answered: "" when the caller holds
// the key (with token), a stored result, or another writer's reservation,
// pending or stale at now.
func (s *Store) state(v, token string, now time.Time) (ProduceState, error) {
	switch {
	case v == "":
		return ProduceState{Reserved: true, Token: token}, nil
	case strings.HasPrefix(v, "r|"):
		res, err := decodeResult(v)
		if err != nil {
			return ProduceState{}, err
		}
		return ProduceState{Done: &res}, nil
	case strings.HasPrefix(v, "p|"):
		if st, ok := decodeReservation(v); ok && now.After(st.settleBy.Add(staleSkew)) {
			return ProduceState{Stale: &st.StaleReservation}, nil
		}
		return ProduceState{}, nil
	default:
		return ProduceState{}, fmt.Errorf("holds an unknown value %q", v)
	}
}

// TakeOverProduce makes a stale reservation this caller's, in one round
// trip, if the key still holds it (or nothing): the new reservation keeps
// the stale one's From and Partition (merged with in's), so whoever may
// take it over next still looks for both writes. Its result is Reserved
// when the caller now holds the key; otherwise the key's current state
// (Done, pending, or stale again).
func (s *Store) TakeOverProduce(ctx context.Context, topic string, in Intent, stale *StaleReservation, ttl ProduceTTL) (ProduceState, error) {
	if err := checkProduce("take over", topic, []string{in.Key}, ttl); err != nil {
		return ProduceState{}, err
	}
	now := s.clock()
	merged := in
	if merged.From.IsZero() || stale.From.Before(merged.From) {
		merged.From = stale.From
	}
	if merged.Partition != stale.Partition {
		merged.Partition = -1
	}
	token := nonce()
	cmds, err := s.run(ctx, "take over", []call{{takeOverScript, []string{s.produceKey(topic, in.Key)},
		[]any{stale.value, s.reservationValue(token, now, ttl.Settle, merged), millis(ttl.Keep)}}})
	if err != nil {
		return ProduceState{}, err
	}
	v, err := cmds[0].Text()
	if err != nil {
		return ProduceState{}, fmt.Errorf("dedupe: take over: unexpected reply %v (%v)", cmds[0].Val(), err)
	}
	st, err := s.state(v, token, now)
	if err != nil {
		return ProduceState{}, fmt.Errorf("dedupe: take over: key %q: %w", in.Key, err)
	}
	return st, nil
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
			[]any{s.reservationPrefix(it.Token), encodeResult(results[i]), millis(window)}}
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
		calls[i] = call{abortScript, []string{s.produceKey(topic, it.Key)}, []any{s.reservationPrefix(it.Token)}}
	}
	_, err := s.run(ctx, "abort", calls)
	return err
}

// produceKey returns <prefix>produce:<topic>:<key>.
func (s *Store) produceKey(topic, key string) string {
	return s.prefix + "produce:" + nameEscaper.Replace(topic) + ":" + key
}

// reservationPrefix returns "p|<owner>|<token>|", which starts every value
// of the reservation token made.
func (s *Store) reservationPrefix(token string) string {
	return "p|" + s.owner + "|" + token + "|"
}

// reservationValue returns "p|<owner>|<token>|<settle by, unix ms>|<from,
// unix ms>|<partition>".
func (s *Store) reservationValue(token string, now time.Time, settle time.Duration, in Intent) string {
	from := in.From
	if from.IsZero() || from.After(now) {
		from = now
	}
	return s.reservationPrefix(token) + strconv.FormatInt(now.Add(settle).UnixMilli(), 10) + "|" +
		strconv.FormatInt(from.UnixMilli(), 10) + "|" + strconv.FormatInt(int64(in.Partition), 10)
}

// reservation is a decoded reservation value.
type reservation struct {
	StaleReservation
	settleBy time.Time
}

// decodeReservation parses what reservationValue wrote; false for a value
// of another form (an older gateway's "p|<owner>|<token>", which is never
// stale: it is waited for until it expires).
func decodeReservation(v string) (reservation, bool) {
	f := strings.Split(v, "|")
	if len(f) != 6 {
		return reservation{}, false
	}
	settleBy, err1 := strconv.ParseInt(f[3], 10, 64)
	from, err2 := strconv.ParseInt(f[4], 10, 64)
	part, err3 := strconv.ParseInt(f[5], 10, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return reservation{}, false
	}
	return reservation{
		StaleReservation: StaleReservation{value: v, Owner: ownerUnescaper.Replace(f[1]), From: time.UnixMilli(from), Partition: int32(part)},
		settleBy:         time.UnixMilli(settleBy),
	}, true
}

func checkProduce(op, topic string, keys []string, ttl ProduceTTL) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: %s: empty topic", ErrInvalid, op)
	case ttl.Settle <= 0 || ttl.Keep < ttl.Settle:
		return fmt.Errorf("%w: %s: reservation times must be > 0, kept at least until settled (%+v)", ErrInvalid, op, ttl)
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
