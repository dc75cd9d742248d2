// Command gatewaybench measures the gateway against direct use of
// confluent-kafka-go (librdkafka), side by side in one run on the same real
// broker, and writes the figures to BENCHMARKS.md. `make bench` runs it
// through scripts/bench.sh, which starts the broker first. It is not part of
// the test suite: nothing here asserts on timings, it reports them.
//
// Both sides use the same librdkafka producer settings: the gateway is
// started as a subprocess with --producer.preset=P and the direct producer is
// configured with what that preset means (see producerConfig, which mirrors
// internal/produce/config.go). Every produce scenario writes to fresh topics
// (6 partitions, replication factor 1) with 100-byte values and keys
// "key-0" … "key-999", checks every record's result, and at the end compares
// the topics' high watermarks with the records acknowledged.
//
// Before the scenarios, 500,000 records are written directly to warm up the
// broker (a freshly started JVM is slow at first). Produce throughput
// scenarios warm up and then run --repeats times (default 5); the median run
// is reported.
//
// Scenarios, in the order they run:
//
//	rss-idle           A gateway with the default preset, started fresh
//	                   against the broker and left idle for 2 s: VmRSS.
//	direct-async       Direct librdkafka, throughput preset: N records
//	                   produced asynchronously, delivery reports read from the
//	                   events channel until all N are acknowledged. The
//	                   baseline for every throughput ratio.
//	direct-gwlike      direct-async plus what the gateway asks of the Kafka
//	                   client per record: a 36-byte message-id header and a
//	                   per-record Opaque. Informational: it separates the cost
//	                   of those client features from the cost of gRPC.
//	stream-100         Gateway ProduceStream, throughput preset, batches of
//	                   100 records, a window of outstanding batches per
//	                   stream on a few streams: records/s, ratio to
//	                   direct-async (target ≥ 0.6×) and to direct-gwlike
//	                   (target ≥ 1.5×).
//	stream-1000        The same with batches of 1000 records (targets ≥ 0.8×
//	                   direct-async, ≥ 1.5× direct-gwlike).
//	stream-100-limited stream-100 through a gateway with limits that admit
//	                   everything, alternated with stream-100 runs without
//	                   limits: the limiter's cost (target ≥ 0.95×).
//	grpc-echo-64       The ceiling of the machine's gRPC stack for unary
//	                   calls: a bare gRPC server (this binary run as
//	                   `gatewaybench echo-server`, a subprocess on loopback,
//	                   default options, no interceptors) whose unary Produce
//	                   answers at once with a result shaped like the
//	                   gateway's, driven by the unary-64 client (64 callers,
//	                   one-record requests) for the same duration: calls/s,
//	                   and the CPU of the echo server and of the client.
//	unary-1            Gateway unary Produce, 1 record per call, 1 caller, for
//	                   a fixed duration: calls/s. Latency preset (a unary
//	                   single-record call waits for its own delivery report,
//	                   so under the throughput preset it would only measure
//	                   linger.ms).
//	unary-64           The same with 64 concurrent callers; target ≥ 0.7×
//	                   grpc-echo-64's calls/s.
//	latency            Latency preset: a direct synchronous produce (produce
//	                   one record, wait for its delivery report) and a gateway
//	                   single-record unary Produce, alternated, each repeated
//	                   sequentially: p50 and p99 of both, and the latency the
//	                   gateway adds (gateway − direct at p50 and p99).
//	rss-peak           VmHWM (peak RSS) of the throughput-preset gateway after
//	                   the stream scenarios.
//	direct-consume     The consume baseline. First (once, for all consume
//	                   scenarios) a topic of --consume-records records (keys
//	                   key-0 … key-999, 100-byte values) is filled by a direct
//	                   producer. Then a plain confluent-kafka-go consumer with
//	                   a fresh group reads it all from the earliest offset,
//	                   committing after processing: Poll(100), then Poll(0) up
//	                   to 512 records, touch every value, StoreOffsets
//	                   (enable.auto.offset.store=false, enable.auto.commit=true).
//	gateway-consume-none
//	                   The same topic through a gateway (started with tuned
//	                   consumer flags: --consume-buffered as
//	                   consumer.max_buffered_records, --consume-properties as
//	                   consumer.properties) with --consume-streams Subscribe
//	                   streams of one fresh group, ORDERING_NONE,
//	                   --consume-in-flight each; every value touched, every
//	                   record acknowledged with Ack (--consume-ack: an acker
//	                   goroutine per stream batching IDs, or one Ack per
//	                   Deliveries frame): records/s and ratio to
//	                   direct-consume; target ≥ 0.6×.
//	gateway-consume-none-dedupe
//	                   gateway-consume-none with consumer-side dedupe on: a
//	                   gateway of its own with the same flags plus
//	                   --dedupe.enabled=true against the Redis of --redis
//	                   (the harness's), with a key prefix unique to the run
//	                   (so done markers of earlier runs cannot turn records
//	                   into duplicates); the same streams, max_in_flight and
//	                   acker, the same topic. Records/s, ratio to
//	                   direct-consume, and ratio to gateway-consume-none
//	                   (target ≥ 0.6×). Each run also checks in Redis that
//	                   every record of the topic got its done marker (then
//	                   deletes the run's keys); Redis's CPU is reported when
//	                   --redis-pid is given.
//	gateway-consume-key
//	                   The same with ORDERING_KEY (1000 distinct keys), with
//	                   --consume-key-streams streams on a gateway of its own
//	                   with --consume-key-buffered: target ≥ 0.4×.
//
// Every consume run is timed from its first record received to the moment
// every offset of every partition has been seen and processed (offsets
// stored, or records acknowledged), checks that every offset was seen
// (duplicates are counted; missing records fail the run), then waits for
// the group to commit the whole topic. Both consume sides get the
// librdkafka properties of --consume-properties (fetch.queue.backoff.ms=10:
// with the default of 1 s, a consumer whose prefetch queue holds
// queued.min.messages stops fetching for a second, capping both sides at
// about 150,000 records/s; the gateway's default is 10 ms anyway).
// Consume scenarios run --consume-repeats times
// (default 3); the median run is reported.
//
// Every throughput row reports each process's CPU per record (or per call):
// the gateway's, the echo server's, the bench's own, the broker's and
// Redis's, each read from /proc over the measurement. During one measured
// run of each throughput scenario (direct-*, stream-*, unary-64,
// grpc-echo-64, the consume ones: their last run) the bench also takes CPU
// profiles (--profile): the gateway's from its
// /debug/pprof/profile (gateways start with --metrics.pprof=true), the echo
// server's likewise, and its own with runtime/pprof; librdkafka's own
// threads, which a Go profile cannot see, are measured per thread from
// /proc. Where a target is missed, the report sums each profile up
// by category (librdkafka/cgo, gRPC/HTTP2, protobuf, the process's own
// code, runtime/GC, other) with the top functions of each, and states the
// next lever computed from the gateway's (profile.go, profilereport.go).
//
// New scenarios (limits, …) are added to the scenarios slice in
// bench.go; each returns rows of the result table (report.go), which
// prints them and writes them to the Markdown report.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	bootstrap    string
	gatewayBin   string
	out          string
	kafkaVersion string
	brokerPID    int
	only         string
	cpuProfile   string
	logDir       string

	partitions     int
	records        int           // records of each throughput run
	repeats        int           // runs of each throughput scenario; the median is reported
	warmupRecords  int           // records of each throughput warm-up
	streams        int           // ProduceStream streams per stream scenario
	window100      int           // outstanding batches per stream, batches of 100
	window1000     int           // outstanding batches per stream, batches of 1000
	unaryDuration  time.Duration // duration of each unary scenario
	latencySamples int           // sequential samples per side in the latency scenario

	consumeRecords     int               // records of the topic the consume scenarios read
	consumeRepeats     int               // runs of each consume scenario; the median is reported
	consumeStreams     int               // Subscribe streams of gateway-consume-none
	consumeKeyStreams  int               // Subscribe streams of gateway-consume-key
	consumeInFlight    int               // max_in_flight of each Subscribe stream
	consumeAck         string            // frame or batch: how the gateway consume client acks
	consumeBuffered    int               // consumer.max_buffered_records of the consume-none gateway
	consumeKeyBuffered int               // consumer.max_buffered_records of the consume-key gateway
	consumeTimeout     time.Duration     // a consume run not done by then fails with its missing records
	consumeAckTimeout  time.Duration     // ack_timeout of the Subscribe requests; 0: the gateway's default
	consumePropsText   string            // --consume-properties as given
	consumeProps       map[string]string // librdkafka properties of both consume sides

	redisAddr string // Redis of the dedupe scenario (host:port)
	redisPID  int    // its pid, to report its CPU time (optional)

	profile    bool   // take CPU profiles during one measured run of each throughput scenario
	profileTop int    // functions listed per profile in the report
	profileAll bool   // report every profile, not only those of scenarios that miss a target
	profileDir string // also write the raw profiles here
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.bootstrap, "bootstrap", os.Getenv("GATEWAY_TEST_KAFKA"), "Kafka bootstrap servers (default $GATEWAY_TEST_KAFKA)")
	flag.StringVar(&o.gatewayBin, "gateway-bin", "bin/gateway", "gateway binary to start")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "Markdown report to write; empty writes none")
	flag.StringVar(&o.kafkaVersion, "kafka-version", "", "Kafka broker version, for the report (scripts/bench.sh reads it from the harness)")
	flag.IntVar(&o.brokerPID, "broker-pid", 0, "broker process id, to report its CPU time per scenario (optional)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenario names to run (default all); a ratio needs its baseline in the same run: direct-async and direct-gwlike (stream-*), grpc-echo-64 (unary-64), direct-consume (consume)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this bench client to FILE")
	flag.StringVar(&o.logDir, "log-dir", "", "directory for the gateways' logs (default a temporary directory, removed after a clean run)")
	flag.IntVar(&o.partitions, "partitions", 6, "partitions of every topic")
	flag.IntVar(&o.records, "records", 1_000_000, "records per throughput run")
	flag.IntVar(&o.repeats, "repeats", 5, "runs per throughput scenario; the median run is reported")
	flag.IntVar(&o.warmupRecords, "warmup-records", 50_000, "records per throughput warm-up")
	flag.IntVar(&o.streams, "streams", 2, "ProduceStream streams per stream scenario")
	// 256 is the most one stream may have unanswered at the gateway's
	// default server.max_stream_inflight: with fewer, batches of 100
	// leave librdkafka's linger (50 ms under the throughput preset) as
	// the bound, and the gateway idle half the time.
	flag.IntVar(&o.window100, "window-100", 256, "outstanding batches per stream with batches of 100")
	flag.IntVar(&o.window1000, "window-1000", 32, "outstanding batches per stream with batches of 1000")
	flag.DurationVar(&o.unaryDuration, "unary-duration", 5*time.Second, "duration of each unary scenario")
	flag.IntVar(&o.latencySamples, "latency-samples", 3000, "sequential samples per side in the latency scenario")
	flag.IntVar(&o.consumeRecords, "consume-records", 1_000_000, "records of the topic the consume scenarios read")
	flag.IntVar(&o.consumeRepeats, "consume-repeats", 3, "runs per consume scenario; the median run is reported")
	flag.IntVar(&o.consumeStreams, "consume-streams", 4, "Subscribe streams in gateway-consume-none")
	flag.IntVar(&o.consumeKeyStreams, "consume-key-streams", 1, "Subscribe streams in gateway-consume-key")
	flag.IntVar(&o.consumeInFlight, "consume-in-flight", 5000, "max_in_flight of each Subscribe stream")
	flag.StringVar(&o.consumeAck, "consume-ack", "stream", "how the gateway consume client acks: stream (Consume streams: a settler goroutine per stream acks in band the tokens of the frames received meanwhile and grants their credit back), frame (Subscribe, one Ack per Deliveries frame, inline) or batch (Subscribe, an acker goroutine per stream coalescing the IDs of the frames received meanwhile)")
	flag.IntVar(&o.consumeBuffered, "consume-buffered", 50_000, "--consumer.max_buffered_records of the gateway of gateway-consume-none (the gateway's default is 2000)")
	flag.IntVar(&o.consumeKeyBuffered, "consume-key-buffered", 10_000, "--consumer.max_buffered_records of the gateway of gateway-consume-key")
	flag.StringVar(&o.consumePropsText, "consume-properties", "fetch.queue.backoff.ms=10",
		"librdkafka properties k=v,… of both the direct consumer and the consume gateway (as --consumer.properties.k=v)")
	flag.DurationVar(&o.consumeAckTimeout, "consume-ack-timeout", 0, "ack_timeout of the Subscribe requests (default: the gateway's, 30 s)")
	flag.StringVar(&o.redisAddr, "redis", os.Getenv("GATEWAY_TEST_REDIS"), "Redis host:port for gateway-consume-none-dedupe (default $GATEWAY_TEST_REDIS)")
	flag.IntVar(&o.redisPID, "redis-pid", 0, "redis-server process id, to report its CPU time in the dedupe scenario (optional)")
	flag.DurationVar(&o.consumeTimeout, "consume-timeout", 60*time.Second, "a consume run that has not seen every record by then fails")
	flag.BoolVar(&o.profile, "profile", true,
		"take CPU profiles during one measured run of each throughput scenario (direct-*, stream-*, unary-64, grpc-echo-64, *-consume-*): "+
			"the gateway's from /debug/pprof/ (the bench starts gateways with --metrics.pprof=true), the echo server's, and this client's "+
			"with runtime/pprof; the report sums them up by category where a target is missed")
	flag.IntVar(&o.profileTop, "profile-top", 3, "functions listed per category by flat and by cumulative share for each profile in the report")
	flag.BoolVar(&o.profileAll, "profile-all", false, "report the profiles of every profiled scenario, not only of those that miss a target")
	flag.StringVar(&o.profileDir, "profile-dir", "", "also write every profile to DIR as SCENARIO.PROCESS.pb.gz, for go tool pprof (with the binary, for C symbols)")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintf(out, "Usage: gatewaybench [flags]\n\n"+
			"Benchmarks the gateway against direct librdkafka on a real broker and writes BENCHMARKS.md\n"+
			"(make bench runs it). Scenarios, in order (--only takes a comma-separated list):\n  %s\n\n"+
			"`gatewaybench %s` is the bare gRPC server of grpc-echo-64; the bench starts it itself.\n\nFlags:\n",
			strings.Join(scenarioNames(), ", "), echoServerArg)
		flag.PrintDefaults()
	}
	flag.Parse()
	return o
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == echoServerArg {
		runEchoServer()
		return
	}
	o := parseFlags()
	if o.repeats < 1 || o.records < 1 || o.streams < 1 || o.window100 < 1 || o.window1000 < 1 || o.latencySamples < 1 ||
		o.consumeRecords < 1 || o.consumeRepeats < 1 || o.consumeStreams < 1 || o.consumeKeyStreams < 1 ||
		o.consumeInFlight < 1 || o.consumeBuffered < 1 || o.consumeKeyBuffered < 1 || o.profileTop < 1 {
		fatalf("--repeats, --records, --streams, --window-*, --latency-samples, --consume-*, --profile-top must be at least 1")
	}
	if o.consumeAck != "frame" && o.consumeAck != "batch" && o.consumeAck != "stream" {
		fatalf("--consume-ack must be stream, frame or batch")
	}
	props, err := parseProps(o.consumePropsText)
	if err != nil {
		fatalf("--consume-properties: %v", err)
	}
	o.consumeProps = props
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			fatalf("--profile-dir: %v", err)
		}
	}
	if o.bootstrap == "" {
		fatalf("no broker: pass --bootstrap or set GATEWAY_TEST_KAFKA (scripts/bench.sh does both)")
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fatalf("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("%v", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	code := run(ctx, o)
	if code != 0 {
		if o.cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		os.Exit(code)
	}
}

// run runs the scenarios and writes the report; it returns the exit code:
// 1 when a scenario broke or a record failed, 0 otherwise (missed targets
// are reported, not fatal).
func run(ctx context.Context, o options) int {
	start := time.Now()
	list := selectScenarios(o.only) // before anything is created: a bad name exits
	b, err := newBench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		return 1
	}
	report := b.runScenarios(ctx, list)
	b.close(report.OK())
	report.Elapsed = time.Since(start)
	report.LoadEnd = loadAverage()

	report.WriteText(os.Stdout)
	if o.out != "" {
		if err := report.WriteMarkdownFile(o.out); err != nil {
			fmt.Fprintln(os.Stderr, "gatewaybench:", err)
			return 1
		}
		fmt.Printf("\nwrote %s\n", o.out)
	}
	if !report.OK() {
		fmt.Fprintln(os.Stderr, "gatewaybench: the run had failures (see the table)")
		return 1
	}
	return 0
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "gatewaybench: "+format+"\n", a...)
	os.Exit(2)
}
