package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/redis/go-redis/v9"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// scenario is one named measurement. It returns rows of the result table;
// an error means the scenario itself broke (its rows are then missing).
type scenario struct {
	name string
	run  func(b *bench, ctx context.Context) ([]Row, error)
}

// scenarios run in this order; later ones read baselines that earlier ones
// stored in bench (direct-async's and direct-consume's rates, the
// throughput gateway).
var scenarios = []scenario{
	{"rss-idle", (*bench).rssIdle},
	{"direct-async", (*bench).directAsync},
	{"direct-gwlike", (*bench).directGatewayLike},
	{"stream-100", func(b *bench, ctx context.Context) ([]Row, error) {
		return b.gatewayStream(ctx, "stream-100", 100, b.opts.window100, stream100Target)
	}},
	{"stream-1000", func(b *bench, ctx context.Context) ([]Row, error) {
		return b.gatewayStream(ctx, "stream-1000", 1000, b.opts.window1000, stream1000Target)
	}},
	{"stream-100-limited", (*bench).streamLimited},
	{"grpc-echo-64", (*bench).grpcEcho},
	{"unary-1", func(b *bench, ctx context.Context) ([]Row, error) {
		return b.gatewayUnary(ctx, "unary-1", 1)
	}},
	{"unary-64", func(b *bench, ctx context.Context) ([]Row, error) {
		return b.gatewayUnary(ctx, "unary-64", 64)
	}},
	{"latency", (*bench).latency},
	{"rss-peak", (*bench).rssPeak},
	{"direct-consume", (*bench).directConsume},
	{"gateway-consume-none", func(b *bench, ctx context.Context) ([]Row, error) {
		return b.gatewayConsume(ctx, "gateway-consume-none", gatewayv1.Ordering_ORDERING_NONE,
			b.opts.consumeStreams, b.opts.consumeBuffered, consumeNoneTarget)
	}},
	{"gateway-consume-none-dedupe", (*bench).gatewayConsumeDedupe},
	{"gateway-consume-key", func(b *bench, ctx context.Context) ([]Row, error) {
		return b.gatewayConsume(ctx, "gateway-consume-key", gatewayv1.Ordering_ORDERING_KEY,
			b.opts.consumeKeyStreams, b.opts.consumeKeyBuffered, consumeKeyTarget)
	}},
}

// Produce targets (ratios of the same run).
const (
	stream100Target  = 0.6 // stream-100 ≥ 0.6× direct-async
	stream1000Target = 0.8 // stream-1000 ≥ 0.8× direct-async
	gwlikeTarget     = 1.5 // stream-100 and stream-1000 ≥ 1.5× direct-gwlike
	echoTarget       = 0.7 // unary-64 ≥ 0.7× grpc-echo-64
)

// Consume targets (ratios of the same run).
const (
	consumeNoneTarget = 0.6 // gateway-consume-none ≥ 0.6× direct-consume
	consumeKeyTarget  = 0.4 // gateway-consume-key ≥ 0.4× direct-consume
	dedupeTarget      = 0.6 // gateway-consume-none-dedupe ≥ 0.6× gateway-consume-none
	consumeRSSTarget  = 150 // MiB: the gateway of gateway-consume-none, peak
)

// scenarioNames lists the scenarios in the order they run.
func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

// selectScenarios returns the scenarios named in only (comma-separated), or
// all of them.
func selectScenarios(only string) []scenario {
	if only == "" {
		return scenarios
	}
	names := strings.Split(only, ",")
	var out []scenario
	for _, s := range scenarios {
		if slices.Contains(names, s.name) {
			out = append(out, s)
		}
	}
	for _, n := range names {
		if !slices.Contains(scenarioNames(), n) {
			fatalf("--only: no scenario %q (scenarios: %s)", n, strings.Join(scenarioNames(), ", "))
		}
	}
	if len(out) == 0 {
		fatalf("--only %q names no scenario", only)
	}
	return out
}

// bench holds what the scenarios share: the broker connection, the gateway
// processes (started on first use, stopped at the end), the topics to
// verify and delete, and the baselines for ratios.
type bench struct {
	opts   options
	runID  string
	meta   *kafka.Producer // metadata and watermark queries
	admin  *kafka.AdminClient
	logDir string
	tmpLog bool // logDir is a temporary directory of this run

	gateways map[string]*gatewayProc // by name: the preset, or consume-none / consume-key
	topics   []*topicCheck
	filled   *filledTopic // the topic the consume scenarios read, once filled
	groups   []string     // consumer groups of the run, deleted at the end

	// Dedupe: the Redis client (connected on first use) and the key prefix
	// of this run's dedupe gateway, unique to the run; its keys are
	// deleted after each run and at the end.
	rdb          *redis.Client
	dedupePrefix string

	// Baselines, set by the scenarios that measure them.
	directRate        float64 // direct-async records/s
	gwlikeRate        float64 // direct-gwlike records/s
	echoRate          float64 // grpc-echo-64 calls/s
	directConsumeRate float64 // direct-consume records/s
	consumeNoneRate   float64 // gateway-consume-none records/s
}

// topicCheck is a topic written by a scenario and the number of records
// acknowledged to it, compared with its high watermarks at the end.
type topicCheck struct {
	scenario string
	name     string
	acked    int64
	// acks, when kept (unary scenarios), are the answered partitions and
	// offsets: a count that does not add up is then explained.
	acks []ackedAt
}

func newBench(o options) (*bench, error) {
	meta, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":      o.bootstrap,
		"client.id":              "gatewaybench-admin",
		"go.logs.channel.enable": true,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", o.bootstrap, err)
	}
	go drainLogs(meta.Logs())
	admin, err := kafka.NewAdminClientFromProducer(meta)
	if err != nil {
		meta.Close()
		return nil, err
	}
	logDir, tmpLog := o.logDir, o.logDir == ""
	if tmpLog {
		logDir, err = os.MkdirTemp("", "gatewaybench-")
		if err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	runID := time.Now().UTC().Format("20060102-150405")
	return &bench{
		opts:         o,
		runID:        runID,
		dedupePrefix: fmt.Sprintf("gatewaybench:%s-%d:", runID, os.Getpid()),
		meta:         meta,
		admin:        admin,
		logDir:       logDir,
		tmpLog:       tmpLog,
		gateways:     map[string]*gatewayProc{},
	}, nil
}

// runScenarios runs each scenario, then verifies the topics.
func (b *bench) runScenarios(ctx context.Context, list []scenario) *Report {
	r := newReport(b.opts)
	fmt.Fprintln(os.Stderr, "== broker warm-up")
	if err := b.warmBroker(ctx); err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("broker warm-up: %v", err))
		return r
	}
	for _, s := range list {
		if ctx.Err() != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s: not run: %v", s.name, ctx.Err()))
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", s.name)
		start := time.Now()
		rows, err := s.run(b, ctx)
		for i := range rows {
			rows[i].Scenario = s.name
			fmt.Fprintf(os.Stderr, "   %-22s %s\n", rows[i].Figure, rows[i].valueText())
		}
		r.Rows = append(r.Rows, rows...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "   FAILED: %v\n", err)
			r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", s.name, err))
		}
		fmt.Fprintf(os.Stderr, "   (%s)\n", time.Since(start).Round(100*time.Millisecond))
	}
	b.stopGateways(r)
	b.deleteGroups()
	b.deleteRedisKeys()
	r.Errors = append(r.Errors, b.verifyTopics()...)
	return r
}

// gateway returns the running gateway of preset, starting it on first use.
func (b *bench) gateway(ctx context.Context, preset string) (*gatewayProc, error) {
	return b.gatewayWith(ctx, gatewaySpec{preset: preset})
}

// gatewayWith returns the running gateway named by spec, starting it on
// first use.
func (b *bench) gatewayWith(ctx context.Context, spec gatewaySpec) (*gatewayProc, error) {
	name := spec.label()
	if g := b.gateways[name]; g != nil {
		return g, nil
	}
	g, err := startGateway(ctx, b.opts.gatewayBin, b.opts.bootstrap, b.logDir, spec)
	if err != nil {
		return nil, err
	}
	b.gateways[name] = g
	return g, nil
}

// stopGateways stops every gateway still running and reports unclean exits.
func (b *bench) stopGateways(r *Report) {
	for _, name := range slices.Sorted(maps.Keys(b.gateways)) {
		g := b.gateways[name]
		if err := g.stop(); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("gateway (%s): %v", name, err))
		}
		if n := g.errorLines(); n > 0 {
			r.Errors = append(r.Errors, fmt.Sprintf("gateway (%s) logged %d ERROR lines, see %s", name, n, g.logPath))
		}
		delete(b.gateways, name)
	}
}

// createTopic creates a fresh topic for scenario and waits until every
// partition has a leader. The topic is verified and deleted at the end.
func (b *bench) createTopic(ctx context.Context, scenario string) (*topicCheck, error) {
	name := fmt.Sprintf("gatewaybench.%s.%s", scenario, b.runID)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := b.admin.CreateTopics(cctx, []kafka.TopicSpecification{{
		Topic: name, NumPartitions: b.opts.partitions, ReplicationFactor: 1,
	}})
	if err != nil {
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	if e := res[0].Error; e.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("create topic %s: %w", name, e)
	}
	for {
		md, err := b.meta.GetMetadata(&name, false, 5000)
		if err == nil {
			tm := md.Topics[name]
			ready := tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) == b.opts.partitions
			for _, p := range tm.Partitions {
				ready = ready && p.Leader >= 0 && p.Error.Code() == kafka.ErrNoError
			}
			if ready {
				break
			}
		}
		if cctx.Err() != nil {
			return nil, fmt.Errorf("topic %s has no leaders after 30s (last error: %v)", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t := &topicCheck{scenario: scenario, name: name}
	b.topics = append(b.topics, t)
	return t, nil
}

// explainAcks describes what is wrong with the answered positions of a
// topic whose records do not add up: positions answered twice, answers
// without an offset, offsets at or past their partition's end.
func explainAcks(acks []ackedAt, highs []int64) string {
	if len(acks) == 0 {
		return ""
	}
	seen := make(map[ackedAt]int, len(acks))
	var twice, noOffset, pastEnd int
	for _, a := range acks {
		switch {
		case a.offset < 0:
			noOffset++
			continue // not a position: answers without one are not "twice"
		case int(a.partition) >= len(highs) || a.partition < 0 || a.offset >= highs[a.partition]:
			pastEnd++
		}
		if seen[a]++; seen[a] == 2 {
			twice++
		}
	}
	return fmt.Sprintf(" (of the %d answers kept: %d positions answered more than once, %d without an offset, %d at or past their partition's end)",
		len(acks), twice, noOffset, pastEnd)
}

// verifyTopics compares every topic's high watermarks with the records
// acknowledged to it (offsets start at 0 in a fresh topic, and the
// idempotent producers write no duplicates), then deletes the topics.
func (b *bench) verifyTopics() []string {
	var errs []string
	var names []string
	for _, t := range b.topics {
		names = append(names, t.name)
		var total int64
		var err error
		highs := make([]int64, b.opts.partitions)
		for p := range int32(b.opts.partitions) {
			_, highs[p], err = b.meta.QueryWatermarkOffsets(t.name, p, 10_000)
			if err != nil {
				break
			}
			total += highs[p]
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s: verify topic %s: %v", t.scenario, t.name, err))
		case total != t.acked:
			errs = append(errs, fmt.Sprintf("%s: topic %s holds %d records, %d were acknowledged%s", t.scenario, t.name, total, t.acked, explainAcks(t.acks, highs)))
		}
	}
	if len(names) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := b.admin.DeleteTopics(ctx, names); err != nil {
			fmt.Fprintf(os.Stderr, "gatewaybench: delete topics: %v\n", err)
		}
	}
	return errs
}

// close releases the broker clients. The gateways' logs are removed when
// they are in a temporary directory and the run was clean; otherwise their
// place is printed.
func (b *bench) close(clean bool) {
	b.admin.Close()
	b.meta.Close()
	if b.rdb != nil {
		b.rdb.Close()
	}
	if clean && b.tmpLog {
		os.RemoveAll(b.logDir)
	} else {
		fmt.Fprintf(os.Stderr, "gateway logs: %s\n", b.logDir)
	}
}

// drainLogs discards librdkafka logs of the bench's own clients, printing
// errors and worse.
func drainLogs(ch <-chan kafka.LogEvent) {
	for ev := range ch {
		if ev.Level <= 3 {
			fmt.Fprintf(os.Stderr, "   librdkafka %s: %s\n", ev.Tag, ev.Message)
		}
	}
}

// errFailures is returned by scenarios whose records failed; the rows carry
// the counts.
var errFailures = errors.New("records failed")
