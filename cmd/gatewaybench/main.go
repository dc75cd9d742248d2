// Command gatewaybench measures the gateway against direct use of
// confluent-kafka-go (librdkafka), side by side in one run on the same real
// broker, and writes the figures to BENCHMARKS.md. `make bench` runs it
// through scripts/bench.sh, which starts the broker first. It is not part of
// the test suite: nothing here asserts on timings, it reports them.
//
// Both sides use the same librdkafka producer settings: the gateway is
// started as a subprocess with --producer.preset=P and the direct producer is
// configured with what that preset means (see producerConfig, which mirrors
// internal/produce/config.go). Every scenario writes to fresh topics (6
// partitions, replication factor 1) with 100-byte values and keys "key-0" …
// "key-999", checks every record's result, and at the end compares the
// topics' high watermarks with the records acknowledged.
//
// Before the scenarios, 500,000 records are written directly to warm up the
// broker (a freshly started JVM is slow at first). Throughput scenarios warm
// up and then run --repeats times (default 5); the median run is reported.
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
//	                   stream on a few streams: records/s and ratio to
//	                   direct-async.
//	stream-1000        The same with batches of 1000 records.
//	unary-1            Gateway unary Produce, 1 record per call, 1 caller, for
//	                   a fixed duration: calls/s. Latency preset (a unary
//	                   single-record call waits for its own delivery report,
//	                   so under the throughput preset it would only measure
//	                   linger.ms).
//	unary-64           The same with 64 concurrent callers.
//	latency            Latency preset: a direct synchronous produce (produce
//	                   one record, wait for its delivery report) and a gateway
//	                   single-record unary Produce, alternated, each repeated
//	                   sequentially: p50 and p99 of both, and the latency the
//	                   gateway adds (gateway − direct at p50 and p99).
//	rss-peak           VmHWM (peak RSS) of the throughput-preset gateway after
//	                   the stream scenarios.
//
// New scenarios (consume, dedupe, limits, …) are added to the scenarios slice
// in bench.go; each returns rows of the result table (report.go), which
// prints them and writes them to the Markdown report.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
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
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.bootstrap, "bootstrap", os.Getenv("GATEWAY_TEST_KAFKA"), "Kafka bootstrap servers (default $GATEWAY_TEST_KAFKA)")
	flag.StringVar(&o.gatewayBin, "gateway-bin", "bin/gateway", "gateway binary to start")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "Markdown report to write; empty writes none")
	flag.StringVar(&o.kafkaVersion, "kafka-version", "", "Kafka broker version, for the report (scripts/bench.sh reads it from the harness)")
	flag.IntVar(&o.brokerPID, "broker-pid", 0, "broker process id, to report its CPU time per scenario (optional)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenario names to run (default all); ratios need direct-async")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this bench client to FILE")
	flag.StringVar(&o.logDir, "log-dir", "", "directory for the gateways' logs (default a temporary directory, removed after a clean run)")
	flag.IntVar(&o.partitions, "partitions", 6, "partitions of every topic")
	flag.IntVar(&o.records, "records", 1_000_000, "records per throughput run")
	flag.IntVar(&o.repeats, "repeats", 5, "runs per throughput scenario; the median run is reported")
	flag.IntVar(&o.warmupRecords, "warmup-records", 50_000, "records per throughput warm-up")
	flag.IntVar(&o.streams, "streams", 2, "ProduceStream streams per stream scenario")
	flag.IntVar(&o.window100, "window-100", 128, "outstanding batches per stream with batches of 100")
	flag.IntVar(&o.window1000, "window-1000", 32, "outstanding batches per stream with batches of 1000")
	flag.DurationVar(&o.unaryDuration, "unary-duration", 5*time.Second, "duration of each unary scenario")
	flag.IntVar(&o.latencySamples, "latency-samples", 3000, "sequential samples per side in the latency scenario")
	flag.Parse()
	return o
}

func main() {
	o := parseFlags()
	if o.repeats < 1 || o.records < 1 || o.streams < 1 || o.window100 < 1 || o.window1000 < 1 || o.latencySamples < 1 {
		fatalf("--repeats, --records, --streams, --window-*, --latency-samples must be at least 1")
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
	b, err := newBench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		return 1
	}
	report := b.runScenarios(ctx, selectScenarios(o.only))
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
