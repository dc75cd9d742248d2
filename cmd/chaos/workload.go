package main

// The workload producer: writers, each owning a set of keys, write records
// with unique workload IDs and per-key sequence numbers through the
// gateway, one call at a time (so a key's records are enqueued in sequence
// order), and log the outcome of every record: ok, error or unknown.

import (
	"bufio"
	"context"
	"fmt"
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
	outcomeError                      // refused, or failed before anything was sent
	outcomeUnknown                    // timeout or connection lost: may or may not be written
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

// attempt is one record the workload tried to write.
type attempt struct {
	id        string // workload ID, unique per run
	key       string
	seq       int
	outcome   outcome
	partition int32
	offset    int64
	messageID string
	detail    string
}

// recordValue is the value written for an attempt; parseValue reads it back.
func recordValue(id, key string, seq int) string {
	return "w=" + id + " k=" + key + " s=" + strconv.Itoa(seq)
}

func parseValue(v string) (id, key string, seq int, ok bool) {
	f := strings.Fields(v)
	if len(f) != 3 || !strings.HasPrefix(f[0], "w=") || !strings.HasPrefix(f[1], "k=") || !strings.HasPrefix(f[2], "s=") {
		return "", "", 0, false
	}
	seq, err := strconv.Atoi(f[2][2:])
	if err != nil {
		return "", "", 0, false
	}
	return f[0][2:], f[1][2:], seq, true
}

type workload struct {
	topic   string
	writers int
	keys    int
	batch   int
	rate    float64 // records per second, all writers together
	client  gatewayv1.ProducerServiceClient

	inflight atomic.Int64 // records in Produce calls not yet answered

	mu       sync.Mutex
	attempts []*attempt
}

// run writes until ctx ends, then returns once every writer's last call
// has an outcome.
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
	count, ki := 0, 0
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
		recs := make([]*gatewayv1.Record, w.batch)
		for i := range batch {
			k := ki % len(keys)
			ki++
			seqs[k]++
			count++
			a := &attempt{id: fmt.Sprintf("%d-%d", n, count), key: keys[k], seq: seqs[k], outcome: outcomeUnknown}
			batch[i] = a
			recs[i] = &gatewayv1.Record{Key: []byte(a.key), Value: []byte(recordValue(a.id, a.key, a.seq))}
		}
		w.mu.Lock()
		w.attempts = append(w.attempts, batch...)
		w.mu.Unlock()
		// Calls are not canceled by ctx: the last one gets its outcome.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		w.inflight.Add(int64(len(recs)))
		resp, err := w.client.Produce(cctx, &gatewayv1.ProduceRequest{Topic: w.topic, Records: recs})
		w.inflight.Add(-int64(len(recs)))
		cancel()
		w.mu.Lock()
		if err != nil {
			o := classify(err)
			for _, a := range batch {
				a.outcome, a.detail = o, status.Code(err).String()
			}
		} else {
			for i, r := range resp.GetResults() {
				a := batch[i]
				if e := r.GetError(); e != nil {
					// A delivery report failure: the idempotent producer may
					// have written it (a timeout after the send).
					a.outcome, a.detail = outcomeUnknown, codes.Code(e.GetCode()).String()
					continue
				}
				a.outcome, a.partition, a.offset, a.messageID = outcomeOK, r.GetPartition(), r.GetOffset(), r.GetMessageId()
			}
		}
		w.mu.Unlock()
		if err != nil && classify(err) == outcomeError {
			time.Sleep(200 * time.Millisecond) // gateway down: do not spin
		}
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
// number, outcome, and partition, offset and message ID when ok (or the
// status code otherwise).
func writeProduceLog(path string, attempts []*attempt) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, a := range attempts {
		if a.outcome == outcomeOK {
			fmt.Fprintf(w, "%s %s %d ok %d %d %s\n", a.id, a.key, a.seq, a.partition, a.offset, a.messageID)
		} else {
			fmt.Fprintf(w, "%s %s %d %s %s\n", a.id, a.key, a.seq, a.outcome, a.detail)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
