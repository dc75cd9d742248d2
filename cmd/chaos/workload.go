package main

// The workload producer: writers, each owning a set of keys, write records
// with unique workload IDs and per-key sequence numbers through the
// gateway, one call at a time (so a key's records are enqueued in sequence
// order). Each record's workload ID is its idempotency key: a record whose
// outcome is unknown (a timeout, a connection lost mid-call) is sent again
// with the same key until the gateway answers OK or a definite error, and
// the writer goes on only then. Every record's final outcome is logged: ok,
// error or unknown.
//
// Some records are poison (every poisonEvery-th record of a writer): the
// apps never process them and dead-letter them instead. Every largeEvery-th
// poison record is larger than the dead-letter topic accepts, so its full
// dead letter can never be written.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

type outcome uint8

const (
	outcomeOK      outcome = iota + 1 // the gateway answered with partition and offset
	outcomeError                      // refused, or failed before anything was sent, on every try
	outcomeUnknown                    // a try timed out or lost its connection, and no later try settled it
)

func (o outcome) String() string {
	switch o {
	case outcomeOK:
		return "ok"
	case outcomeError:
		return "error"
	}
	return "unknown"
}

// Poison kinds, carried in the record's value (p=) and in its poisonHeader.
const (
	poisonNone  = 0
	poisonSmall = 1 // its full dead letter fits the dead-letter topic
	poisonLarge = 2 // larger than the dead-letter topic's max.message.bytes
)

// poisonHeader is an application header of poison records; a full dead
// letter keeps it, a compact one must not.
const poisonHeader = "chaos-poison"

// largePoisonBytes is the value size of a large poison record, and
// deadLetterMaxBytes the dead-letter topic's max.message.bytes: a full dead
// letter of a large poison record can never be written (its value does not
// compress), one of a small record (a few hundred bytes) always can.
const (
	largePoisonBytes   = 32 << 10
	deadLetterMaxBytes = 8 << 10
)

// attempt is one record the workload tried to write.
type attempt struct {
	id      string // workload ID, unique per run; also the idempotency key
	key     string
	seq     int
	poison  int
	tries   int // Produce calls that carried this record
	outcome outcome
	// everUnknown: some try's outcome was unknown; settled: no more tries.
	everUnknown, settled bool
	partition            int32
	offset               int64
	messageID            string
	detail               string // the last error's status code
}

// recordValue is the value written for an attempt; parseValue reads it back.
// Poison records carry p=<kind>, large ones padding after it.
func recordValue(id, key string, seq, poison int) string {
	v := "w=" + id + " k=" + key + " s=" + strconv.Itoa(seq)
	switch poison {
	case poisonSmall:
		v += " p=1"
	case poisonLarge:
		v += " p=2 " + padding(id, largePoisonBytes)
	}
	return v
}

// padding returns n bytes of base64 text drawn from a generator seeded by
// id: incompressible, since the gateway's producer compresses and the
// broker's size limit applies to the compressed batch.
func padding(id string, n int) string {
	h := fnv.New64a()
	h.Write([]byte(id))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0x706164))
	raw := make([]byte, n*3/4+3)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return base64.StdEncoding.EncodeToString(raw)[:n]
}

func parseValue(v string) (id, key string, seq, poison int, ok bool) {
	f := strings.Fields(v)
	if len(f) < 3 || len(f) > 5 || !strings.HasPrefix(f[0], "w=") || !strings.HasPrefix(f[1], "k=") || !strings.HasPrefix(f[2], "s=") {
		return "", "", 0, 0, false
	}
	seq, err := strconv.Atoi(f[2][2:])
	if err != nil {
		return "", "", 0, 0, false
	}
	if len(f) > 3 {
		switch {
		case f[3] == "p=1" && len(f) == 4:
			poison = poisonSmall
		case f[3] == "p=2" && len(f) == 5:
			poison = poisonLarge
		default:
			return "", "", 0, 0, false
		}
	}
	return f[0][2:], f[1][2:], seq, poison, true
}

func poisonName(kind int) string {
	if kind == poisonLarge {
		return "large"
	}
	return "small"
}

type workload struct {
	topic   string
	writers int
	keys    int // at least writers × batch: a batch never holds two records of one key
	batch   int
	rate    float64 // records per second, all writers together
	// poisonEvery makes every n-th record of a writer poison (0: none);
	// largeEvery makes every n-th poison record large, the first one
	// included (0: none).
	poisonEvery, largeEvery int
	// settle bounds the retries of the last calls once the load stops.
	settle time.Duration
	client gatewayv1.ProducerServiceClient

	inflight atomic.Int64 // records in Produce calls not yet answered
	written  atomic.Int64 // records answered OK
	retried  atomic.Int64 // records sent again after an unknown outcome

	mu       sync.Mutex
	attempts []*attempt
}

// run writes until ctx ends, then returns once every writer's last batch
// is settled (or settle has passed).
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.writers {
		wg.Go(func() { w.writer(ctx, i) })
	}
	wg.Wait()
}

func (w *workload) writer(ctx context.Context, n int) {
	var keys []string
	for k := n; k < w.keys; k += w.writers {
		keys = append(keys, fmt.Sprintf("k%03d", k))
	}
	seqs := make([]int, len(keys))
	interval := time.Duration(float64(time.Second) * float64(w.batch*w.writers) / w.rate)
	next := time.Now()
	count, ki, poisoned := 0, 0, 0
	for ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		next = next.Add(interval)
		if time.Until(next) < -5*time.Second {
			next = time.Now() // behind after an outage: do not burst to catch up
		}
		batch := make([]*attempt, w.batch)
		for i := range batch {
			k := ki % len(keys)
			ki++
			seqs[k]++
			count++
			a := &attempt{id: fmt.Sprintf("%d-%d", n, count), key: keys[k], seq: seqs[k], outcome: outcomeUnknown}
			if w.poisonEvery > 0 && count%w.poisonEvery == 0 {
				poisoned++
				a.poison = poisonSmall
				// The first poison record of a writer is large, so even a
				// short run has one.
				if w.largeEvery > 0 && (poisoned-1)%w.largeEvery == 0 {
					a.poison = poisonLarge
				}
			}
			batch[i] = a
		}
		w.mu.Lock()
		w.attempts = append(w.attempts, batch...)
		w.mu.Unlock()
		w.send(ctx, batch)
	}
}

// send writes a batch, and sends its unsettled records again, with the
// same idempotency keys, until each has an OK or a definite error. Once ctx
// ends it keeps trying for w.settle at most; what is unsettled then stays
// unknown.
func (w *workload) send(ctx context.Context, batch []*attempt) {
	var stopAt time.Time
	pending := batch
	backoff := 100 * time.Millisecond
	for {
		w.produce(pending)
		var again []*attempt
		for _, a := range pending {
			if !a.settled {
				again = append(again, a)
			}
		}
		if len(again) == 0 {
			return
		}
		if ctx.Err() != nil && stopAt.IsZero() {
			stopAt = time.Now().Add(w.settle)
		}
		if !stopAt.IsZero() && time.Now().After(stopAt) {
			return
		}
		w.retried.Add(int64(len(again)))
		pending = again
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// produce makes one Produce call for the records and folds its answer
// into each record's outcome. OK settles a record. An unknown outcome
// leaves it unsettled (to be sent again). A definite error settles it as
// an error, unless an earlier try's outcome was unknown: then only a later
// try can tell whether that one was written, so a transient error (no
// gateway listening, its queue full) leaves it unsettled, and a permanent
// one settles it as unknown.
func (w *workload) produce(batch []*attempt) {
	recs := make([]*gatewayv1.Record, len(batch))
	for i, a := range batch {
		recs[i] = &gatewayv1.Record{Key: []byte(a.key), Value: []byte(recordValue(a.id, a.key, a.seq, a.poison)), IdempotencyKey: a.id}
		if a.poison != poisonNone {
			recs[i].Headers = []*gatewayv1.Header{{Key: poisonHeader, Value: []byte(poisonName(a.poison))}}
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	w.inflight.Add(int64(len(recs)))
	resp, err := w.client.Produce(cctx, &gatewayv1.ProduceRequest{Topic: w.topic, Records: recs})
	w.inflight.Add(-int64(len(recs)))
	cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, a := range batch {
		a.tries++
		var o outcome
		switch {
		case err != nil:
			o, a.detail = classify(err), status.Code(err).String()
		case resp.GetResults()[i].GetError() != nil:
			// A delivery report failure: the idempotent producer may have
			// written it (a timeout after the send).
			o, a.detail = outcomeUnknown, codes.Code(resp.GetResults()[i].GetError().GetCode()).String()
		default:
			r := resp.GetResults()[i]
			a.outcome, a.partition, a.offset, a.messageID, a.detail = outcomeOK, r.GetPartition(), r.GetOffset(), r.GetMessageId(), ""
			a.settled = true
			w.written.Add(1)
			continue
		}
		switch {
		case o == outcomeUnknown:
			a.outcome, a.everUnknown = outcomeUnknown, true
		case !a.everUnknown:
			a.outcome, a.settled = outcomeError, true
		case !transient(err):
			a.outcome, a.settled = outcomeUnknown, true
		}
	}
	if err != nil && classify(err) == outcomeError {
		time.Sleep(200 * time.Millisecond) // gateway down: do not spin
	}
}

// classify tells whether a failed call may have written records. A call
// that never reached a gateway (connection refused) wrote nothing; one the
// gateway refused outright (bad input, unknown topic, queue full) neither.
// Anything else, a timeout or a connection lost mid-call, is unknown.
func classify(err error) outcome {
	st := status.Convert(err)
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.ResourceExhausted, codes.PermissionDenied, codes.FailedPrecondition:
		return outcomeError
	case codes.Unavailable:
		if strings.Contains(st.Message(), "connection refused") {
			return outcomeError
		}
	}
	return outcomeUnknown
}

// transient reports a definite error that a later try may not meet: no
// gateway listening, or its queue full.
func transient(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable
}

func (w *workload) snapshot() []*attempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*attempt, len(w.attempts))
	for i, a := range w.attempts {
		c := *a
		out[i] = &c
	}
	return out
}

// writeProduceLog writes one line per attempt: workload ID, key, sequence
// number, poison kind, tries, outcome, and partition, offset and message ID
// when ok (or the last status code otherwise).
func writeProduceLog(path string, attempts []*attempt) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, a := range attempts {
		if a.outcome == outcomeOK {
			fmt.Fprintf(w, "%s %s %d p%d t%d ok %d %d %s\n", a.id, a.key, a.seq, a.poison, a.tries, a.partition, a.offset, a.messageID)
		} else {
			fmt.Fprintf(w, "%s %s %d p%d t%d %s %s\n", a.id, a.key, a.seq, a.poison, a.tries, a.outcome, a.detail)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
