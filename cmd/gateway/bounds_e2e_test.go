package main

// The gateway-wide bounds against a client that opens many connections and
// sends many 16 MiB requests at once: the built gateway's peak memory stays
// bounded, the excess is refused with RESOURCE_EXHAUSTED (calls) or a closed
// connection, and the gateway serves normally afterwards.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// peakRSS is the peak resident set size of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

func TestManyConnectionsAndLargeRequestsStayWithinTheGatewaysBounds(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	const budget = 64 << 20
	p := startBinary(t, "--embedded.enabled=false", "--kafka.bootstrap_servers="+bootstrap,
		"--server.max_recv_bytes=16777216", "--server.max_inflight_request_bytes="+strconv.Itoa(budget),
		"--server.max_connections=16")
	base := peakRSS(t, p.cmd.Process.Pid)

	// 48 clients, each on a connection of its own, each sending requests of
	// 15 records of 1 MiB (15 MiB) for 5 s, to a topic that does not exist
	// (so nothing is written, and each request is decoded and refused).
	big := make([]*gatewayv1.Record, 15)
	for i := range big {
		big[i] = &gatewayv1.Record{Value: bytes.Repeat([]byte{'x'}, 1<<20-64)}
	}
	req := &gatewayv1.ProduceRequest{Topic: "no-such-topic-" + strconv.Itoa(os.Getpid()), Records: big}
	var codesSeen sync.Map
	var calls, found atomic.Int64
	// The load runs 5 s, and on until a request has got through to the
	// topic check (on a machine busy with other work, none may in 5 s),
	// for at most 60 s.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		time.Sleep(5 * time.Second)
		for found.Load() == 0 && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	var wg sync.WaitGroup
	for range 48 {
		wg.Go(func() {
			conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)))
			if err != nil {
				return
			}
			defer conn.Close()
			c := gatewayv1.NewProducerServiceClient(conn)
			for ctx.Err() == nil {
				_, err := c.Produce(ctx, req)
				calls.Add(1)
				code := status.Code(err)
				if code == codes.NotFound {
					found.Add(1)
				}
				n, _ := codesSeen.LoadOrStore(code, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				if code == codes.Unavailable || code == codes.ResourceExhausted {
					// Refused: back off a little, as clients do, rather
					// than spin on the 2 cores the gateway needs too.
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	peak := peakRSS(t, p.cmd.Process.Pid)
	seen := map[codes.Code]int64{}
	codesSeen.Range(func(k, v any) bool { seen[k.(codes.Code)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("%d calls: %v; peak RSS %d MiB (%d MiB before the load)", calls.Load(), seen, peak>>20, base>>20)
	if seen[codes.ResourceExhausted] == 0 {
		t.Errorf("no call was refused RESOURCE_EXHAUSTED: the request budget never acted (%v)", seen)
	}
	if seen[codes.NotFound] == 0 {
		t.Errorf("no request got through to the topic check (%v)", seen)
	}
	// The budget bounds the requests held at once (64 MiB, decoded and
	// raw twice over with the garbage collector's slack), over what the
	// gateway held before.
	if limit := base + 6*budget; peak > limit {
		t.Errorf("peak RSS %d MiB exceeds %d MiB: the request bounds did not hold", peak>>20, limit>>20)
	}
	// The gateway serves normally afterwards.
	conn := dial(t, p.addr)
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if _, err := gatewayv1.NewProducerServiceClient(conn).Produce(rctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("v")}}}); err != nil {
		t.Fatalf("produce after the load: %v", err)
	}
}
