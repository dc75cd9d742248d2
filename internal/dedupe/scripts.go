package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts. Each works on one key (KEYS[1]), so it runs on the node
// owning that key in Redis Cluster, and each answers the same when run
// twice with the same arguments: go-redis may retry a pipeline whose reply
// was lost after the server had executed it.

// claimScript claims a message for one delivery.
//
// ARGV[1] the claim value "c|<owner>|<attempt>|<record>", ARGV[2] the lease
// in ms, ARGV[3] "c|<owner>|", ARGV[4] the record.
//
// Returns 1 (Claimed): the key was free, or held a claim by this owner for
// the same record (an earlier attempt whose release was lost, or this very
// claim run twice), which is overwritten with the new claim and lease;
// 2 (Duplicate): the key holds a done marker (any value starting with
// "d", whoever wrote it); 3 (HeldElsewhere): any other claim — another
// owner's, or this owner's for another record carrying the same message ID.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'd' then
  return 2
end
if v then
  local p = ARGV[3]
  if string.sub(v, 1, #p) ~= p then
    return 3
  end
  local rest = string.sub(v, #p + 1)
  local sep = string.find(rest, '|', 1, true)
  if not sep or string.sub(rest, sep + 1) ~= ARGV[4] then
    return 3
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// confirmScript marks messages done, one or more keys per call (several
// only where the keys need not be on one Cluster node: see Store.confirmChunk).
//
// ARGV[1] the done TTL in ms; for KEYS[i], ARGV[2i] the claim value of the
// delivery being confirmed and ARGV[2i+1] that delivery's done marker.
//
// Returns, per key, 1 after setting the done marker (with the done TTL)
// when the key holds that very claim or nothing (the lease expired and
// nobody claimed since), or when it holds that very done marker already (a
// confirm run again after its answer was lost; left as it is); 0, changing
// nothing, when it holds anything else: another delivery's claim, or
// another delivery's done marker (this delivery's lease lapsed, and the
// message was claimed and processed again).
var confirmScript = redis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  local done = ARGV[2 * i + 1]
  if v == done then
    out[i] = 1
  elseif v == false or v == ARGV[2 * i] then
    redis.call('SET', k, done, 'PX', ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`)

// deleteIfScript deletes the key when it holds exactly ARGV[1]: releases a
// claim. Returns the number of keys deleted.
var deleteIfScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// extendScript moves out the lease of a claim that this delivery still
// holds: KEYS[1] holds exactly ARGV[1], its time to live becomes ARGV[2] ms
// unless it is longer already (a lease is never shortened, so a repeated
// or reordered extension does no harm). Returns 1 when the claim is this
// delivery's (extended or long enough), 0 when the key holds anything else
// or nothing: the lease lapsed, or the message was settled.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
`)

// reserveScript reserves a producer idempotency key.
//
// ARGV[1] the reservation value "p|<owner>|<nonce>|...", ARGV[2] how long
// to keep it in ms, ARGV[3] the prefix "p|<owner>|<nonce>|" of every value
// of this reservation.
//
// Returns "" when the key is now reserved by this reservation (it was
// free, or held it already), else what the key holds: a result "r|..." or
// another reservation "p|...".
var reserveScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return ''
end
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
if string.sub(v, 1, #ARGV[3]) == ARGV[3] then
  return ''
end
return v
`)

// takeOverScript replaces a stale reservation with the caller's.
//
// ARGV[1] the stale reservation's value, ARGV[2] the new reservation's,
// ARGV[3] how long to keep it in ms.
//
// Returns "" when the key now holds the new reservation (it held the stale
// one, or nothing), else what it holds.
var takeOverScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ''
end
return v
`)

// completeScript stores a produce result.
//
// ARGV[1] the prefix "p|<owner>|<nonce>|" of the reservation's value,
// ARGV[2] the result value "r|...", ARGV[3] the window in ms.
//
// Returns 1 when the key now holds the result: it held that reservation or
// nothing (the reservation expired, nobody else reserved), or the result
// already; 0, changing nothing, when it holds another reservation or
// another result.
var completeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[2] then
  return 1
end
if v == false or string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`)

// abortScript deletes a produce reservation.
//
// ARGV[1] the prefix "p|<owner>|<nonce>|" of the reservation's value.
var abortScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v ~= false and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

var allScripts = []*redis.Script{claimScript, confirmScript, deleteIfScript, extendScript, reserveScript, takeOverScript, completeScript, abortScript}

// call is one command of a pipelined batch: a script invocation on keys,
// or, with no script, the plain "SET keys[0] args[0] NX PX args[1]" that
// claims a free key without the cost of a script.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
}

// run executes calls in one pipelined round trip and returns their
// commands in order, each with a reply. Scripts go by EVALSHA; those the
// server does not know (NOSCRIPT: after a restart, a failover or SCRIPT
// FLUSH) are sent again with their source by EVAL, in one more round trip,
// which also caches them on the server again. A call answered NOSCRIPT
// did not run, so running it again is safe.
//
// A nil reply (redis.Nil: a SET NX that found the key taken) is an answer,
// not a failure. Any other failure of any call fails the whole batch.
func (s *Store) run(ctx context.Context, op string, calls []call) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	pipe := s.rdb.Pipeline()
	for i, c := range calls {
		if c.script == nil {
			cmds[i] = pipe.Do(ctx, "SET", c.keys[0], c.args[0], "NX", "PX", c.args[1])
		} else {
			cmds[i] = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
		}
	}
	_, _ = pipe.Exec(ctx) // every command carries its own error
	var missing []int
	for i, cmd := range cmds {
		switch err := cmd.Err(); {
		case err == nil, err == redis.Nil:
		case isNoScript(err):
			missing = append(missing, i)
		default:
			return nil, s.fail(ctx, op, err)
		}
	}
	if len(missing) == 0 {
		return cmds, nil
	}
	pipe = s.rdb.Pipeline()
	for _, i := range missing {
		c := calls[i]
		cmds[i] = c.script.Eval(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	for _, i := range missing {
		if err := cmds[i].Err(); err != nil && err != redis.Nil {
			return nil, s.fail(ctx, op, err)
		}
	}
	return cmds, nil
}

func isNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }

// unavailableReplies are error replies meaning the server cannot serve
// now, rather than that the request was wrong.
var unavailableReplies = []string{
	"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY",
	"OOM", "NOREPLICAS", "NOAUTH", "WRONGPASS", "ERR max number of clients",
}

// fail turns a Redis failure of op into the error the Store returns:
// context.Canceled when ctx was canceled (the caller went away: not
// Redis's fault); ErrUnavailable together with context.DeadlineExceeded
// when ctx's deadline passed (Redis did not answer in time);
// ErrUnavailable for network errors, timeouts, an exhausted pool, a closed
// client, and replies in unavailableReplies; ErrMisconfigured for MOVED and
// ASK redirections; else the reply itself (a bug, or a foreign value in the
// gateway's key space).
func (s *Store) fail(ctx context.Context, op string, err error) error {
	switch ctxErr := ctx.Err(); {
	case ctxErr == nil:
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %w (%v)", ErrUnavailable, op, ctxErr, err)
	case errors.Is(err, ctxErr):
		return fmt.Errorf("dedupe: %s: %w", op, err)
	default:
		return fmt.Errorf("dedupe: %s: %w (%v)", op, ctxErr, err)
	}
	var reply redis.Error
	if !errors.As(err, &reply) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	msg := reply.Error()
	if strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ") {
		// A Cluster client follows redirections itself: this one is not.
		return fmt.Errorf("%w: %s: %w: the server is a Redis Cluster node, but dedupe.redis names a single server: set dedupe.redis.cluster: true",
			ErrMisconfigured, op, err)
	}
	for _, p := range unavailableReplies {
		if strings.HasPrefix(msg, p) {
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
		}
	}
	return fmt.Errorf("dedupe: %s: %w", op, err)
}
