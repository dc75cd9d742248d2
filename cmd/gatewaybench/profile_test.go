package main

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// The report says where a process's CPU went by category; a reader adds
// the shares up and compares µs across processes, so every sample must
// count exactly once, and a call into librdkafka must count for
// librdkafka/cgo however deep it sits under the gateway's own code.

func TestFramesArePlacedInTheirCategory(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		frame frame
		want  category
	}{
		{"C code of the binary", frame{name: "rd_kafka_msg_new", c: true, file: "/bin/gateway"}, catKafka},
		{"cgo crossing", frame{name: "runtime.cgocall"}, catKafka},
		{"cgo pointer check", frame{name: "runtime.cgoCheckPointer"}, catKafka},
		{"cgo stub", frame{name: "github.com/confluentinc/confluent-kafka-go/v2/kafka._Cfunc_do_produce"}, catKafka},
		{"gRPC transport", frame{name: "google.golang.org/grpc/internal/transport.(*loopyWriter).run"}, catGRPC},
		{"HTTP/2 framing", frame{name: "golang.org/x/net/http2.(*Framer).ReadFrame"}, catGRPC},
		{"protobuf", frame{name: "google.golang.org/protobuf/internal/impl.(*MessageInfo).unmarshal"}, catProto},
		{"generated messages", frame{name: "github.com/kafkagate/gateway/gen/gateway/v1.(*Record).ProtoReflect"}, catProto},
		{"gateway package", frame{name: "github.com/kafkagate/gateway/internal/produce.(*Producer).Send"}, catOwn},
		{"bench code", frame{name: "main.runStream"}, catOwn},
		{"allocation", frame{name: "runtime.mallocgc"}, catRuntime},
		{"scheduler", frame{name: "runtime.findRunnable"}, catRuntime},
		{"copying counts for its caller", frame{name: "runtime.memmove"}, catNeutral},
		{"a system call counts for its caller", frame{name: "internal/runtime/syscall/linux.Syscall6"}, catNeutral},
		{"map lookup counts for its caller", frame{name: "internal/runtime/maps.ctrlGroup.matchH2"}, catNeutral},
		{"vDSO is the runtime's", frame{name: "[vdso]+0x10", c: true, file: "[vdso]"}, catRuntime},
		{"another library", frame{name: "github.com/prometheus/client_golang/prometheus.(*counter).Add"}, catOther},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := frameCategory(tc.frame); got != tc.want {
				t.Errorf("frameCategory(%q) = %d, want %d", tc.frame.name, got, tc.want)
			}
		})
	}
}

func TestASampleCountsForItsInnermostCategory(t *testing.T) {
	t.Parallel()
	stack := func(names ...string) []frame {
		var fs []frame
		for _, n := range names {
			fs = append(fs, frame{name: n})
		}
		return fs
	}
	cases := []struct {
		name      string
		stack     []frame
		wantCat   category
		wantUnder string
	}{
		{
			name: "a write under gRPC is gRPC's",
			stack: stack("internal/runtime/syscall/linux.Syscall6", "syscall.write", "net.(*conn).Write",
				"google.golang.org/grpc/internal/transport.(*bufWriter).Flush", "main.oneStream"),
			wantCat: catGRPC, wantUnder: "google.golang.org/grpc/internal/transport.(*bufWriter).Flush",
		},
		{
			name: "a call into C is counted under the stub naming the C function",
			stack: stack("runtime.cgocall", "github.com/confluentinc/confluent-kafka-go/v2/kafka._Cfunc_do_produce",
				"github.com/confluentinc/confluent-kafka-go/v2/kafka.(*Producer).produce",
				"github.com/kafkagate/gateway/internal/produce.(*Producer).enqueue"),
			wantCat: catKafka, wantUnder: "github.com/confluentinc/confluent-kafka-go/v2/kafka._Cfunc_do_produce",
		},
		{
			name:    "allocation is the runtime's, whoever allocates",
			stack:   stack("runtime.memclrNoHeapPointers", "runtime.mallocgc", "google.golang.org/protobuf/internal/impl.consumeBytes"),
			wantCat: catRuntime, wantUnder: "runtime.mallocgc",
		},
		{
			name:    "standard library only is other",
			stack:   stack("compress/flate.(*compressor).deflate", "compress/gzip.(*Writer).Write"),
			wantCat: catOther, wantUnder: "compress/flate.(*compressor).deflate",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, under := sampleCategory(tc.stack)
			if c != tc.wantCat || under != tc.wantUnder {
				t.Errorf("sampleCategory = %d under %q, want %d under %q", c, under, tc.wantCat, tc.wantUnder)
			}
		})
	}
}

// A real profile of this process marshalling and unmarshalling gateway
// messages: the parser reads what runtime/pprof writes, every sample is
// counted once, and the work shows up as protobuf.
func TestAProfileOfThisProcessSumsUpToTheWhole(t *testing.T) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		t.Skipf("CPU profiling unavailable: %v", err)
	}
	msg := &gatewayv1.ProduceRequest{Topic: "t", Records: protoRecords(100)}
	start := selfCPU()
	for selfCPU()-start < 500*time.Millisecond {
		data, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		var back gatewayv1.ProduceRequest
		if err := proto.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
	}
	pprof.StopCPUProfile()

	raw, err := parseCPUProfile(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	s := summarizeProfile(raw, "bench client", "bench code", 3)
	if s.Err != "" || s.Samples == 0 {
		t.Fatalf("summary: %q, %d samples", s.Err, s.Samples)
	}
	var sum float64
	for _, c := range s.Cats {
		sum += c.Flat
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("flat shares add up to %v, want 1", sum)
	}
	// On the stack of the samples, that is: under -race, the race runtime's
	// own C code can take every sample in which protobuf code ran.
	if s.Cats[catProto].Cum == 0 || len(s.Cats[catProto].TopCum) == 0 {
		t.Errorf("no protobuf in a profile of protobuf work: %+v", s.Cats)
	}

	// librdkafka's own threads, which the profile cannot see, are added:
	// the shares still add up to 1, the threads' part is librdkafka's.
	// (The race detector's runtime is C code too: under -race the profile
	// has librdkafka/cgo samples of its own.)
	before := s.Cats[catKafka].Flat
	s.addThreadCPU(4*time.Second, time.Second)
	sum = 0
	for _, c := range s.Cats {
		sum += c.Flat
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("after adding librdkafka's threads, flat shares add up to %v, want 1", sum)
	}
	k := s.Cats[catKafka]
	if want := 0.75*before + 0.25; math.Abs(k.Flat-want) > 1e-9 || !slices.ContainsFunc(k.TopFlat, func(f funcShare) bool { return f.Name == rdkThreads }) {
		t.Errorf("librdkafka/cgo after adding a quarter of the CPU in its threads: %.3f under %v, want %.3f with its threads listed", k.Flat, k.TopFlat, want)
	}
}

// TestTheCeilingSaysWhenOtherProcessesLeaveTheGatewayNoRoom: the report
// states what a missed throughput target would need of the gateway, and
// says plainly when the bench client and the broker alone use up the CPU
// the target's rate allows.
func TestTheCeilingSaysWhenOtherProcessesLeaveTheGatewayNoRoom(t *testing.T) {
	cores := float64(runtime.NumCPU())
	echo := Row{Scenario: "grpc-echo-64", Figure: "calls/s", Unit: "calls/s", Value: 20000}
	goal := echoTarget * echo.Value
	budget := cores / goal * 1e6 // µs per call for all processes at the target
	unary := func(othersUS, gatewayUS float64) *Report {
		const rate = 5000.0
		wall := 10 * time.Second
		perUS := func(us float64) time.Duration { return time.Duration(us * rate * wall.Seconds() * 1e3) }
		return &Report{Rows: []Row{echo, {
			Scenario: "unary-64", Figure: "calls/s", Unit: "calls/s", Value: rate,
			CPU: CPU{Wall: wall, Gateway: perUS(gatewayUS), Bench: perUS(othersUS / 2), Broker: perUS(othersUS / 2)},
		}}}
	}

	r := unary(1.5*budget, 90)
	got := r.ceiling(&r.Rows[1])
	if !strings.Contains(got, "no gateway reaches the target on this machine") {
		t.Errorf("others spending 1.5× the budget: %q does not say the target is out of reach", got)
	}

	r = unary(budget/2, 2*budget)
	got = r.ceiling(&r.Rows[1])
	want := fmt.Sprintf("leaves the gateway %.1f µs per call", budget/2)
	if !strings.Contains(got, want) || !strings.Contains(got, "(75% less)") {
		t.Errorf("others spending half the budget, the gateway twice it: %q, want %q and (75%% less)", got, want)
	}

	// A budget under what the bare echo server itself spent per call is
	// pointed out; one above it is not.
	r = unary(budget/2, 2*budget)
	perEcho := func(us float64) time.Duration { return time.Duration(us * echo.Value * 10 * 1e3) }
	r.Rows[0].CPU = CPU{Wall: 10 * time.Second, Echo: perEcho(budget)}
	if got := r.ceiling(&r.Rows[1]); !strings.Contains(got, fmt.Sprintf("less than the bare echo server spent per call (%.1f µs)", budget)) {
		t.Errorf("a budget of %.1f µs under the echo server's %.1f: %q does not say so", budget/2, budget, got)
	}
	r.Rows[0].CPU = CPU{Wall: 10 * time.Second, Echo: perEcho(budget / 4)}
	if got := r.ceiling(&r.Rows[1]); strings.Contains(got, "echo server spent") {
		t.Errorf("a budget above the echo server's cost is compared with it: %q", got)
	}

	// A gateway that spent less than the budget left to it was not bound
	// by CPU: the ceiling says so instead of asking it for a negative
	// saving.
	r = unary(budget/2, budget/4)
	if got := r.ceiling(&r.Rows[1]); !strings.Contains(got, "CPU did not bound this run's rate") || strings.Contains(got, "% less") {
		t.Errorf("a gateway under its budget: %q", got)
	}

	r = unary(budget/2, 2*budget)
	r.Rows[1].Value = goal + 1
	if got := r.ceiling(&r.Rows[1]); got != "" {
		t.Errorf("a row past its goal got a ceiling: %q", got)
	}
}

// TestTheConsumeCeilingComparesWithTheDirectConsumer: a missed consume
// target gets its ceiling against direct-consume, at that scenario's own
// target, and the budget left to the gateway is set against what the direct
// consumer's whole process spent per record.
func TestTheConsumeCeilingComparesWithTheDirectConsumer(t *testing.T) {
	cores := float64(runtime.NumCPU())
	const directRate, rate = 500000.0, 150000.0
	wall := 10 * time.Second
	perUS := func(us, rate float64) time.Duration { return time.Duration(us * rate * wall.Seconds() * 1e3) }
	direct := Row{Scenario: "direct-consume", Figure: "throughput", Unit: "records/s", Value: directRate,
		CPU: CPU{Wall: wall, Bench: perUS(2.9, directRate)}}
	for _, tc := range []struct {
		scenario string
		target   float64
		others   float64 // µs per record: the bench client and the broker
	}{
		{"gateway-consume-none", consumeNoneTarget, 0.5},
		{"gateway-consume-none", consumeNoneTarget, 5}, // leaves less than the direct consumer spends
		{"gateway-consume-key", consumeKeyTarget, 0.5},
	} {
		budget := cores / (tc.target * directRate) * 1e6
		others := tc.others
		r := &Report{Rows: []Row{direct, {
			Scenario: tc.scenario, Figure: "throughput", Unit: "records/s", Value: rate,
			CPU: CPU{Wall: wall, Gateway: perUS(8, rate), Bench: perUS(others/2, rate), Broker: perUS(others/2, rate)},
		}}}
		got := r.ceiling(&r.Rows[1])
		if want := fmt.Sprintf("%.2f× direct-consume", tc.target); !strings.Contains(got, want) {
			t.Errorf("%s: %q does not name its target %q", tc.scenario, got, want)
		}
		if want := fmt.Sprintf("leaves the gateway %.1f µs per record", budget-others); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", tc.scenario, got, want)
		}
		if budget-others < 2.9 && !strings.Contains(got, "direct-consume's whole consumer process spent per record (2.9 µs)") {
			t.Errorf("%s: a budget under the direct consumer's own cost is not pointed out: %q", tc.scenario, got)
		}
	}
}

// The KEY scenario's samples come from the gateway's metrics: the in-flight
// and buffered gauges and the attached streams, summed over groups, no other
// metric (one whose name only starts the same, or the HELP and TYPE lines)
// counted; and the summary turns the mean into the time a key's next record
// waited (Little's law), counting the samples with nothing buffered.
func TestInFlightIsReadFromTheGatewaysMetrics(t *testing.T) {
	text := `# HELP gateway_consumer_in_flight_records Records delivered.
# TYPE gateway_consumer_in_flight_records gauge
gateway_consumer_in_flight_records{group="a"} 600
gateway_consumer_in_flight_records{group="b"} 400
gateway_consumer_in_flight_records_total{group="a"} 7
gateway_consumer_buffered_records{group="a"} 9000
gateway_consumer_buffered_records{group="b"} 1000
gateway_consumer_streams{group="a"} 1
gateway_consumer_streams_total{group="a"} 5
`
	g, ok := gaugesOf(strings.NewReader(text))
	if !ok || g != (gauges{inFlight: 1000, buffered: 10000, streams: 1}) {
		t.Errorf("gauges %+v (found %v), want 1000 in flight, 10000 buffered, 1 stream", g, ok)
	}
	if _, ok := gaugesOf(strings.NewReader("gateway_consumer_buffered_records 3\n")); ok {
		t.Error("found an in-flight count where there is none")
	}
	s := &inFlightSampler{samples: []gauges{{inFlight: 1000, buffered: 5000}, {inFlight: 1000, buffered: 2000}, {inFlight: 800, buffered: 900}, {}}, done: make(chan struct{})}
	close(s.done)
	got := s.summary(100000, 250000, 1000)
	for _, want := range []string{"in flight 700 records on average, 1000 at most, of the 1000 the keys allow", "took 7.0 ms on average", "would have to take 2.8 ms for 250,000 records/s", "1 of the samples found nothing buffered"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
}
