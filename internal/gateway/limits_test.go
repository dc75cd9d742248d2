package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/testenv"
)

// limitsGateway runs a gateway whose limits come from a file, written
// first with doc; it returns the file's path, to change it.
func limitsGateway(t *testing.T, doc string, mutate func(*config.Config)) (*harness, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "limits.yaml")
	writeLimits(t, path, doc)
	h := startGateway(t, func(c *config.Config) {
		c.Limits.File = path
		c.Limits.PollInterval = 100 * time.Millisecond
		c.Identity.Service = "checkout"
		c.Identity.Header = "x-caller"
		if mutate != nil {
			mutate(c)
		}
	})
	return h, path
}

func writeLimits(t *testing.T, path, doc string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func oneRecord(topic string) *gatewayv1.ProduceRequest {
	return &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("v")}}}
}

func TestARejectedProduceGetsResourceExhaustedWithRetryAfter(t *testing.T) {
	t.Parallel()
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	h, _ := limitsGateway(t, `
rules:
- {name: strict, topic: "`+topic+`", records: {per_second: 2, burst: 2}, action: reject}
`, nil)
	ctx := t.Context()
	for i := range 2 {
		if _, err := h.producer.Produce(ctx, oneRecord(topic)); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	var trailer metadata.MD
	_, err := h.producer.Produce(ctx, oneRecord(topic), grpc.Trailer(&trailer))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), `rule "strict"`) {
		t.Fatalf("over the limit: %v, want RESOURCE_EXHAUSTED naming the rule", err)
	}
	ms, perr := strconv.Atoi(strings.Join(trailer.Get("retry-after-ms"), ""))
	if perr != nil || ms <= 0 || ms > 500 {
		t.Fatalf("retry-after-ms trailer %v, want 1..500", trailer.Get("retry-after-ms"))
	}
	var info *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			info = ri
		}
	}
	if info == nil || info.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("no RetryInfo detail: %v", st.Details())
	}

	// In a stream, a limited batch is answered with the error in each
	// result, and the stream goes on.
	stream, err := h.producer.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&gatewayv1.ProduceStreamRequest{RequestId: "b1", Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if c := codes.Code(resp.GetResults()[0].GetError().GetCode()); c != codes.ResourceExhausted {
		t.Fatalf("stream batch over the limit: %v", resp.GetResults()[0])
	}
	time.Sleep(time.Duration(ms+500) * time.Millisecond) // a token again
	if err := stream.Send(&gatewayv1.ProduceStreamRequest{RequestId: "b2", Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err = stream.Recv(); err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatalf("after the retry delay: %v %v", resp, err)
	}
	_ = stream.CloseSend()
	// 2 in the burst and 1 after the delay: nothing rejected was written.
	if got := len(testenv.ReadTopic(t, testenv.Kafka(t), topic)); got != 3 {
		t.Fatalf("topic holds %d records, want 3", got)
	}
}

func TestTheACLDeniesProduceAndSubscribeAndWritesNothing(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	open, closed := testenv.CreateTopic(t, bootstrap, 1), testenv.CreateTopic(t, bootstrap, 1)
	h, _ := limitsGateway(t, `
rules:
- {name: checkout, identity: checkout, topic: "`+open+`", allow: [produce, consume]}
- {name: auditor, identity: auditor, allow: [consume]}
groups:
- {name: auditor, identity: auditor, allow: [subscribe, ack]}
`, nil)
	ctx := t.Context()
	if _, err := h.producer.Produce(ctx, oneRecord(open)); err != nil {
		t.Fatalf("allowed produce: %v", err)
	}
	_, err := h.producer.Produce(ctx, oneRecord(closed))
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), closed) {
		t.Fatalf("produce to a topic not allowed: %v, want PERMISSION_DENIED naming it", err)
	}
	// The identity header names another caller: the auditor may read, not write.
	auditor := metadata.AppendToOutgoingContext(ctx, "x-caller", "auditor")
	if _, err := h.producer.Produce(auditor, oneRecord(open)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("auditor produce: %v, want PERMISSION_DENIED", err)
	}
	sub := func(ctx context.Context, topic string) error {
		s, err := h.consumer().Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: testenv.UniqueName("g"), Topics: []string{topic}})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	if err := sub(ctx, closed); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("subscribe to a topic not allowed: %v", err)
	}
	cctx, cancel := context.WithTimeout(auditor, 10*time.Second)
	defer cancel()
	if err := sub(cctx, closed); err != nil {
		t.Fatalf("auditor subscribe: %v", err) // the first frame: its assignment
	}
	if got := len(testenv.ReadTopic(t, bootstrap, closed)); got != 0 {
		t.Fatalf("the denied topic holds %d records", got)
	}
	// The gateway stays healthy.
	if _, err := h.producer.Produce(ctx, oneRecord(open)); err != nil {
		t.Fatal(err)
	}
}

func TestAChangedLimitsFileTakesEffectUnderLoadWithoutDroppingACall(t *testing.T) {
	t.Parallel()
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	rule := func(perSecond int) string {
		return fmt.Sprintf("rules:\n- {name: r, topic: %q, records: {per_second: %d, burst: 10}, action: reject}\n", topic, perSecond)
	}
	h, path := limitsGateway(t, rule(100000), nil)
	var ok, limited, other atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := h.producer.Produce(context.Background(), oneRecord(topic))
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
				limited.Add(1)
			default:
				other.Add(1)
				t.Errorf("call failed: %v", err)
			}
		}
	}()
	testenv.Eventually(t, 10*time.Second, "calls to go through", func() bool { return ok.Load() > 50 })
	if limited.Load() != 0 {
		t.Fatalf("%d calls limited at 100000/s", limited.Load())
	}
	writeLimits(t, path, rule(1))
	changed := time.Now()
	testenv.Eventually(t, 2*time.Second, "the 1/s limit to reject calls within 2 s", func() bool { return limited.Load() > 0 })
	t.Logf("first rejection %v after the change", time.Since(changed).Round(time.Millisecond))
	close(stop)
	<-done
	if other.Load() != 0 {
		t.Fatalf("%d calls failed otherwise", other.Load())
	}
}

func TestADeliveryLimitPacesWhatAStreamReceives(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	h, _ := limitsGateway(t, `
rules:
- {name: gentle, topic: "`+topic+`", deliver: {per_second: 20, burst: 5}}
`, nil)
	produceRecords(t, h, topic, 200, 10)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := h.consumer().Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: testenv.UniqueName("g"), Topics: []string{topic},
		Ordering: gatewayv1.Ordering_ORDERING_NONE, MaxInFlight: 1000, AckTimeout: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var first time.Time
	received := 0
	for received < 45 {
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		n := len(resp.GetDeliveries().GetDeliveries())
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		received += n
	}
	// The burst (5) arrives at once, then 20 a second: 40 more take about 2 s.
	elapsed := time.Since(first)
	rate := float64(received-5) / elapsed.Seconds()
	t.Logf("%d records in %v: %.1f/s after the burst", received, elapsed.Round(time.Millisecond), rate)
	if rate > 20*1.25 {
		t.Fatalf("delivered %.1f/s, over the 20/s limit", rate)
	}
}
