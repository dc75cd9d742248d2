package main

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Row is one figure of the result table.
type Row struct {
	Scenario string           // set by the runner from the scenario's name
	Figure   string           // what is measured, e.g. "throughput", "gateway p99"
	Value    float64          // in Unit
	Unit     string           // records/s, calls/s, ms, MiB
	Detail   string           // a secondary figure, e.g. MB/s
	Ratio    float64          // Value relative to the direct librdkafka figure; 0 when none
	Target   *Target          // nil when the figure has none
	Failures int64            // records that failed (or went missing); any makes the run fail
	FailedAs string           // what happened to Failures records: "failed" when empty, or e.g. "missing"
	CPU      CPU              // CPU used during the measurement, if measured
	Profiles []profileSummary // CPU profiles of the processes during one measured run, if taken
	Note     string
}

// cpuPerUnitText is the CPU column in microseconds per record (or per
// call) of a throughput row, empty for other rows.
func (r Row) cpuPerUnitText() string {
	if r.Unit != "records/s" && r.Unit != "calls/s" {
		return ""
	}
	return r.CPU.PerUnitText(r.Value)
}

// Target is a goal for a figure and whether it was met.
type Target struct {
	Text string
	Met  bool
}

func atLeastRatio(r, min float64) *Target {
	return &Target{Text: fmt.Sprintf("≥ %.2f× direct", min), Met: r >= min}
}

func atMost(v, max float64, unit string) *Target {
	return &Target{Text: fmt.Sprintf("≤ %g %s", max, unit), Met: v <= max}
}

func (r Row) valueText() string {
	var s string
	switch r.Unit {
	case "records/s", "calls/s":
		s = thousands(int64(r.Value+0.5)) + " " + r.Unit
	case "ms":
		s = fmt.Sprintf("%.3f ms", r.Value)
	case "×":
		s = fmt.Sprintf("%.2f×", r.Value)
	default:
		s = fmt.Sprintf("%.1f %s", r.Value, r.Unit)
	}
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

func (r Row) ratioText() string {
	if r.Ratio == 0 {
		return "—"
	}
	if r.Ratio < 0.1 {
		return fmt.Sprintf("%.4f×", r.Ratio)
	}
	return fmt.Sprintf("%.2f×", r.Ratio)
}

func (r Row) targetText() string {
	if r.Target == nil {
		return "—"
	}
	return r.Target.Text
}

func (r Row) resultText() string {
	switch {
	case r.Failures > 0:
		return fmt.Sprintf("FAIL (%d records %s)", r.Failures, cmp.Or(r.FailedAs, "failed"))
	case r.Target == nil:
		return ""
	case r.Target.Met:
		return "pass"
	default:
		return "FAIL"
	}
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Report is the outcome of a run.
type Report struct {
	Started time.Time
	Elapsed time.Duration
	Opts    options
	Machine Machine
	Rows    []Row
	Errors  []string // broken scenarios, failed verifications, unclean gateway exits

	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute load
	// averages at the start and end: other work on the machine skews figures.
	LoadStart, LoadEnd string
}

func newReport(o options) *Report {
	return &Report{Started: time.Now().UTC(), Opts: o, Machine: describeMachine(o.kafkaVersion), LoadStart: loadAverage()}
}

// OK reports whether the run had no failures (missed targets are not
// failures of the run).
func (r *Report) OK() bool {
	if len(r.Errors) > 0 {
		return false
	}
	for _, row := range r.Rows {
		if row.Failures > 0 {
			return false
		}
	}
	return true
}

// targets counts the rows with a target and those that met it.
func (r *Report) targets() (met, total int) {
	for _, row := range r.Rows {
		if row.Target != nil {
			total++
			if row.Target.Met && row.Failures == 0 {
				met++
			}
		}
	}
	return met, total
}

// WriteText prints the table for a terminal.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFIGURE\tVALUE\tVS DIRECT\tTARGET\tRESULT\tCPU (cores busy)\tCPU PER RECORD/CALL (µs)")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Scenario, row.Figure, row.valueText(),
			row.ratioText(), row.targetText(), row.resultText(), row.CPU, row.cpuPerUnitText())
	}
	tw.Flush()
	if lines := r.analysis(); len(lines) > 0 {
		fmt.Fprintln(w, "\nwhere the time goes:")
		for _, l := range lines {
			fmt.Fprintln(w, "-", l)
		}
	}
	r.writeProfiles(w, false)
	met, total := r.targets()
	fmt.Fprintf(w, "\ntargets met: %d of %d; run took %s\n", met, total, r.Elapsed.Round(time.Second))
	for _, e := range r.Errors {
		fmt.Fprintln(w, "ERROR:", e)
	}
	if warn := r.busyWarning(); warn != "" {
		fmt.Fprintln(w, "NOTE:", warn)
	}
	fmt.Fprintf(w, "machine: %s\nload average (1/5/15 min): %s at start, %s at end\n", r.Machine.oneLine(), r.LoadStart, r.LoadEnd)
}

// WriteMarkdownFile writes BENCHMARKS.md.
func (r *Report) WriteMarkdownFile(path string) error {
	var buf bytes.Buffer
	r.WriteMarkdown(&buf)
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// WriteMarkdown writes the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) {
	o := r.Opts
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("# Benchmarks")
	p("")
	p("Generated by `cmd/gatewaybench` on %s (run took %s). Reproduce: `make bench`.",
		r.Started.Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second))
	p("")
	p("The gateway is compared with direct use of confluent-kafka-go (librdkafka %s), side by", r.Machine.Librdkafka)
	p("side in one run against the same real Kafka broker (the single-node KRaft broker of")
	p("`scripts/services.sh`). The gateway runs as a subprocess (`bin/gateway`, external Kafka,")
	p("JSON logs); the bench client talks to it over gRPC on loopback with the generated Go client.")
	p("Both sides use the same producer settings: the gateway's `--producer.preset` and the")
	p("direct producer configured with what that preset means (idempotent, `acks=all`,")
	p("`murmur2_random`, the preset's `linger.ms`/`batch.size`/`batch.num.messages`/")
	p("`compression.type`, the gateway's 64 MiB `queue.buffering.max.kbytes`, delivery reports")
	p("from the events channel). Every produce scenario writes to fresh topics (%d partitions, replication", o.partitions)
	p("factor 1) records with keys `key-0` … `key-999` and 100-byte values (random letters and")
	p("digits), checks every record's result, and at the end checks that each topic's high")
	p("watermarks add up to the records acknowledged. The consume scenarios read one such topic,")
	p("filled once, each run with a fresh consumer group; both consume sides get the same")
	p("librdkafka consumer settings (see *Scenarios*).")
	p("")
	p("## Results")
	p("")
	met, total := r.targets()
	status := "no record failed"
	if !r.OK() {
		status = "**THE RUN HAD FAILURES** (see below)"
	}
	p("Targets met: **%d of %d**; %s.", met, total, status)
	p("")
	if w := r.busyWarning(); w != "" {
		p("> **Note:** %s", w)
		p("")
	}
	p("| Scenario | Figure | Value | vs direct | Target | Result | CPU (cores busy) | CPU per record or call (µs) | Notes |")
	p("|---|---|---|---|---|---|---|---|---|")
	for _, row := range r.Rows {
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |", row.Scenario, row.Figure, row.valueText(),
			row.ratioText(), row.targetText(), row.resultText(), row.CPU, row.cpuPerUnitText(), mdEscape(row.Note))
	}
	if len(r.Errors) > 0 {
		p("")
		p("Errors:")
		p("")
		for _, e := range r.Errors {
			p("- %s", mdEscape(e))
		}
	}
	p("")
	if lines := r.analysis(); len(lines) > 0 {
		p("### Where the time goes")
		p("")
		for _, l := range lines {
			p("- %s", l)
		}
		p("")
	}
	r.writeProfiles(w, true)
	p("### Scenarios")
	p("")
	p("- **rss-idle**: VmRSS of a freshly started gateway (default `balanced` preset, external")
	p("  broker) after 2 s idle. Target ≤ 50 MiB.")
	p("- **direct-async**: %s records produced asynchronously with confluent-kafka-go, throughput", thousands(int64(o.records)))
	p("  preset, delivery reports counted from the events channel until all are acknowledged.")
	p("  The baseline of every throughput ratio.")
	p("- **direct-gwlike**: direct-async plus what the gateway asks of the Kafka client for every")
	p("  record: a 36-byte `message-id` header and a per-record `Opaque` (confluent-kafka-go keeps")
	p("  it in a map until the delivery report), with a CreateTime. Informational: it separates")
	p("  the cost of those client features from the cost of the gRPC hop.")
	p("- **stream-100 / stream-1000**: the same number of records through the gateway's")
	p("  `ProduceStream`, batches of 100 (%d streams × %d outstanding batches) and of 1000", o.streams, o.window100)
	p("  (%d streams × %d outstanding batches), throughput preset. An app pipelining batches of 100", o.streams, o.window1000)
	p("  keeps as many unanswered as the gateway allows (`server.max_stream_inflight`, 256 by default):")
	p("  with fewer, the throughput preset's 50 ms linger bounds the rate, not the gateway (with 128 it")
	p("  was busy 0.8 of a core). Targets: stream-1000 ≥ %.1f× and", stream1000Target)
	p("  stream-100 ≥ %.1f× direct-async; both ≥ %.1f× direct-gwlike (the *vs direct-gwlike* rows), the", stream100Target, gwlikeTarget)
	p("  rate of an application that hands confluent-kafka-go a header and an `Opaque` per record.")
	p("- **stream-100-limited**: stream-100 through a second gateway whose limits document (`--limits.file`)")
	p("  has one rule matching every call, with records and bytes limits far above the offered load, so")
	p("  each batch pays the whole admission (ACL, rule match, two token-bucket reservations) without")
	p("  being delayed; its runs alternate with stream-100 runs against the gateway without limits.")
	p("  Target ≥ 0.95× of those (the limiter costs under 5%%).")
	p("- **grpc-echo-64**: the ceiling of this machine's gRPC stack for unary calls. A bare gRPC")
	p("  server (`gatewaybench echo-server`, a subprocess on loopback: default server options, no")
	p("  interceptors) whose unary `Produce` answers at once with a result shaped like the gateway's")
	p("  (partition, offset, timestamp, 36-byte message ID), so requests and responses have the sizes")
	p("  of unary-64's; driven like unary-64 (the same Go client setup, 64 callers, one record per")
	p("  call, %s after a 1 s warm-up). `echo` in the CPU columns is the echo server.", o.unaryDuration)
	p("- **unary-1 / unary-64**: unary `Produce` with one record per call, from 1 and 64")
	p("  concurrent callers, for %s each. Latency preset: a single-record call waits for its", o.unaryDuration)
	p("  own delivery report, so under the throughput preset (`linger.ms=50`) it would measure")
	p("  the linger. The ratio to direct-async is informational. Target: unary-64 ≥ %.1f×", echoTarget)
	p("  grpc-echo-64's calls/s (the *vs grpc-echo-64* row).")
	p("- **latency**: latency preset on both sides; one record at a time, %s samples per side,", thousands(int64(o.latencySamples)))
	p("  alternating a direct synchronous produce (produce, wait for the delivery report) and a")
	p("  gateway unary `Produce` of one record, measured by the caller. *Added* is gateway −")
	p("  direct at the same percentile. Targets: added p50 ≤ 0.3 ms, added p99 ≤ 1 ms.")
	p("- **rss-peak**: VmHWM of the throughput-preset gateway after the stream scenarios.")
	p("- **direct-consume**: the consume baseline. A topic of %s records (%d partitions, keys", thousands(int64(o.consumeRecords)), o.partitions)
	p("  `key-0` … `key-999`, 100-byte values) is filled once by a direct producer; every consume")
	p("  run reads all of it from the earliest offset with a fresh consumer group. A plain")
	p("  confluent-kafka-go consumer (`Subscribe`, cooperative-sticky) that commits after")
	p("  processing: `Poll(100)` then `Poll(0)` up to %d records, touch every value, then", directConsumeBatch)
	p("  `StoreOffsets` of the batch (`enable.auto.offset.store=false`, `enable.auto.commit=true`,")
	p("  `auto.commit.interval.ms=1000`, as the gateway's own consumers).")
	p("- **gateway-consume-none**: the same topic through the gateway")
	p("  (`ORDERING_NONE`, `start_position` earliest): %d stream(s) of one group, `max_in_flight`", o.consumeStreams)
	p("  %d each; every value is touched and every record acknowledged (%s).", o.consumeInFlight, ackModeText(o.consumeAck))
	p("  Gateway flags: `%s`. Target ≥ %.1f× direct-consume, and the gateway's peak RSS", strings.Join(consumeFlagsText(o, o.consumeBuffered), " "), consumeNoneTarget)
	p("  (VmHWM, after every run of the scenario) ≤ %d MiB.", consumeRSSTarget)
	p("- **gateway-consume-none-dedupe**: gateway-consume-none with consumer-side dedupe on, on a")
	p("  gateway of its own: the same streams, `max_in_flight`, acker, topic and flags, plus")
	p("  `%s`", strings.Join(dedupeFlagsText(o), " "))
	p("  (Redis: `scripts/services.sh`'s). The key prefix is unique to the bench run and every run")
	p("  has a fresh group, so no done marker of an earlier run makes a record a duplicate. The")
	p("  topic's records carry no `message-id` header (a direct producer wrote them), so the gateway")
	p("  identifies them by topic/partition/offset. Per record the gateway claims the message in")
	p("  Redis before delivering it and writes its done marker after the `Ack` (each a Lua script")
	p("  call, batched into one pipelined round trip per batch); a record is committed only once its")
	p("  marker is written. After each run has committed the whole topic, the bench checks in Redis")
	p("  that every record of the topic has its done marker, then deletes the run's keys. Ratio to")
	p("  direct-consume (informational), and the ratio to gateway-consume-none of the same run:")
	p("  target ≥ %.1f×. `redis` in the CPU column is redis-server's CPU (single-threaded: 1.00 is", dedupeTarget)
	p("  a saturated Redis).")
	p("- **gateway-consume-key**: the same with `ORDERING_KEY` (1000 distinct keys, so at most 1000")
	p("  records in flight), %d stream(s), on a gateway of its own with", o.consumeKeyStreams)
	p("  `--consumer.max_buffered_records=%d` (the gateway's default); otherwise the flags above.", o.consumeKeyBuffered)
	p("  Target ≥ %.1f× direct-consume.", consumeKeyTarget)
	p("")
	p("Consume throughput runs from the first record received to the moment every offset of every")
	p("partition has been seen and processed (stored, or acknowledged), so group join time is")
	p("not counted. Each run checks that every offset was seen at least once (duplicates are")
	p("counted; a run with missing records fails), and then that the group committed the whole")
	p("topic. Each consume scenario runs %d time(s) and reports the median run.", o.consumeRepeats)
	p("Both consume sides get the librdkafka properties `%s`: with librdkafka's default", o.consumePropsText)
	p("`fetch.queue.backoff.ms=1000`, a consumer whose prefetch queue reaches `queued.min.messages`")
	p("(100,000) stops fetching for a second, which caps both sides at about 150,000 records/s of")
	p("100-byte records; the bench would measure that timer, not the gateway. (The gateway sets")
	p("`fetch.queue.backoff.ms=10` by default, as its fetch queue is small.)")
	p("")
	p("The broker is warmed up first with 500,000 records. Every scenario is warmed up too")
	p("(throughput: %s records; unary: 1 s; latency: 300 samples per side) on its own topic.", thousands(int64(o.warmupRecords)))
	p("Produce throughput scenarios then run %d times and report the median run (the spread is in", o.repeats)
	p("the notes). The *CPU (cores busy)* column is the CPU time each process used")
	p("during the measurement divided by its wall time: `gw` the gateway, `echo` the echo server, `bench` this client")
	p("(the gRPC client, or the direct producer or consumer with its librdkafka threads), `broker` the Kafka")
	p("JVM, `redis` the Redis server (dedupe scenario only). The *CPU per record or call* column is the same")
	p("CPU time divided by the records (or calls) of the measurement, in µs, per process and for all of them.")
	p("Direct records carry no headers; the gateway adds its 36-byte `message-id` header to")
	p("every record, which is part of what it costs.")
	if o.profile {
		p("")
		p("During one measured run of each throughput scenario (a consume scenario's last run) the processes are profiled (`--profile`): the")
		p("gateway's CPU profile from `/debug/pprof/profile` on its metrics listener (`metrics.pprof`), the")
		p("echo server's likewise, this client's with `runtime/pprof`, at 100 samples per second. Profiling")
		p("costs those runs a little CPU. *Where the CPU goes* sums the profiles up where a target is missed.")
	}
	p("")
	p("## Machine")
	p("")
	m := r.Machine
	p("- CPU: %s, %d cores (`runtime.NumCPU`)", m.CPUModel, m.Cores)
	p("- Memory: %s", m.Memory)
	p("- OS: %s", m.Kernel)
	p("- Go: %s; confluent-kafka-go %s; librdkafka %s; grpc-go %s", m.GoVersion, m.KafkaGo, m.Librdkafka, m.GRPC)
	p("- Kafka: %s (single node, KRaft, `scripts/services.sh`)", m.Kafka)
	p("- Load average (1/5/15 min): %s at the start of the run, %s at the end", r.LoadStart, r.LoadEnd)
	p("")
	p("The gateway, this bench client and the Kafka broker all run on this machine and share")
	p("its %d cores, so every figure, the direct baseline included, is bounded by that", m.Cores)
	p("contention: the direct side needs one process less than the gateway side (client and")
	p("gateway both spend CPU on gRPC and protobuf). Absolute numbers are for comparison")
	p("within one run, not across machines.")
	p("")
	p("## Reproduce")
	p("")
	p("```")
	p("make bench")
	p("```")
	p("")
	p("`scripts/bench.sh` installs and starts the broker and Redis (`scripts/services.sh`), builds")
	p("`bin/gateway`, runs `go run ./cmd/gatewaybench --bootstrap $GATEWAY_TEST_KAFKA --redis")
	p("$GATEWAY_TEST_REDIS --gateway-bin bin/gateway --out BENCHMARKS.md` (with the broker's and")
	p("Redis's pids, for the CPU column) and stops the services it started.")
	p("`go run ./cmd/gatewaybench --help` lists the knobs (record counts, repeats, windows,")
	p("durations, `--only`, `--cpuprofile` for the whole bench client, `--profile-all` to report every")
	p("profile taken, `--profile-dir` to keep them for `go tool pprof`). To look closer at where the")
	p("gateway's time goes, run one scenario with more records, e.g. `scripts/bench.sh --only")
	p("direct-async,direct-gwlike,stream-1000 --records 3000000 --repeats 1 --profile-all --profile-dir")
	p(".cache/prof --out ''`, then `go tool pprof -top bin/gateway .cache/prof/stream-1000.gateway.pb.gz`; for the")
	p("consume scenarios, attach `perf record -g -p PID` to the gateway whose pid the bench prints.")
}

func ackModeText(mode string) string {
	switch mode {
	case "frame":
		return "one `Ack` per Deliveries frame, inline, before the next `Recv`"
	case "stream":
		return fmt.Sprintf("through `Consume` streams: a settler goroutine per stream acks, in band, the tokens of every frame received while its previous settle was being sent, up to %d, and grants their credit back; the `max_in_flight` is the first credit", ackBatchMax)
	}
	return fmt.Sprintf("an acker goroutine per stream sends the IDs of every frame received while its previous `Ack` was in flight in one call, up to %d IDs", ackBatchMax)
}

// dedupeFlagsText lists the dedupe gateway's extra flags for the report,
// the run's key prefix as a placeholder.
func dedupeFlagsText(o options) []string {
	b := &bench{opts: o, dedupePrefix: "gatewaybench:<run>:"}
	if b.opts.redisAddr == "" {
		b.opts.redisAddr = "$GATEWAY_TEST_REDIS"
	}
	return b.dedupeFlags()
}

// consumeFlagsText lists the consume gateway's flags for the report.
func consumeFlagsText(o options, maxBuffered int) []string {
	b := &bench{opts: o}
	return b.consumeGatewayFlags(maxBuffered)
}

// row returns the first row of scenario with figure, or nil.
func (r *Report) row(scenario, figure string) *Row {
	for i := range r.Rows {
		if r.Rows[i].Scenario == scenario && r.Rows[i].Figure == figure {
			return &r.Rows[i]
		}
	}
	return nil
}

// cpuPerRecord is the CPU time all measured processes spent per record, in
// microseconds, or 0 when unknown.
func cpuPerRecord(row *Row) float64 {
	if row == nil || row.Value <= 0 || row.CPU.Wall <= 0 {
		return 0
	}
	return row.CPU.perUnit(row.CPU.Total(), row.Value)
}

// analysis derives a few observations from the figures of this run.
func (r *Report) analysis() []string {
	var out []string
	direct := r.row("direct-async", "throughput")
	like := r.row("direct-gwlike", "throughput")
	if direct != nil {
		out = append(out, fmt.Sprintf("CPU per record (all processes, broker included when known): direct-async %.1f µs.", cpuPerRecord(direct)))
	}
	if direct != nil && like != nil {
		out = append(out, fmt.Sprintf("With only the gateway's per-record client features added (a message-id header and an Opaque), "+
			"direct librdkafka reaches %.2f× direct-async (direct-gwlike, %.1f µs of CPU per record), with no gRPC involved.",
			like.Value/direct.Value, cpuPerRecord(like)))
	}
	for _, name := range []string{"stream-100", "stream-1000"} {
		st := r.row(name, "throughput")
		if st == nil {
			continue
		}
		line := fmt.Sprintf("%s: %.1f µs of CPU per record (%s µs; gateway %.2f cores, bench client %.2f cores)",
			name, cpuPerRecord(st), st.CPU.PerUnitText(st.Value), st.CPU.Gateway.Seconds()/st.CPU.Wall.Seconds(), st.CPU.Bench.Seconds()/st.CPU.Wall.Seconds())
		if like != nil {
			line += fmt.Sprintf("; it reaches %.2f× direct-gwlike's records/s, and its gateway alone spends %.2f× the CPU per record of direct-gwlike's whole producer process",
				st.Value/like.Value, st.CPU.perUnit(st.CPU.Gateway, st.Value)/max(like.CPU.perUnit(like.CPU.Bench, like.Value), 1e-9))
		}
		if len(r.missedProfiled()) > 0 && len(st.Profiles) > 0 && r.missesTarget(name) {
			line += " (where it goes: below)"
		}
		out = append(out, line+".")
	}
	if e := r.row("grpc-echo-64", "calls/s"); cpuPerRecord(e) > 0 {
		line := fmt.Sprintf("grpc-echo-64: %s calls/s at %.1f µs of CPU per call (%s µs): what this machine's gRPC stack does with unary calls and nothing behind them",
			thousands(int64(e.Value+0.5)), cpuPerRecord(e), e.CPU.PerUnitText(e.Value))
		if u := r.row("unary-64", "calls/s"); cpuPerRecord(u) > 0 {
			line += fmt.Sprintf("; unary-64 reaches %.2f× its calls/s, its gateway spending %.1f µs per call against the echo server's %.1f (%.2f×) and its bench client %.1f against %.1f",
				u.Value/e.Value, u.CPU.perUnit(u.CPU.Gateway, u.Value), e.CPU.perUnit(e.CPU.Echo, e.Value),
				u.CPU.perUnit(u.CPU.Gateway, u.Value)/max(e.CPU.perUnit(e.CPU.Echo, e.Value), 1e-9),
				u.CPU.perUnit(u.CPU.Bench, u.Value), e.CPU.perUnit(e.CPU.Bench, e.Value))
		}
		out = append(out, line+".")
	}
	dc := r.row("direct-consume", "throughput")
	if dc != nil && cpuPerRecord(dc) > 0 {
		out = append(out, fmt.Sprintf("direct-consume: %.1f µs of CPU per record (bench %.2f cores: the consumer with its librdkafka threads).",
			cpuPerRecord(dc), dc.CPU.Bench.Seconds()/dc.CPU.Wall.Seconds()))
	}
	for _, name := range []string{"gateway-consume-none", "gateway-consume-key"} {
		gc := r.row(name, "throughput")
		if cpuPerRecord(gc) <= 0 {
			continue
		}
		wall := gc.CPU.Wall.Seconds()
		line := fmt.Sprintf("%s: %.1f µs of CPU per record (gateway %.2f cores = %.1f µs per record, bench client %.2f cores = %.1f µs per record)",
			name, cpuPerRecord(gc), gc.CPU.Gateway.Seconds()/wall, gc.CPU.Gateway.Seconds()/wall/gc.Value*1e6,
			gc.CPU.Bench.Seconds()/wall, gc.CPU.Bench.Seconds()/wall/gc.Value*1e6)
		if dc != nil && cpuPerRecord(dc) > 0 {
			// Less sensitive to other load on the machine than the ratio of rates.
			line += fmt.Sprintf("; per CPU second it consumes %.2f× the records of direct-consume", cpuPerRecord(dc)/cpuPerRecord(gc))
		}
		out = append(out, line+".")
	}
	if dd, none := r.row("gateway-consume-none-dedupe", "throughput"), r.row("gateway-consume-none", "throughput"); cpuPerRecord(dd) > 0 {
		wall := dd.CPU.Wall.Seconds()
		perRec := func(d time.Duration) float64 { return d.Seconds() / wall / dd.Value * 1e6 }
		line := fmt.Sprintf("gateway-consume-none-dedupe: %.1f µs of CPU per record (gateway %.2f cores = %.1f µs per record, bench client %.2f cores = %.1f µs per record",
			cpuPerRecord(dd), dd.CPU.Gateway.Seconds()/wall, perRec(dd.CPU.Gateway), dd.CPU.Bench.Seconds()/wall, perRec(dd.CPU.Bench))
		if dd.CPU.Redis > 0 {
			line += fmt.Sprintf(", Redis %.2f cores = %.1f µs per record", dd.CPU.Redis.Seconds()/wall, perRec(dd.CPU.Redis))
		}
		line += ")"
		if cpuPerRecord(none) > 0 {
			nwall := none.CPU.Wall.Seconds()
			line += fmt.Sprintf("; dedupe adds %.1f µs of CPU per record in all (the gateway's share: %+.1f µs per record) and reaches %.2f× gateway-consume-none's records/s",
				cpuPerRecord(dd)-cpuPerRecord(none), perRec(dd.CPU.Gateway)-none.CPU.Gateway.Seconds()/nwall/none.Value*1e6, dd.Value/none.Value)
			// What the machine's cores allow at this CPU cost, every process
			// sharing them: the ceiling any tuning of the pipeline meets.
			if cores := float64(runtime.NumCPU()); cores > 0 {
				ceiling := cores / cpuPerRecord(dd) * 1e6
				line += fmt.Sprintf("; at %.1f µs of CPU per record, %.0f cores shared by all processes cap the rate at %s records/s, %.2f× gateway-consume-none",
					cpuPerRecord(dd), cores, thousands(int64(ceiling)), ceiling/none.Value)
				// The floor: Redis's CPU per record for the protocol's
				// commands, plus what consuming costs without dedupe, at
				// the target's rate, before the gateway's own dedupe work.
				if redis := perRec(dd.CPU.Redis); redis > 0 {
					goal := dedupeTarget * none.Value
					need := (redis + cpuPerRecord(none)) * goal / 1e6
					line += fmt.Sprintf("; at %.2f× gateway-consume-none (%s records/s) Redis alone would need %.2f cores at this run's %.1f µs per record, and consuming without dedupe %.2f more (%.1f µs per record): %.2f of the machine's %.0f cores before any dedupe work of the gateway's own",
						dedupeTarget, thousands(int64(goal)), redis*goal/1e6, redis, cpuPerRecord(none)*goal/1e6, cpuPerRecord(none), need, cores)
					if need >= cores {
						line += ", so the target cannot be met on this machine while Redis spends this much per record"
					}
				}
			}
		}
		out = append(out, line+".")
	}
	return out
}

// busyWarning says so when the machine was already busy when the run began
// (1-minute load average above 1.5 per core): other work competed for the
// CPU, so figures are noisier and ratios less reliable.
func (r *Report) busyWarning() string {
	var load float64
	if _, err := fmt.Sscan(r.LoadStart, &load); err != nil || load <= 1.5*float64(r.Machine.Cores) {
		return ""
	}
	return fmt.Sprintf("the machine was busy when the run began (1-minute load average %.2f on %d cores); "+
		"other work competed for the CPU, so these figures are noisier than usual.", load, r.Machine.Cores)
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Machine describes where the run happened.
type Machine struct {
	CPUModel   string
	Cores      int
	Memory     string
	Kernel     string
	GoVersion  string
	Kafka      string
	Librdkafka string
	KafkaGo    string
	GRPC       string
}

func describeMachine(kafkaVersion string) Machine {
	_, rdk := kafka.LibraryVersion()
	m := Machine{
		CPUModel:   "unknown",
		Cores:      runtime.NumCPU(),
		Memory:     "unknown",
		Kernel:     runtime.GOOS + "/" + runtime.GOARCH,
		GoVersion:  runtime.Version(),
		Kafka:      kafkaVersion,
		Librdkafka: rdk,
		KafkaGo:    "unknown",
		GRPC:       "unknown",
	}
	if m.Kafka == "" {
		m.Kafka = "unknown (pass --kafka-version)"
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if kb, err := meminfoKB("MemTotal"); err == nil {
		m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = fmt.Sprintf("Linux %s (%s)", strings.TrimSpace(string(rel)), runtime.GOARCH)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			switch dep.Path {
			case "github.com/confluentinc/confluent-kafka-go/v2":
				m.KafkaGo = dep.Version
			case "google.golang.org/grpc":
				m.GRPC = dep.Version
			}
		}
	}
	return m
}

func (m Machine) oneLine() string {
	return fmt.Sprintf("%s, %d cores, %s, %s, Kafka %s, librdkafka %s", m.CPUModel, m.Cores, m.Memory, m.GoVersion, m.Kafka, m.Librdkafka)
}

func meminfoKB(field string) (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			_, err := fmt.Sscan(rest, &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no %s", field)
}
