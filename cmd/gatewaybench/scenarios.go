package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// pl is the payload every scenario writes.
var pl = newPayload()

// protoRecords returns numKeys+n records: record i has key i%numKeys, so
// any n consecutive records starting below numKeys form a batch.
func protoRecords(n int) []*gatewayv1.Record {
	recs := make([]*gatewayv1.Record, numKeys+n)
	for i := range recs {
		recs[i] = &gatewayv1.Record{Key: pl.keys[i%numKeys], Value: pl.values[i%numKeys]}
	}
	return recs
}

// ---------------------------------------------------------------- RSS

// rssIdle starts a gateway with the default preset, leaves it idle for 2 s
// and reads its VmRSS.
func (b *bench) rssIdle(ctx context.Context) ([]Row, error) {
	g, err := startGateway(ctx, b.opts.gatewayBin, b.opts.bootstrap, b.logDir, gatewaySpec{preset: "balanced"})
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	kb, rssErr := procStatusKB(g.pid(), "VmRSS")
	split := rssSplit(g.pid())
	stopErr := g.stop()
	if err := errors.Join(rssErr, ctx.Err()); err != nil {
		return nil, err
	}
	if stopErr != nil {
		return nil, fmt.Errorf("gateway (balanced): %w", stopErr)
	}
	if n := g.errorLines(); n > 0 {
		return nil, fmt.Errorf("gateway (balanced) logged %d ERROR lines, see %s", n, g.logPath)
	}
	mib := float64(kb) / 1024
	return []Row{{
		Figure: "RSS idle", Value: mib, Unit: "MiB",
		Target: atMost(mib, 50, "MiB"),
		Note:   "default preset (balanced), external broker, 2 s after start; " + split,
	}}, nil
}

// rssSplit describes the parts of pid's resident memory: anonymous (heaps:
// Go's and librdkafka's) and file-backed (mostly the binary's own pages).
func rssSplit(pid int) string {
	anon, err1 := procStatusKB(pid, "RssAnon")
	file, err2 := procStatusKB(pid, "RssFile")
	if err1 != nil || err2 != nil {
		return "RSS split unknown"
	}
	return fmt.Sprintf("anon %.1f MiB, file %.1f MiB", float64(anon)/1024, float64(file)/1024)
}

// rssPeak reads the peak RSS (VmHWM) of the throughput-preset gateway after
// the scenarios that used it.
func (b *bench) rssPeak(ctx context.Context) ([]Row, error) {
	g := b.gateways["throughput"]
	if g == nil {
		return nil, errors.New("no throughput gateway ran (run stream-100 or stream-1000 first)")
	}
	hwm, err := procStatusKB(g.pid(), "VmHWM")
	if err != nil {
		return nil, err
	}
	rss, _ := procStatusKB(g.pid(), "VmRSS")
	return []Row{{
		Figure: "RSS peak (VmHWM)", Value: float64(hwm) / 1024, Unit: "MiB",
		Note: fmt.Sprintf("throughput preset, after the stream scenarios; VmRSS now %.1f MiB (%s)", float64(rss)/1024, rssSplit(g.pid())),
	}}, nil
}

// ---------------------------------------------------------------- direct

// directAsync produces N records asynchronously with librdkafka directly and
// counts delivery reports until all N are in: the throughput baseline.
func (b *bench) directAsync(ctx context.Context) ([]Row, error) {
	row, err := b.directThroughput(ctx, "direct-async", b.opts.records, b.opts.repeats, false)
	if err != nil {
		return nil, err
	}
	b.directRate = row.Value
	row.Note += ", baseline"
	return []Row{row}, checkFailures(row)
}

// directGatewayLike is directAsync plus the per-record work the gateway
// asks of librdkafka: a 36-byte message-id header and a per-record Opaque
// (which confluent-kafka-go keeps in a map until the delivery report). It
// shows how much of the gateway's cost is in the Kafka client itself.
func (b *bench) directGatewayLike(ctx context.Context) ([]Row, error) {
	row, err := b.directThroughput(ctx, "direct-gwlike", b.opts.records, b.opts.repeats, true)
	if err != nil {
		return nil, err
	}
	b.gwlikeRate = row.Value
	if b.directRate > 0 {
		row.Ratio = row.Value / b.directRate
	}
	row.Note += ", with a message-id header and an Opaque per record"
	return []Row{row}, checkFailures(row)
}

// warmBroker writes records through a direct producer before the first
// scenario, so that a freshly started broker's JIT does not penalize
// whichever scenario runs first.
func (b *bench) warmBroker(ctx context.Context) error {
	_, err := b.directThroughput(ctx, "warmup", 500_000, 1, false)
	return err
}

// directThroughput writes a warm-up and then, repeats times, n records to a
// fresh topic through a direct throughput-preset producer, and returns the
// row of the median run.
func (b *bench) directThroughput(ctx context.Context, name string, n, repeats int, gatewayLike bool) (Row, error) {
	topic, err := b.createTopic(ctx, name)
	if err != nil {
		return Row{}, err
	}
	d, err := newDirectProducer(b.opts.bootstrap, "throughput")
	if err != nil {
		return Row{}, err
	}
	defer d.close()

	// For gatewayLike: the message-id header value (rewritten per record;
	// librdkafka copies it), the opaque targets, and a CreateTime set once
	// per run (the gateway sets it once per batch).
	id := []byte("01890000-0000-7000-8000-000000000000")
	opaques := make([]int64, 4096)
	var seq uint64

	produceN := func(n int) (time.Duration, error) {
		base, _, _ := d.counts()
		start := time.Now()
		msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic.name, Partition: kafka.PartitionAny}}
		hdrs := []kafka.Header{{Key: "message-id", Value: id}}
		if gatewayLike {
			msg.Headers = hdrs
			msg.Timestamp = start.Truncate(time.Millisecond)
		}
		for i := range n {
			if i%4096 == 0 && ctx.Err() != nil {
				return 0, ctx.Err()
			}
			msg.Key, msg.Value = pl.keys[i%numKeys], pl.values[i%numKeys]
			if gatewayLike {
				seq++
				putHex(id[24:], seq)
				msg.Opaque = &opaques[i%len(opaques)]
			}
			if err := d.produce(&msg); err != nil {
				return 0, fmt.Errorf("produce: %w", err)
			}
		}
		if err := d.waitReports(base+int64(n), 2*time.Minute); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}

	if _, err := produceN(b.opts.warmupRecords); err != nil {
		return Row{}, fmt.Errorf("warm-up: %w", err)
	}
	var runs []measurement
	var profiles []profileSummary
	for i := range repeats {
		// The last run is profiled (the bench client's warm-up does not
		// count): this process is the producer.
		var prof *profiling
		if i == repeats-1 && name != "warmup" {
			prof = b.startProfiling(name, "direct producer", 0)
		}
		mark := b.markCPU(nil)
		elapsed, err := produceN(n)
		cpu := mark.since()
		if prof != nil {
			profiles = prof.finish()
		}
		if err != nil {
			reported, failed, _ := d.counts()
			topic.acked = reported - failed
			return Row{}, err
		}
		runs = append(runs, measurement{records: int64(n), elapsed: elapsed, cpu: cpu})
	}
	reported, failed, firstErr := d.counts()
	topic.acked = reported - failed
	m, spread := median(runs)
	row := Row{
		Figure: "throughput", Value: m.rate(), Unit: "records/s",
		Detail:   mbps(n, m.elapsed),
		Failures: failed,
		CPU:      m.cpu,
		Profiles: profiles,
		Note:     fmt.Sprintf("%s records, throughput preset, %s", thousands(int64(n)), spread),
	}
	if failed > 0 {
		row.Note += fmt.Sprintf("; %d failed, first: %v", failed, firstErr)
	}
	return row, nil
}

// putHex writes v as lower-case hex into the whole of dst, right-aligned.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// checkFailures returns errFailures when the row counts failed records.
func checkFailures(r Row) error {
	if r.Failures > 0 {
		return errFailures
	}
	return nil
}

// ---------------------------------------------------------------- stream

// gatewayStream sends N records through ProduceStream in batches of
// batchSize, keeping window batches outstanding on each of opts.streams
// streams, against the throughput-preset gateway. Targets: target×
// direct-async, and gwlikeTarget× direct-gwlike.
func (b *bench) gatewayStream(ctx context.Context, name string, batchSize, window int, target float64) ([]Row, error) {
	gw, err := b.gateway(ctx, "throughput")
	if err != nil {
		return nil, err
	}
	topic, err := b.createTopic(ctx, name)
	if err != nil {
		return nil, err
	}
	recs := protoRecords(batchSize)
	cfg := streamConfig{topic: topic.name, recs: recs, batchSize: batchSize, window: window, streams: b.opts.streams}

	warm, err := runStream(ctx, gw.client, cfg, b.opts.warmupRecords)
	topic.acked += warm.ok
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var runs []measurement
	var profiles []profileSummary
	failed, firstErr := warm.failed, warm.firstErr
	for i := range b.opts.repeats {
		// The last run is profiled, for as long as the runs before it took
		// (or the warm-up's rate says it will take).
		var prof *profiling
		if i == b.opts.repeats-1 {
			expected := time.Duration(float64(warm.elapsed) * float64(b.opts.records) / float64(max(warm.records, 1)))
			if len(runs) > 0 {
				m, _ := median(slices.Clone(runs))
				expected = m.elapsed
			}
			prof = b.startProfiling(name, "bench client", profileSeconds(expected),
				profileTarget{process: "gateway", own: "gateway code", addr: gw.pprof, pid: gw.pid()})
		}
		mark := b.markCPU(gw)
		res, err := runStream(ctx, gw.client, cfg, b.opts.records)
		cpu := mark.since()
		if prof != nil {
			profiles = prof.finish()
		}
		topic.acked += res.ok
		failed += res.failed
		firstErr = firstNonEmpty(firstErr, res.firstErr)
		if err != nil {
			return nil, err
		}
		runs = append(runs, measurement{records: res.records, elapsed: res.elapsed, cpu: cpu})
	}
	m, spread := median(runs)
	rate := m.rate()
	row := Row{
		Figure: "throughput", Value: rate, Unit: "records/s",
		Detail:   mbps(int(m.records), m.elapsed),
		Failures: failed,
		CPU:      m.cpu,
		Profiles: profiles,
		Note: fmt.Sprintf("%s records, %d streams × %d batches outstanding, throughput preset, %s",
			thousands(m.records), cfg.streams, window, spread),
	}
	if b.directRate > 0 {
		row.Ratio = rate / b.directRate
		row.Target = atLeastRatio(row.Ratio, target)
	}
	rows := []Row{row}
	if b.gwlikeRate > 0 {
		r := rate / b.gwlikeRate
		rows = append(rows, Row{
			Figure: "vs direct-gwlike", Value: r, Unit: "×",
			Target: &Target{Text: fmt.Sprintf("≥ %.2f× direct-gwlike", gwlikeTarget), Met: r >= gwlikeTarget},
			Note: fmt.Sprintf("%s records/s ÷ %s records/s of direct-gwlike (librdkafka with a message-id header and an Opaque per record), same run",
				thousands(int64(rate+0.5)), thousands(int64(b.gwlikeRate+0.5))),
		})
	}
	if row.Failures > 0 {
		rows[0].Note += "; first failure: " + firstErr
		return rows, errFailures
	}
	return rows, nil
}

type streamConfig struct {
	topic     string
	recs      []*gatewayv1.Record
	batchSize int
	window    int // outstanding batches per stream
	streams   int
}

// tally counts record outcomes across goroutines.
type tally struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   string
}

func (t *tally) fail(n int64, msg string) {
	t.failed.Add(n)
	t.mu.Lock()
	if t.firstErr == "" {
		t.firstErr = msg
	}
	t.mu.Unlock()
}

// check counts the results of one response for want records.
func (t *tally) check(results []*gatewayv1.RecordResult, want int) {
	if len(results) != want {
		t.fail(int64(want), fmt.Sprintf("%d results for %d records", len(results), want))
		return
	}
	var ok int64
	for _, r := range results {
		if e := r.GetError(); e != nil {
			t.fail(1, status.FromProto(e).String())
			continue
		}
		ok++
	}
	t.ok.Add(ok)
}

type streamResult struct {
	records, ok, failed int64
	firstErr            string
	elapsed             time.Duration
}

// runStream writes about total records (whole batches) and returns when
// every batch is answered.
func runStream(ctx context.Context, client gatewayv1.ProducerServiceClient, cfg streamConfig, total int) (streamResult, error) {
	nBatches := int64(max(total/cfg.batchSize, 1))
	var next atomic.Int64
	var t tally
	start := time.Now()
	errs := make(chan error, cfg.streams)
	for range cfg.streams {
		go func() { errs <- oneStream(ctx, client, cfg, nBatches, &next, &t) }()
	}
	var err error
	for range cfg.streams {
		err = errors.Join(err, <-errs)
	}
	return streamResult{
		records:  nBatches * int64(cfg.batchSize),
		ok:       t.ok.Load(),
		failed:   t.failed.Load(),
		firstErr: t.firstErr,
		elapsed:  time.Since(start),
	}, err
}

// oneStream runs one ProduceStream: a sender claims batch numbers from next
// while fewer than cfg.window batches are unanswered; this goroutine
// receives the responses.
func oneStream(ctx context.Context, client gatewayv1.ProducerServiceClient, cfg streamConfig, nBatches int64, next *atomic.Int64, t *tally) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.ProduceStream(ctx)
	if err != nil {
		return err
	}
	slots := make(chan struct{}, cfg.window)
	var sent atomic.Int64
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				sendErr <- ctx.Err()
				return
			}
			idx := next.Add(1) - 1
			if idx >= nBatches {
				break
			}
			off := int(idx*int64(cfg.batchSize)) % numKeys
			req := &gatewayv1.ProduceStreamRequest{
				RequestId: strconv.FormatInt(idx, 10),
				Topic:     cfg.topic,
				Records:   cfg.recs[off : off+cfg.batchSize],
			}
			if err := stream.Send(req); err != nil {
				sendErr <- err // io.EOF: the stream ended; Recv has the status
				return
			}
			sent.Add(1)
		}
		sendErr <- stream.CloseSend()
	}()

	var received int64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			cancel()
			<-sendErr
			return fmt.Errorf("stream: %w", err)
		}
		received++
		<-slots
		t.check(resp.GetResults(), cfg.batchSize)
	}
	if err := <-sendErr; err != nil {
		return fmt.Errorf("stream send: %w", err)
	}
	if received != sent.Load() {
		return fmt.Errorf("stream answered %d of %d batches", received, sent.Load())
	}
	return nil
}

// ---------------------------------------------------------------- unary

// gatewayUnary calls Produce with one record per call from callers
// goroutines for opts.unaryDuration, against the latency-preset gateway.
func (b *bench) gatewayUnary(ctx context.Context, name string, callers int) ([]Row, error) {
	gw, err := b.gateway(ctx, "latency")
	if err != nil {
		return nil, err
	}
	topic, err := b.createTopic(ctx, name)
	if err != nil {
		return nil, err
	}
	recs := protoRecords(1)
	warm := runUnary(ctx, gw.client, topic.name, recs, callers, time.Second)
	topic.acked += warm.ok
	topic.acks = append(topic.acks, warm.acks...)
	// unary-64 is profiled: it has a target (against grpc-echo-64).
	var prof *profiling
	if callers == 64 {
		prof = b.startProfiling(name, "bench client", profileSeconds(b.opts.unaryDuration),
			profileTarget{process: "gateway", own: "gateway code", addr: gw.pprof, pid: gw.pid()})
	}
	mark := b.markCPU(gw)
	res := runUnary(ctx, gw.client, topic.name, recs, callers, b.opts.unaryDuration)
	cpu := mark.since()
	var profiles []profileSummary
	if prof != nil {
		profiles = prof.finish()
	}
	topic.acked += res.ok
	topic.acks = append(topic.acks, res.acks...)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rate := float64(res.calls) / res.elapsed.Seconds()
	lat := summarize(res.latencies)
	row := Row{
		Figure: "calls/s", Value: rate, Unit: "calls/s",
		Failures: res.failed + warm.failed,
		CPU:      cpu,
		Profiles: profiles,
		Note: fmt.Sprintf("1 record/call, %d caller(s), latency preset, %s calls; call p50 %s, p99 %s",
			callers, thousands(res.calls), fmtMs(lat.p50), fmtMs(lat.p99)),
	}
	if b.directRate > 0 {
		row.Ratio = rate / b.directRate
	}
	rows := []Row{row}
	if callers == 64 && b.echoRate > 0 {
		r := rate / b.echoRate
		rows = append(rows, Row{
			Figure: "vs grpc-echo-64", Value: r, Unit: "×",
			Target: &Target{Text: fmt.Sprintf("≥ %.2f× grpc-echo-64", echoTarget), Met: r >= echoTarget},
			Note: fmt.Sprintf("%s calls/s ÷ %s calls/s of the bare gRPC echo server with the same client, callers and message sizes, same run",
				thousands(int64(rate+0.5)), thousands(int64(b.echoRate+0.5))),
		})
	}
	if row.Failures > 0 {
		rows[0].Note += "; first failure: " + firstNonEmpty(warm.firstErr, res.firstErr)
		return rows, errFailures
	}
	return rows, nil
}

type unaryResult struct {
	calls, ok, failed int64
	firstErr          string
	elapsed           time.Duration
	latencies         []time.Duration
	// acks are where the successful calls' records were written, as the
	// gateway answered.
	acks []ackedAt
}

// ackedAt is the partition and offset an answer gave a record.
type ackedAt struct {
	partition int32
	offset    int64
}

// runUnary runs callers goroutines that call Produce back to back until d
// has passed.
func runUnary(ctx context.Context, client gatewayv1.ProducerServiceClient, topic string, recs []*gatewayv1.Record, callers int, d time.Duration) unaryResult {
	var t tally
	lats := make([][]time.Duration, callers)
	acks := make([][]ackedAt, callers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := c; time.Now().Before(deadline) && ctx.Err() == nil; i += callers {
				k := i % numKeys
				req := &gatewayv1.ProduceRequest{Topic: topic, Records: recs[k : k+1]}
				t0 := time.Now()
				resp, err := client.Produce(ctx, req)
				lats[c] = append(lats[c], time.Since(t0))
				if err != nil {
					t.fail(1, status.Convert(err).String())
					continue
				}
				t.check(resp.GetResults(), 1)
				for _, res := range resp.GetResults() {
					if res.GetError() == nil {
						acks[c] = append(acks[c], ackedAt{res.GetPartition(), res.GetOffset()})
					}
				}
			}
		})
	}
	wg.Wait()
	r := unaryResult{ok: t.ok.Load(), failed: t.failed.Load(), firstErr: t.firstErr, elapsed: time.Since(start)}
	for _, l := range lats {
		r.latencies = append(r.latencies, l...)
	}
	for _, a := range acks {
		r.acks = append(r.acks, a...)
	}
	r.calls = int64(len(r.latencies))
	return r
}

// ---------------------------------------------------------------- latency

// latency measures one record at a time, latency preset on both sides: a
// direct synchronous produce (produce, wait for the delivery report) and a
// gateway unary Produce, alternated so both see the same broker state.
func (b *bench) latency(ctx context.Context) ([]Row, error) {
	gw, err := b.gateway(ctx, "latency")
	if err != nil {
		return nil, err
	}
	dTopic, err := b.createTopic(ctx, "latency-direct")
	if err != nil {
		return nil, err
	}
	gTopic, err := b.createTopic(ctx, "latency-gateway")
	if err != nil {
		return nil, err
	}
	d, err := newDirectProducer(b.opts.bootstrap, "latency")
	if err != nil {
		return nil, err
	}
	defer d.close()
	recs := protoRecords(1)

	var t tally
	directOnce := func(i int) (time.Duration, error) {
		base, _, _ := d.counts()
		reached := d.expect(base + 1)
		msg := kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &dTopic.name, Partition: kafka.PartitionAny},
			Key:            pl.keys[i%numKeys], Value: pl.values[i%numKeys],
		}
		t0 := time.Now()
		if err := d.produce(&msg); err != nil {
			return 0, err
		}
		select {
		case <-reached:
		case <-time.After(30 * time.Second):
			return 0, errors.New("no delivery report within 30s")
		}
		return time.Since(t0), nil
	}
	gatewayOnce := func(i int) time.Duration {
		k := i % numKeys
		req := &gatewayv1.ProduceRequest{Topic: gTopic.name, Records: recs[k : k+1]}
		t0 := time.Now()
		resp, err := gw.client.Produce(ctx, req)
		lat := time.Since(t0)
		if err != nil {
			t.fail(1, status.Convert(err).String())
		} else {
			t.check(resp.GetResults(), 1)
		}
		return lat
	}

	const warmup = 300
	n := b.opts.latencySamples
	directLat := make([]time.Duration, 0, n)
	gatewayLat := make([]time.Duration, 0, n)
	var mark cpuMark
	for i := range warmup + n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if i == warmup {
			mark = b.markCPU(gw)
		}
		dl, err := directOnce(i)
		if err != nil {
			return nil, fmt.Errorf("direct: %w", err)
		}
		gl := gatewayOnce(i)
		if i >= warmup {
			directLat = append(directLat, dl)
			gatewayLat = append(gatewayLat, gl)
		}
	}
	cpu := mark.since()
	reported, failed, firstErr := d.counts()
	dTopic.acked = reported - failed
	gTopic.acked = t.ok.Load()

	ds, gs := summarize(directLat), summarize(gatewayLat)
	addedP50, addedP99 := gs.p50-ds.p50, gs.p99-ds.p99
	note := fmt.Sprintf("%s sequential samples per side, alternated", thousands(int64(n)))
	rows := []Row{
		{Figure: "direct p50", Value: ms(ds.p50), Unit: "ms", Failures: failed, CPU: cpu,
			Note: note + fmt.Sprintf("; direct mean %s, max %s", fmtMs(ds.mean), fmtMs(ds.max))},
		{Figure: "direct p99", Value: ms(ds.p99), Unit: "ms"},
		{Figure: "gateway p50", Value: ms(gs.p50), Unit: "ms", Ratio: ratio(gs.p50, ds.p50), Failures: t.failed.Load(),
			Note: fmt.Sprintf("gateway mean %s, max %s", fmtMs(gs.mean), fmtMs(gs.max))},
		{Figure: "gateway p99", Value: ms(gs.p99), Unit: "ms", Ratio: ratio(gs.p99, ds.p99)},
		{Figure: "added p50", Value: ms(addedP50), Unit: "ms", Target: atMost(ms(addedP50), 0.3, "ms")},
		{Figure: "added p99", Value: ms(addedP99), Unit: "ms", Target: atMost(ms(addedP99), 1, "ms")},
	}
	if failed > 0 {
		rows[0].Note += fmt.Sprintf("; first direct failure: %v", firstErr)
	}
	if t.failed.Load() > 0 {
		rows[2].Note += "; first gateway failure: " + t.firstErr
	}
	if failed > 0 || t.failed.Load() > 0 {
		return rows, errFailures
	}
	return rows, nil
}

// ---------------------------------------------------------------- helpers

// measurement is one timed run of a throughput scenario.
type measurement struct {
	records int64
	elapsed time.Duration
	cpu     CPU
}

func (m measurement) rate() float64 { return float64(m.records) / m.elapsed.Seconds() }

// median returns the run with the median rate, and a note on the spread.
func median(runs []measurement) (measurement, string) {
	slices.SortFunc(runs, func(a, b measurement) int { return cmp.Compare(a.rate(), b.rate()) })
	m := runs[len(runs)/2]
	if len(runs) == 1 {
		return m, "1 run"
	}
	return m, fmt.Sprintf("median of %d runs (%s–%s/s)", len(runs), thousands(int64(runs[0].rate())), thousands(int64(runs[len(runs)-1].rate())))
}

type latencySummary struct{ p50, p99, mean, max time.Duration }

// summarize returns percentiles (nearest rank) of lats; it sorts lats.
func summarize(lats []time.Duration) latencySummary {
	if len(lats) == 0 {
		return latencySummary{}
	}
	slices.Sort(lats)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(lats))+0.999999) - 1
		return lats[min(max(i, 0), len(lats)-1)]
	}
	var sum time.Duration
	for _, l := range lats {
		sum += l
	}
	return latencySummary{p50: rank(0.50), p99: rank(0.99), mean: sum / time.Duration(len(lats)), max: lats[len(lats)-1]}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.3f ms", ms(d)) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// mbps is the key+value payload rate of records 0…n-1 written in d.
func mbps(n int, d time.Duration) string {
	var bytes int
	for i := range min(n, numKeys) {
		bytes += pl.recordBytes(i)
	}
	perRecord := float64(bytes) / float64(min(n, numKeys))
	return fmt.Sprintf("%.1f MB/s", perRecord*float64(n)/d.Seconds()/1e6)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
