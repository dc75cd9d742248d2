// Command example is an example app for the Kafka sidecar gateway, in Go.
//
// It produces records, then consumes them as a consumer group through a
// Consume stream: it grants the gateway credit, acks each record in the
// stream after handling it, and extends the lease of a record whose
// handling takes longer than the ack timeout (--work). Every event is printed to stdout as one JSON
// line, so a person or a test can follow it; logs go to stderr.
//
//	go run ./examples/go --target unix:///var/run/gateway/gateway.sock \
//	  --topic orders --group billing --produce 100 --consume 100
//
// With --tombstone-every N, every Nth record is a tombstone: a record with
// its key and no value, which deletes the key on a compacted topic (see
// tombstone). A consumer tells a tombstone by its unset value (see
// isTombstone), not by an empty one.
//
// Calls that fail with RESOURCE_EXHAUSTED (a rate limit or a full queue) are
// retried after the delay the gateway asks for (google.rpc.RetryInfo), or
// with a backoff when it gives none. Produce retries are safe because every
// record carries an idempotency key: a retried record is written once.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	target := flag.String("target", "127.0.0.1:7070", "gateway address: host:port or unix:///path/to/socket")
	topic := flag.String("topic", "", "topic to write and read (required)")
	group := flag.String("group", "", "consumer group (required)")
	nProduce := flag.Int("produce", 0, "records to write first")
	nConsume := flag.Int("consume", 0, "distinct records to handle before exiting")
	batch := flag.Int("batch", 50, "records per Produce call")
	runID := flag.String("run-id", randomID(), "prefix of the idempotency keys")
	tombstoneEvery := flag.Int("tombstone-every", 0, "make every Nth record a tombstone (no value); 0: none")
	work := flag.Duration("work", 0, "pretended processing time per record (longer than the ack timeout: the lease is extended meanwhile)")
	flag.Parse()
	switch {
	case *topic == "" || *group == "":
		return errors.New("--topic and --group are required")
	case *nProduce < 0 || *nConsume < 0 || *batch <= 0 || *tombstoneEvery < 0:
		return errors.New("--produce, --consume and --tombstone-every must not be negative, --batch must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	if *nProduce > 0 {
		if err := produce(ctx, gatewayv1.NewProducerServiceClient(conn), *topic, *nProduce, *batch, *runID, *tombstoneEvery); err != nil {
			return err
		}
	}
	if *nConsume > 0 {
		return consume(ctx, gatewayv1.NewConsumerServiceClient(conn), *topic, *group, *nConsume, *work)
	}
	return nil
}

// retryable tells the codes worth retrying: the gateway is throttling, or
// is briefly unreachable.
func retryable(c codes.Code) bool { return c == codes.ResourceExhausted || c == codes.Unavailable }

// retryDelay is the wait before retry number attempt (1, 2, ...): the
// RetryInfo the gateway sent, or an exponential backoff capped at 5 s.
func retryDelay(st *status.Status, attempt int) time.Duration {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok {
			return info.GetRetryDelay().AsDuration()
		}
	}
	return min(100*time.Millisecond<<min(attempt-1, 10), 5*time.Second)
}

// withRetry runs call, retrying RESOURCE_EXHAUSTED and UNAVAILABLE as the
// gateway asks.
func withRetry[T any](ctx context.Context, what string, call func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := call(cctx)
		cancel()
		st := status.Convert(err)
		if err == nil || !retryable(st.Code()) || attempt == 20 {
			return res, err
		}
		delay := retryDelay(st, attempt)
		log.Printf("%s: %s (%s); retrying in %v", what, st.Code(), st.Message(), delay)
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(delay):
		}
	}
}

func emit(event string, fields map[string]any) {
	fields["event"] = event
	b, _ := json.Marshal(fields)
	fmt.Println(string(b))
}

// tombstone is a record that deletes key on a compacted topic: its value is
// left unset (nil), which the gateway writes as a null value. A non-nil
// empty value ([]byte{}) would be an empty value instead, not a tombstone.
func tombstone(key []byte, idempotencyKey string) *gatewayv1.Record {
	return &gatewayv1.Record{Key: key, IdempotencyKey: idempotencyKey}
}

// isTombstone tells a delivered tombstone: its value is unset (nil). An
// empty value is set and empty (non-nil), so len(d.GetValue()) == 0 cannot
// tell the two apart.
func isTombstone(d *gatewayv1.Delivery) bool { return d.Value == nil }

// nthRecord is the i-th record of a run: an order of customer i%10, or, with
// tombstoneEvery > 0, every tombstoneEvery-th one a tombstone of that
// customer.
func nthRecord(runID string, i, tombstoneEvery int) *gatewayv1.Record {
	key, id := fmt.Appendf(nil, "customer-%d", i%10), fmt.Sprintf("%s-%d", runID, i)
	if tombstoneEvery > 0 && i%tombstoneEvery == tombstoneEvery-1 {
		return tombstone(key, id)
	}
	return &gatewayv1.Record{Key: key, Value: fmt.Appendf(nil, `{"order":%d}`, i), IdempotencyKey: id}
}

// produce writes n records in batches. Records a batch could not write for
// a retryable reason are sent again, with the same idempotency keys.
func produce(ctx context.Context, producer gatewayv1.ProducerServiceClient, topic string, n, batch int, runID string, tombstoneEvery int) error {
	for start := 0; start < n; start += batch {
		var pending []*gatewayv1.Record
		for i := start; i < min(start+batch, n); i++ {
			pending = append(pending, nthRecord(runID, i, tombstoneEvery))
		}
		for attempt := 1; len(pending) > 0; attempt++ {
			req := &gatewayv1.ProduceRequest{Topic: topic, Records: pending}
			resp, err := withRetry(ctx, "produce", func(ctx context.Context) (*gatewayv1.ProduceResponse, error) {
				return producer.Produce(ctx, req)
			})
			if err != nil {
				return fmt.Errorf("produce: %w", err)
			}
			var retry []*gatewayv1.Record
			var wait time.Duration
			for i, r := range resp.GetResults() {
				if r.GetError() == nil {
					emit("produced", map[string]any{"message_id": r.GetMessageId(), "partition": r.GetPartition(), "offset": r.GetOffset(),
						"tombstone": pending[i].Value == nil})
					continue
				}
				st := status.FromProto(r.GetError())
				if !retryable(st.Code()) || attempt == 20 {
					return fmt.Errorf("record %s: %s", pending[i].GetIdempotencyKey(), st.Message())
				}
				retry = append(retry, pending[i])
				wait = max(wait, retryDelay(st, attempt))
			}
			if len(retry) > 0 {
				log.Printf("%d records not written yet; retrying in %v", len(retry), wait)
				time.Sleep(wait)
			}
			pending = retry
		}
	}
	return nil
}

// consume subscribes and acks every record after handling it, until want
// distinct message IDs have been handled. It subscribes again if the stream
// ends.
func consume(ctx context.Context, consumer gatewayv1.ConsumerServiceClient, topic, group string, want int, work time.Duration) error {
	seen := map[string]bool{}
	for attempt := 1; len(seen) < want; attempt++ {
		err := consumeOnce(ctx, consumer, topic, group, want, seen, work)
		st := status.Convert(err)
		if err == nil || len(seen) >= want {
			attempt = 0
			continue
		}
		if !retryable(st.Code()) {
			return fmt.Errorf("consume: %w", err)
		}
		delay := retryDelay(st, attempt)
		log.Printf("consume: %s; subscribing again in %v", st.Code(), delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
	return nil
}

// consumeOnce runs one Consume stream until want distinct records were
// handled or the stream ends. The stream carries everything: the
// subscription and a first credit, the records (each named by a token),
// and the app's settles, which ack what it handled and grant as much
// credit again. A record that takes longer than the ack timeout to handle
// keeps its lease by extending it while the work goes on (see handle).
func consumeOnce(ctx context.Context, consumer gatewayv1.ConsumerServiceClient, topic, group string, want int, seen map[string]bool, work time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	stream, err := consumer.Consume(ctx)
	if err != nil {
		return err
	}
	const window = 100 // records in hand at most
	err = stream.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
		Subscription: &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_KEY, MaxInFlight: window},
		Credit:       &gatewayv1.Credit{Records: window, Bytes: 16 << 20},
	}}})
	if err != nil {
		return err
	}
	// seq numbers the settles sent; answered is the last one answered.
	// The stream ends only once every settle is answered, so that no ack
	// is lost with it.
	var seq, answered uint64
	for len(seen) < want || answered < seq {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		switch f := resp.GetFrame().(type) {
		case *gatewayv1.ConsumeResponse_Assignment:
			emit("assignment", map[string]any{"assigned": names(f.Assignment.GetAssigned()), "revoked": names(f.Assignment.GetRevoked())})
		case *gatewayv1.ConsumeResponse_Settled:
			answered = f.Settled.GetSequence()
			for i, o := range f.Settled.GetAcks() {
				if o != gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED {
					// STALE: the partition moved, or the lease ran out; the
					// record is redelivered. PENDING: applied, its dedupe
					// marker is on its way.
					log.Printf("settle %d, ack %d: %v", f.Settled.GetSequence(), i, o)
				}
			}
		case *gatewayv1.ConsumeResponse_Deliveries:
			var tokens []uint64
			var bytes int64
			for _, d := range f.Deliveries.GetDeliveries() {
				seq++
				if err := handle(ctx, stream, d, work, &seq); err != nil {
					return err
				}
				emit("consumed", map[string]any{"message_id": d.GetMessageId(), "partition": d.GetPartition(),
					"offset": d.GetOffset(), "attempt": d.GetAttempt(), "duplicate": seen[d.GetMessageId()],
					"tombstone": isTombstone(d)})
				seen[d.GetMessageId()] = true
				tokens = append(tokens, d.GetToken())
				bytes += int64(len(d.GetKey()) + len(d.GetValue()))
			}
			if len(tokens) == 0 {
				continue
			}
			seq++
			err := stream.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Settle{Settle: &gatewayv1.Settle{
				Sequence: seq, Acks: tokens,
				Credit: &gatewayv1.Credit{Records: int64(len(tokens)), Bytes: bytes},
			}}})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// handle does the work of one record; this app only reports it, after
// work (--work) of pretended processing. Work longer than the record's
// lease extends the lease every half of it, so that the record is not
// given to another app meanwhile.
func handle(ctx context.Context, stream gatewayv1.ConsumerService_ConsumeClient, d *gatewayv1.Delivery, work time.Duration, seq *uint64) error {
	lease := time.Until(d.GetAckDeadline().AsTime())
	for work > 0 {
		step := min(work, lease/2)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
		work -= step
		if work > 0 {
			*seq++
			err := stream.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Settle{Settle: &gatewayv1.Settle{
				Sequence: *seq, Extends: []uint64{d.GetToken()}, Extension: durationpb.New(lease),
			}}})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func names(tps []*gatewayv1.TopicPartition) []string {
	out := make([]string, len(tps))
	for i, tp := range tps {
		out[i] = fmt.Sprintf("%s/%d", tp.GetTopic(), tp.GetPartition())
	}
	return out
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
