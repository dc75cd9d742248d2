// Package dedupe is the Redis store behind the gateway's idempotency, on
// both sides:
//
//   - Consumer side: before a record is delivered, its message ID is
//     claimed for the consumer group ([Store.Claim]); when the record is
//     done, the claim becomes a done marker ([Store.Confirm]) that makes
//     later copies of the message duplicates; a delivery that failed gives
//     its claim back ([Store.Release]).
//   - Producer side: a record with an idempotency key is written once per
//     topic and window ([Store.ReserveProduce], [Store.CompleteProduce],
//     [Store.AbortProduce], [Store.WaitProduce]).
//
// # Keys and values
//
//	<prefix>dedupe:<group>:<topic>:<messageID>  "c|<owner>|<delivery>|<record>"  a claim, PX lease
//	                                            "d|<delivery hash>"               done, PX done TTL
//	<prefix>produce:<topic>:<key>        "p|<owner>|<nonce>|<settle by>|<from>|<partition>"  a reservation, PX keep
//	                                     "r|<partition>|<offset>|<ns>|<messageID>"  a result, PX window
//
// A done marker names the delivery that wrote it: <delivery hash> is 16 hex
// digits of the SHA-256 of that delivery's claim value, so a confirm tells
// its own marker (written by an earlier attempt whose answer was lost)
// from another delivery's. Any value starting with "d" is done, so markers
// of any writer count (see [IsDone]).
//
// A message ID is processed once per group and source topic: the same ID in
// two topics (a copy of the record, a reused ID) is two messages. In <group>
// and <topic>, '%' and ':' are escaped as %25 and %3A, so a group name
// holding a colon cannot collide with another group's keys (Kafka topic
// names never need it). The owner identifies one gateway
// process ([NewOwner]); '%' and '|' in it are escaped likewise.
//
// Every operation takes a batch and costs one pipelined round trip
// whatever the batch size: one more when the server has lost its script
// cache, and one more for claims that find their key taken ([Store.Do]).
// Every check-and-set is a Lua script on one key, so it is atomic per key
// and works on Redis Cluster, where the keys of a batch spread over nodes.
//
// Errors: a batch either gets an answer for every item or fails as a whole
// (then no outcome is known for any item). Connectivity failures wrap
// [ErrUnavailable]; Cluster redirections to a single-server client wrap
// [ErrMisconfigured]; bad arguments wrap [ErrInvalid]. When ctx's deadline
// passes first, the error wraps both ErrUnavailable and
// context.DeadlineExceeded; when ctx is canceled, only context.Canceled.
package dedupe

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrUnavailable wraps failures to reach or use Redis: network errors,
	// timeouts, an exhausted pool, a closed client, and replies of a
	// server that cannot serve now (LOADING, MASTERDOWN, READONLY, OOM,
	// auth failures, ...). The consumer applies its on_redis_failure
	// policy, and health reports degraded.
	ErrUnavailable = errors.New("dedupe: redis unavailable")
	// ErrMisconfigured wraps answers that mean the gateway's Redis settings
	// do not fit the server: a MOVED or ASK redirection reaching a client
	// configured for a single server (the server is a Redis Cluster node:
	// set dedupe.redis.cluster), or the mismatches [CheckMode] finds. Not
	// transient: it lasts until the configuration is fixed.
	ErrMisconfigured = errors.New("dedupe: redis settings do not fit the server")
	// ErrInvalid wraps bad arguments: an empty group, message ID, topic or
	// key, a lease or TTL that is not positive, mismatched slices. Nothing
	// was sent to Redis.
	ErrInvalid = errors.New("dedupe: invalid argument")
)

// Store is the dedupe and idempotency store of one gateway process. Its
// methods are safe for concurrent use.
type Store struct {
	rdb         redis.UniversalClient
	prefix      string
	doneTTL     time.Duration
	owner       string // escaped: holds no '|'
	claimPrefix string // "c|<owner>|"
	// now is the clock of reservations; tests set it.
	now func() time.Time
}

func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// NewStore returns a store using rdb, writing keys under keyPrefix,
// remembering processed messages for doneTTL. owner identifies this gateway
// process among all that share the Redis (see [NewOwner]); it must be
// unique per process, so that a claim left by a previous run of the same
// instance is not mistaken for this one's. It panics if owner is empty or
// doneTTL is not positive.
func NewStore(rdb redis.UniversalClient, keyPrefix string, doneTTL time.Duration, owner string) *Store {
	if owner == "" {
		panic("dedupe: NewStore: empty owner")
	}
	if doneTTL <= 0 {
		panic("dedupe: NewStore: doneTTL must be > 0")
	}
	o := ownerEscaper.Replace(owner)
	return &Store{rdb: rdb, prefix: keyPrefix, doneTTL: doneTTL, owner: o, claimPrefix: "c|" + o + "|"}
}

// NewOwner returns an owner for [NewStore]: instance (the hostname when
// empty) followed by a random suffix, unique per call.
func NewOwner(instance string) string {
	if instance == "" {
		instance, _ = os.Hostname()
	}
	return instance + "-" + nonce()
}

// Owner returns the owner written into claims and reservations (escaped).
func (s *Store) Owner() string { return s.owner }

// Ping checks that Redis answers; the error wraps [ErrUnavailable] when it
// does not. For health checks.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// LoadScripts loads the Lua scripts into the script cache of Redis (of
// every shard, on Cluster). It is optional: without it, the first batch
// after a start or a failover costs one more round trip.
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return s.fail(ctx, "load scripts", err)
		}
	}
	return nil
}

// Outcome is the answer to one claim.
type Outcome uint8

const (
	// Claimed: the message is this delivery's; deliver it, then Confirm
	// or Release.
	Claimed Outcome = iota + 1
	// Duplicate: the message is done in this group; drop the record as
	// done without delivering it.
	Duplicate
	// HeldElsewhere: another delivery of the message is in progress (on
	// another gateway, or another record with the same message ID on this
	// one); try again after hold_retry, until it is done (Duplicate) or
	// its lease expires (Claimed).
	HeldElsewhere
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Claimed:
		return "claimed"
	case Duplicate:
		return "duplicate"
	case HeldElsewhere:
		return "held-elsewhere"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Key names one delivery of a message in a group.
type Key struct {
	Group string
	// Topic is the record's source topic: part of the message's identity.
	Topic     string
	MessageID string
	// Delivery numbers the delivery of the record (one per claim; never
	// reused for the same Record), so that a confirm or release of one
	// delivery never matches another's claim.
	Delivery uint32
	// Record identifies the record and the assignment holding it within
	// this owner, stable across its deliveries in that assignment, e.g.
	// "topic/partition/offset/epoch". A claim by this owner is taken over
	// only for the same Record (an earlier delivery whose release was lost).
	// So two records carrying the same message ID (a producer's retry
	// written twice) must have different Records, or both copies could be
	// delivered at once; and so must one record in two assignments of its
	// partition, or a claim this owner still retains for an app that holds
	// the record would be taken over when the partition comes back.
	Record string
}

// Claim asks for one delivery of a message.
type Claim struct {
	Group     string
	Topic     string
	MessageID string
	Delivery  uint32
	Record    string // see Key.Record
	// Lease is how long the claim holds without Confirm or Release (the
	// ack timeout, plus a margin); then another owner may claim it.
	Lease time.Duration
}

// Key returns the key of c's delivery, for Confirm and Release.
func (c Claim) Key() Key {
	return Key{Group: c.Group, Topic: c.Topic, MessageID: c.MessageID, Delivery: c.Delivery, Record: c.Record}
}

// Claim claims each item for this owner, in one pipelined round trip (two
// when some are taken: see [Store.Do]), and returns an outcome per item in
// order. An item is Claimed when the message is free, or held by this
// owner for the same Record (an earlier attempt whose Release was lost;
// the claim is taken over with the new attempt and lease); Duplicate when
// it is done; HeldElsewhere when any other claim holds it. On error no
// outcome is known for any item (some claims may have been taken;
// claiming them again with the same Record takes them over).
func (s *Store) Claim(ctx context.Context, items []Claim) ([]Outcome, error) {
	res, err := s.Do(ctx, Batch{Claims: items})
	return res.Outcomes, err
}

// Confirm marks each item's message done in its group (kept for the done
// TTL), in one pipelined round trip, and returns per item whether this
// delivery's done marker is now written: true when this delivery's claim
// was still there, or no claim was (its lease expired and nobody claimed
// since), or this delivery's marker is there already (so Confirm may be
// retried); false, changing nothing, when the key holds another delivery's
// claim or done marker: this delivery's lease expired and another delivery
// claimed the message, so it is processed twice; the caller refuses the
// acknowledgement and counts it. Each item is one atomic compare-and-set.
func (s *Store) Confirm(ctx context.Context, items []Key) ([]bool, error) {
	res, err := s.Do(ctx, Batch{Confirms: items})
	return res.Confirmed, err
}

// Release deletes each item's claim where this delivery still holds it, in
// one pipelined round trip; a claim since taken by anyone else, or a done
// message, is left alone. Each item is one atomic compare-and-delete.
func (s *Store) Release(ctx context.Context, items []Key) error {
	_, err := s.Do(ctx, Batch{Releases: items})
	return err
}

// Extension moves out the lease of one delivery's claim.
type Extension struct {
	Key
	// Lease is how long the claim holds from now on; a claim that holds
	// longer already is left as it is.
	Lease time.Duration
}

// Extend moves out the lease of each item's claim where this delivery
// still holds it, in one pipelined round trip, and returns per item
// whether it does: false, changing nothing, when the claim is gone (its
// lease lapsed, whether or not another delivery claimed the message since)
// or the message is done. Each item is one atomic compare-and-expire.
func (s *Store) Extend(ctx context.Context, items []Extension) ([]bool, error) {
	res, err := s.Do(ctx, Batch{Extends: items})
	return res.Extended, err
}

// Batch is the work of one round trip of a consumer: Claims, Confirms,
// Releases and Extends as [Store.Claim], [Store.Confirm], [Store.Release]
// and [Store.Extend] do them, for different deliveries.
type Batch struct {
	Claims   []Claim
	Confirms []Key
	Releases []Key
	Extends  []Extension
}

// BatchResult answers a Batch: an outcome per claim and a flag per
// confirm and per extension, in order.
type BatchResult struct {
	Outcomes  []Outcome
	Confirmed []bool
	Extended  []bool
}

// confirmChunk is how many confirms one script call takes where all keys
// may go to one server (not Redis Cluster, where a script's keys must
// share a slot): fewer script calls cost Redis less CPU per key.
const confirmChunk = 128

// Do runs a batch in one pipelined round trip. A claim is first a plain
// SET NX PX, the cheapest write Redis has; only the claims that find their
// key taken go on to claimScript (done? held by whom?), in a second round
// trip. Confirms are claimScript's counterpart, confirmScript, several
// keys per call where the deployment allows. Releases are compare-and-
// delete scripts.
//
// Errors as for the single operations: bad arguments fail the batch with
// [ErrInvalid] before anything is sent; otherwise either every item is
// answered or the batch fails as a whole.
func (s *Store) Do(ctx context.Context, b Batch) (BatchResult, error) {
	if err := checkBatch(b); err != nil {
		return BatchResult{}, err
	}
	if len(b.Claims)+len(b.Confirms)+len(b.Releases)+len(b.Extends) == 0 {
		return BatchResult{}, nil
	}
	chunk := confirmChunk
	if _, ok := s.rdb.(*redis.ClusterClient); ok {
		chunk = 1
	}
	calls := make([]call, 0, len(b.Claims)+len(b.Releases)+len(b.Extends)+(len(b.Confirms)+chunk-1)/chunk)
	for _, it := range b.Releases {
		calls = append(calls, call{deleteIfScript, []string{s.claimKey(it.Group, it.Topic, it.MessageID)},
			[]any{s.claimValue(it.Delivery, it.Record)}})
	}
	extendsAt := len(calls)
	for _, it := range b.Extends {
		calls = append(calls, call{extendScript, []string{s.claimKey(it.Group, it.Topic, it.MessageID)},
			[]any{s.claimValue(it.Delivery, it.Record), millis(it.Lease)}})
	}
	confirmsAt := len(calls)
	ttl := millis(s.doneTTL)
	for lo := 0; lo < len(b.Confirms); lo += chunk {
		items := b.Confirms[lo:min(lo+chunk, len(b.Confirms))]
		keys := make([]string, len(items))
		args := make([]any, 1+2*len(items))
		args[0] = ttl
		for i, it := range items {
			keys[i] = s.claimKey(it.Group, it.Topic, it.MessageID)
			claim := s.claimValue(it.Delivery, it.Record)
			args[1+2*i], args[2+2*i] = claim, doneValue(claim)
		}
		calls = append(calls, call{confirmScript, keys, args})
	}
	claimsAt := len(calls)
	for _, it := range b.Claims {
		calls = append(calls, call{nil, []string{s.claimKey(it.Group, it.Topic, it.MessageID)},
			[]any{s.claimValue(it.Delivery, it.Record), millis(it.Lease)}})
	}
	op := batchOp(b)
	cmds, err := s.run(ctx, op, calls)
	if err != nil {
		return BatchResult{}, err
	}

	var res BatchResult
	if len(b.Extends) > 0 {
		if res.Extended, err = flags("extend", cmds[extendsAt:confirmsAt]); err != nil {
			return BatchResult{}, err
		}
	}
	if len(b.Confirms) > 0 {
		res.Confirmed = make([]bool, 0, len(b.Confirms))
		for _, cmd := range cmds[confirmsAt:claimsAt] {
			vals, err := cmd.Int64Slice()
			if err != nil {
				return BatchResult{}, fmt.Errorf("dedupe: confirm: unexpected reply %v (%v)", cmd.Val(), err)
			}
			for _, v := range vals {
				if v != 0 && v != 1 {
					return BatchResult{}, fmt.Errorf("dedupe: confirm: unexpected reply %v", cmd.Val())
				}
				res.Confirmed = append(res.Confirmed, v == 1)
			}
		}
		if len(res.Confirmed) != len(b.Confirms) {
			return BatchResult{}, fmt.Errorf("dedupe: confirm: %d replies for %d confirms", len(res.Confirmed), len(b.Confirms))
		}
	}
	if len(b.Claims) == 0 {
		return res, nil
	}
	res.Outcomes = make([]Outcome, len(b.Claims))
	var taken []int
	for i, cmd := range cmds[claimsAt:] {
		if cmd.Err() == redis.Nil {
			taken = append(taken, i)
		} else {
			res.Outcomes[i] = Claimed
		}
	}
	if len(taken) == 0 {
		return res, nil
	}
	calls = calls[:0]
	for _, i := range taken {
		it := b.Claims[i]
		calls = append(calls, call{claimScript, []string{s.claimKey(it.Group, it.Topic, it.MessageID)},
			[]any{s.claimValue(it.Delivery, it.Record), millis(it.Lease), s.claimPrefix, it.Record}})
	}
	if cmds, err = s.run(ctx, "claim", calls); err != nil {
		return BatchResult{}, err
	}
	for j, cmd := range cmds {
		n, err := cmd.Int64()
		if err != nil || n < int64(Claimed) || n > int64(HeldElsewhere) {
			return BatchResult{}, fmt.Errorf("dedupe: claim: unexpected reply %v (%v)", cmd.Val(), err)
		}
		res.Outcomes[taken[j]] = Outcome(n)
	}
	return res, nil
}

func checkBatch(b Batch) error {
	for i, it := range b.Claims {
		if err := checkMessage(it.Group, it.Topic, it.MessageID); err != nil {
			return fmt.Errorf("%w: claim[%d]: %s", ErrInvalid, i, err)
		}
		if it.Lease <= 0 {
			return fmt.Errorf("%w: claim[%d]: lease must be > 0", ErrInvalid, i)
		}
	}
	for i, it := range b.Confirms {
		if err := checkMessage(it.Group, it.Topic, it.MessageID); err != nil {
			return fmt.Errorf("%w: confirm[%d]: %s", ErrInvalid, i, err)
		}
	}
	for i, it := range b.Releases {
		if err := checkMessage(it.Group, it.Topic, it.MessageID); err != nil {
			return fmt.Errorf("%w: release[%d]: %s", ErrInvalid, i, err)
		}
	}
	for i, it := range b.Extends {
		if err := checkMessage(it.Group, it.Topic, it.MessageID); err != nil {
			return fmt.Errorf("%w: extend[%d]: %s", ErrInvalid, i, err)
		}
		if it.Lease <= 0 {
			return fmt.Errorf("%w: extend[%d]: lease must be > 0", ErrInvalid, i)
		}
	}
	return nil
}

// batchOp names a batch's operation in errors: the single one it holds,
// or "sync" for a mix.
func batchOp(b Batch) string {
	n := map[string]int{"claim": len(b.Claims), "confirm": len(b.Confirms), "release": len(b.Releases), "extend": len(b.Extends)}
	op := ""
	for name, k := range n {
		if k == 0 {
			continue
		}
		if op != "" {
			return "sync"
		}
		op = name
	}
	return op
}

// claimKey returns <prefix>dedupe:<group>:<topic>:<messageID>.
func (s *Store) claimKey(group, topic, messageID string) string {
	return s.prefix + "dedupe:" + nameEscaper.Replace(group) + ":" + nameEscaper.Replace(topic) + ":" + messageID
}

// claimValue returns "c|<owner>|<delivery>|<record>".
func (s *Store) claimValue(delivery uint32, record string) string {
	return s.claimPrefix + strconv.FormatUint(uint64(delivery), 10) + "|" + record
}

// doneValue returns the done marker of the delivery whose claim value is
// claim: "d|" and 16 hex digits of the claim value's SHA-256. Two
// deliveries' markers are equal only by a 64-bit hash collision.
func doneValue(claim string) string {
	sum := sha256.Sum256([]byte(claim))
	var b [2 + 16]byte
	b[0], b[1] = 'd', '|'
	hex.Encode(b[2:], sum[:8])
	return string(b[:])
}

// IsDone reports whether value, read from a consumer dedupe key, is a done
// marker: the message is processed in its group. Claims start with "c".
func IsDone(value string) bool { return strings.HasPrefix(value, "d") }

func checkMessage(group, topic, messageID string) error {
	switch {
	case group == "":
		return errors.New("empty group")
	case topic == "":
		return errors.New("empty topic")
	case messageID == "":
		return errors.New("empty message ID")
	}
	return nil
}

// flags reads 0/1 replies.
func flags(op string, cmds []*redis.Cmd) ([]bool, error) {
	out := make([]bool, len(cmds))
	for i, cmd := range cmds {
		n, err := cmd.Int64()
		if err != nil || n < 0 || n > 1 {
			return nil, fmt.Errorf("dedupe: %s: unexpected reply %v (%v)", op, cmd.Val(), err)
		}
		out[i] = n == 1
	}
	return out, nil
}

// millis returns d in whole milliseconds for PX, rounded up: a positive
// duration never becomes 0 (which Redis refuses).
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

var (
	// nameEscaper escapes group and topic names in keys.
	nameEscaper = strings.NewReplacer("%", "%25", ":", "%3A")
	// ownerEscaper escapes the owner in values.
	ownerEscaper = strings.NewReplacer("%", "%25", "|", "%7C")
	// ownerUnescaper undoes ownerEscaper.
	ownerUnescaper = strings.NewReplacer("%7C", "|", "%25", "%")
)

// nonce returns 16 random hex digits.
func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
