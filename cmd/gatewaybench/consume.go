package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// The consume scenarios read one pre-filled topic (consumeTopic) from the
// earliest offset, each run with a fresh consumer group, and time the run
// from the first record received to the moment every offset of every
// partition has been seen and processed (stored, or acknowledged).

// consumeStall ends a consume run that has seen no new record for this long;
// its missing records fail the run. opts.consumeTimeout bounds a run as a
// whole in the same way.
const consumeStall = 30 * time.Second

// filledTopic is the topic the consume scenarios read: its high watermark
// per partition (the low watermarks are 0: it is fresh and never trimmed).
type filledTopic struct {
	name  string
	high  []int64
	total int64
}

// consumeTopic returns the pre-filled topic, creating and filling it on
// first use: opts.consumeRecords records with keys key-0 … key-999 written
// by a direct throughput-preset producer (murmur2_random spreads the keys
// over the partitions).
func (b *bench) consumeTopic(ctx context.Context) (*filledTopic, error) {
	if b.filled != nil {
		return b.filled, nil
	}
	start := time.Now()
	topic, err := b.createTopic(ctx, "consume")
	if err != nil {
		return nil, err
	}
	d, err := newDirectProducer(b.opts.bootstrap, "throughput")
	if err != nil {
		return nil, err
	}
	n := b.opts.consumeRecords
	msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic.name, Partition: kafka.PartitionAny}}
	for i := range n {
		if i%4096 == 0 && ctx.Err() != nil {
			d.close()
			return nil, ctx.Err()
		}
		msg.Key, msg.Value = pl.keys[i%numKeys], pl.values[i%numKeys]
		if err := d.produce(&msg); err != nil {
			d.close()
			return nil, fmt.Errorf("fill %s: %w", topic.name, err)
		}
	}
	waitErr := d.waitReports(int64(n), 2*time.Minute)
	d.close()
	reported, failed, firstErr := d.counts()
	topic.acked = reported - failed
	if waitErr != nil {
		return nil, fmt.Errorf("fill %s: %w", topic.name, waitErr)
	}
	if failed > 0 {
		return nil, fmt.Errorf("fill %s: %d records failed, first: %v", topic.name, failed, firstErr)
	}
	t := &filledTopic{name: topic.name, high: make([]int64, b.opts.partitions)}
	for p := range int32(b.opts.partitions) {
		low, high, err := b.meta.QueryWatermarkOffsets(topic.name, p, 10_000)
		if err != nil {
			return nil, fmt.Errorf("watermarks of %s [%d]: %w", topic.name, p, err)
		}
		if low != 0 {
			return nil, fmt.Errorf("%s [%d] starts at offset %d, not 0", topic.name, p, low)
		}
		t.high[p] = high
		t.total += high
	}
	if t.total != int64(n) {
		return nil, fmt.Errorf("%s holds %d records, %d were written", topic.name, t.total, n)
	}
	fmt.Fprintf(os.Stderr, "   filled %s: %s records in %s, per partition %v\n",
		t.name, thousands(t.total), time.Since(start).Round(100*time.Millisecond), t.high)
	b.filled = t
	return t, nil
}

// consumeGatewaySpec is the gateway of a consume scenario: the default
// preset (its producer is not used) and the consumer flags of the run, with
// maxBuffered as consumer.max_buffered_records. Each ordering has its own
// gateway, so that each runs with the buffer that suits it.
func (b *bench) consumeGatewaySpec(name string, maxBuffered int) gatewaySpec {
	return gatewaySpec{name: name, preset: "balanced", flags: b.consumeGatewayFlags(maxBuffered)}
}

// consumeGatewayFlags are the consumer settings a consume gateway runs
// with, other than its defaults: the per-partition buffer, the librdkafka
// properties both consume sides get (opts.consumeProps), and an idle
// timeout that only makes each run's group leave (committing) soon after its
// streams close.
func (b *bench) consumeGatewayFlags(maxBuffered int) []string {
	flags := []string{fmt.Sprintf("--consumer.max_buffered_records=%d", maxBuffered)}
	for _, k := range slices.Sorted(maps.Keys(b.opts.consumeProps)) {
		flags = append(flags, fmt.Sprintf("--consumer.properties.%s=%s", k, b.opts.consumeProps[k]))
	}
	return append(flags, "--consumer.idle_timeout=2s")
}

// newGroupName returns a fresh consumer group name, remembered for deletion
// at the end of the run.
func (b *bench) newGroupName(scenario string, run int) string {
	g := fmt.Sprintf("gatewaybench.%s.%s.%d", scenario, b.runID, run)
	b.groups = append(b.groups, g)
	return g
}

// ---------------------------------------------------------------- coverage

// coverage tracks which offsets of the topic a run has seen: a bit per
// offset per partition, duplicates counted. Safe for concurrent use.
type coverage struct {
	mu        sync.Mutex
	high      []int64
	seen      [][]uint64
	remaining int64 // offsets not seen yet
	unique    int64
	dups      int64
	outside   int64 // offsets beyond the high watermark, or unknown partitions
	first     time.Time
	progress  time.Time // when the last new offset was seen
	onFirst   func()    // called once, at the first record
}

func newCoverage(t *filledTopic, onFirst func()) *coverage {
	c := &coverage{high: t.high, remaining: t.total, seen: make([][]uint64, len(t.high)), onFirst: onFirst, progress: time.Now()}
	for p, h := range t.high {
		c.seen[p] = make([]uint64, (h+63)/64)
	}
	return c
}

// add marks n records, record i being at(i), and reports whether every
// offset has now been seen.
func (c *coverage) add(n int, at func(i int) (partition int32, offset int64)) bool {
	if n == 0 {
		return false
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first.IsZero() {
		c.first = now
		if c.onFirst != nil {
			c.onFirst()
		}
	}
	before := c.unique
	for i := range n {
		p, off := at(i)
		if p < 0 || int(p) >= len(c.high) || off < 0 || off >= c.high[p] {
			c.outside++
			continue
		}
		w, bit := off>>6, uint64(1)<<(off&63)
		if c.seen[p][w]&bit != 0 {
			c.dups++
			continue
		}
		c.seen[p][w] |= bit
		c.unique++
		c.remaining--
	}
	if c.unique > before {
		c.progress = now
	}
	return c.remaining == 0
}

func (c *coverage) complete() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remaining == 0
}

// stalled reports whether no new offset has been seen for d.
func (c *coverage) stalled(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.progress) > d
}

// missingText names the partitions with offsets not seen and how many.
func (c *coverage) missingText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for p, h := range c.high {
		var missing int64
		first := int64(-1)
		for off := range h {
			if c.seen[p][off>>6]&(1<<(off&63)) == 0 {
				if first < 0 {
					first = off
				}
				missing++
			}
		}
		if missing > 0 {
			parts = append(parts, fmt.Sprintf("[%d] %d missing from offset %d", p, missing, first))
		}
	}
	return strings.Join(parts, ", ")
}

// consumeResult is one consume run.
type consumeResult struct {
	records  int64 // offsets in the topic
	unique   int64 // offsets seen
	dups     int64 // records seen again
	outside  int64
	elapsed  time.Duration // first record to the last processed
	cpu      CPU
	frames   int64 // gateway: Deliveries frames; direct: polled batches
	ackCalls int64 // gateway: Ack calls; direct: StoreOffsets calls
	failed   int64 // gateway: acked records whose Ack call failed
	firstErr string
	missing  string // missingText when records are missing
	sink     uint64 // keeps the value touching from being optimized away
}

func (r consumeResult) measurement() measurement {
	return measurement{records: r.records, elapsed: r.elapsed, cpu: r.cpu}
}

// touch is the "processing" of a record: it reads the value.
func touch(v []byte) uint64 {
	if len(v) == 0 {
		return 0
	}
	return uint64(len(v)) + uint64(v[0]) + uint64(v[len(v)-1])
}

// ---------------------------------------------------------------- direct

// directConsumerConfig is a plain librdkafka consumer that commits after
// processing: offsets are stored by the application once a batch is
// processed (enable.auto.offset.store=false, StoreOffsets) and committed in
// the background (enable.auto.commit=true). The assignor and commit
// interval are those the gateway gives its consumers (internal/consume
// Config.configMap); props (opts.consumeProps) are set on both sides (the
// consume gateway gets them as --consumer.properties.*).
func directConsumerConfig(bootstrap, group string, props map[string]string) kafka.ConfigMap {
	cm := kafka.ConfigMap{
		"bootstrap.servers":             bootstrap,
		"client.id":                     "gatewaybench-direct-consumer",
		"group.id":                      group,
		"auto.offset.reset":             "earliest",
		"partition.assignment.strategy": "cooperative-sticky",
		"enable.auto.commit":            true,
		"enable.auto.offset.store":      false,
		"auto.commit.interval.ms":       1000,
		"enable.partition.eof":          false,
		"go.logs.channel.enable":        true,
	}
	for k, v := range props {
		cm[k] = v
	}
	return cm
}

// parseProps parses "k=v,k=v".
func parseProps(s string) (map[string]string, error) {
	props := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		props[k] = v
	}
	return props, nil
}

// directConsumeBatch bounds the records polled before processing and
// storing their offsets, as the gateway's poll loop does.
const directConsumeBatch = 512

// directConsumeRun reads the whole topic with a fresh group: Poll(100)
// then Poll(0) up to directConsumeBatch records, touch every value, then
// StoreOffsets the next offset of each partition of the batch.
func (b *bench) directConsumeRun(ctx context.Context, t *filledTopic, group string) (consumeResult, error) {
	cm := directConsumerConfig(b.opts.bootstrap, group, b.opts.consumeProps)
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return consumeResult{}, err
	}
	logsDone := make(chan struct{})
	go func() { drainLogs(c.Logs()); close(logsDone) }()
	closed := false
	closeConsumer := func() error {
		if closed {
			return nil
		}
		closed = true
		err := c.Close() // commits the stored offsets
		<-logsDone
		return err
	}
	defer closeConsumer()
	if err := c.Subscribe(t.name, nil); err != nil {
		return consumeResult{}, err
	}

	var mark cpuMark
	cov := newCoverage(t, func() { mark = b.markCPU(nil) })
	res := consumeResult{records: t.total}
	deadline := time.Now().Add(b.opts.consumeTimeout)
	msgs := make([]*kafka.Message, 0, directConsumeBatch)
	next := make([]kafka.Offset, len(t.high))
	var tps []kafka.TopicPartition
	var fatal error
	done := false
	for !done {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if cov.stalled(consumeStall) || time.Now().After(deadline) {
			break
		}
		msgs = msgs[:0]
		for ev := c.Poll(100); ev != nil; ev = c.Poll(0) {
			switch e := ev.(type) {
			case *kafka.Message:
				if e.TopicPartition.Error != nil {
					res.failed++
					res.firstErr = firstNonEmpty(res.firstErr, e.TopicPartition.Error.Error())
					continue
				}
				msgs = append(msgs, e)
			case kafka.Error:
				if e.IsFatal() {
					fatal = e
				}
				res.firstErr = firstNonEmpty(res.firstErr, e.Error())
			}
			if len(msgs) >= directConsumeBatch || fatal != nil {
				break
			}
		}
		if fatal != nil {
			return res, fmt.Errorf("consumer: %w", fatal)
		}
		if len(msgs) == 0 {
			continue
		}
		// Process, then store: commit after processing.
		for _, m := range msgs {
			res.sink += touch(m.Value)
		}
		done = cov.add(len(msgs), func(i int) (int32, int64) {
			tp := msgs[i].TopicPartition
			return tp.Partition, int64(tp.Offset)
		})
		clear(next)
		for _, m := range msgs {
			if p := m.TopicPartition.Partition; int(p) < len(next) {
				next[p] = max(next[p], m.TopicPartition.Offset+1)
			}
		}
		tps = tps[:0]
		for p, off := range next {
			if off > 0 {
				tps = append(tps, kafka.TopicPartition{Topic: &t.name, Partition: int32(p), Offset: off})
			}
		}
		if _, err := c.StoreOffsets(tps); err != nil {
			res.firstErr = firstNonEmpty(res.firstErr, "store offsets: "+err.Error())
		}
		res.frames++
		res.ackCalls++
	}
	end := time.Now()
	res.cpu = mark.since()
	cov.mu.Lock()
	res.elapsed = end.Sub(cov.first)
	res.unique, res.dups, res.outside = cov.unique, cov.dups, cov.outside
	cov.mu.Unlock()
	if res.unique < res.records {
		res.missing = cov.missingText()
	}
	if err := closeConsumer(); err != nil {
		return res, fmt.Errorf("close consumer: %w", err)
	}
	return res, nil
}

// ---------------------------------------------------------------- gateway

// consumeClientConfig is how the bench client consumes through the gateway.
type consumeClientConfig struct {
	ordering    gatewayv1.Ordering
	streams     int
	maxInFlight int
	ackMode     string // "frame": one Ack per Deliveries frame, inline; "batch": an acker goroutine per stream; "stream": Consume streams
}

func (c consumeClientConfig) String() string {
	ack := "one Ack per Deliveries frame, inline"
	switch c.ackMode {
	case "batch":
		ack = "acks batched by an acker goroutine per stream"
	case "stream":
		ack = "Consume streams, acks settled in band with credit granted back"
	}
	return fmt.Sprintf("%d stream(s) × max_in_flight %d, %s", c.streams, c.maxInFlight, ack)
}

// ackBatchMax bounds the IDs of one Ack call in "batch" mode.
const ackBatchMax = 8192

// gatewayConsumeRun reads the whole topic through the gateway with a fresh
// group: cfg.streams Subscribe streams, each touching every value of every
// Deliveries frame and acknowledging its records.
func (b *bench) gatewayConsumeRun(ctx context.Context, gw *gatewayProc, t *filledTopic, group string, cfg consumeClientConfig) (consumeResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mark cpuMark
	cov := newCoverage(t, func() { mark = b.markCPU(gw) })

	var (
		pending  atomic.Int64 // IDs received and not yet acknowledged
		frames   atomic.Int64
		ackCalls atomic.Int64
		revoked  atomic.Int64
		sink     atomic.Uint64
		failures tally
		finished = make(chan struct{})
		finish   sync.Once
		end      time.Time
	)
	// The run ends once every offset is seen and every ID is acknowledged.
	maybeFinish := func() {
		if pending.Load() == 0 && cov.complete() {
			finish.Do(func() { end = time.Now(); close(finished) })
		}
	}
	ack := func(ids []string) {
		_, err := gw.consumer.Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: ids})
		ackCalls.Add(1)
		if err != nil && ctx.Err() == nil {
			failures.fail(int64(len(ids)), "ack: "+status.Convert(err).String())
		}
		pending.Add(-int64(len(ids)))
		maybeFinish()
	}

	var ackTimeout *durationpb.Duration
	if b.opts.consumeAckTimeout > 0 {
		ackTimeout = durationpb.New(b.opts.consumeAckTimeout)
	}
	sub := &gatewayv1.SubscribeRequest{
		Group:         group,
		Topics:        []string{t.name},
		Ordering:      cfg.ordering,
		MaxInFlight:   int32(cfg.maxInFlight),
		StartPosition: gatewayv1.StartPosition_START_POSITION_EARLIEST,
		AckTimeout:    ackTimeout,
	}
	// consumeStream is one Consume stream: the receiving loop touches each
	// frame and hands its tokens and sizes to a settler goroutine, which
	// acks everything received while its previous settle was being sent,
	// granting the same credit back; settled frames count the acks.
	consumeStream := func() error {
		stream, err := gw.consumer.Consume(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
			Subscription: sub, Credit: &gatewayv1.Credit{Records: int64(cfg.maxInFlight), Bytes: 1 << 40},
		}}}); err != nil {
			return err
		}
		type batch struct{ tokens []uint64 }
		toSettle := make(chan batch, 1024)
		settlerDone := make(chan struct{})
		go func() {
			defer close(settlerDone)
			var seq uint64
			var acks []uint64
			for b := range toSettle {
				acks = append(acks[:0], b.tokens...)
			more:
				for len(acks) < ackBatchMax {
					select {
					case b, ok := <-toSettle:
						if !ok {
							break more
						}
						acks = append(acks, b.tokens...)
					default:
						break more
					}
				}
				seq++
				ackCalls.Add(1)
				if err := stream.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Settle{Settle: &gatewayv1.Settle{
					Sequence: seq, Acks: acks, Credit: &gatewayv1.Credit{Records: int64(len(acks))},
				}}}); err != nil {
					return
				}
			}
		}()
		defer func() { close(toSettle); <-settlerDone }()
		var local uint64
		defer func() { sink.Add(local) }()
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() != nil {
					return nil // the run is over
				}
				return fmt.Errorf("consume stream: %w", err)
			}
			switch f := resp.GetFrame().(type) {
			case *gatewayv1.ConsumeResponse_Assignment:
				revoked.Add(int64(len(f.Assignment.GetRevoked())))
			case *gatewayv1.ConsumeResponse_Settled:
				applied := int64(0)
				for _, o := range f.Settled.GetAcks() {
					if o == gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED {
						applied++
					}
				}
				if n := int64(len(f.Settled.GetAcks())) - applied; n > 0 && ctx.Err() == nil {
					failures.fail(n, "settle: acks not applied")
				}
				pending.Add(-int64(len(f.Settled.GetAcks())))
				maybeFinish()
			case *gatewayv1.ConsumeResponse_Deliveries:
				ds := f.Deliveries.GetDeliveries()
				if len(ds) == 0 {
					continue
				}
				frames.Add(1)
				tokens := make([]uint64, len(ds))
				for i, d := range ds {
					local += touch(d.GetValue())
					tokens[i] = d.GetToken()
				}
				pending.Add(int64(len(ds)))
				cov.add(len(ds), func(i int) (int32, int64) { return ds[i].GetPartition(), ds[i].GetOffset() })
				toSettle <- batch{tokens}
			}
		}
	}
	oneStream := func() error {
		if cfg.ackMode == "stream" {
			return consumeStream()
		}
		stream, err := gw.consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{
			Group:         group,
			Topics:        []string{t.name},
			Ordering:      cfg.ordering,
			MaxInFlight:   int32(cfg.maxInFlight),
			StartPosition: gatewayv1.StartPosition_START_POSITION_EARLIEST,
			AckTimeout:    ackTimeout,
		})
		if err != nil {
			return err
		}
		var acks chan []string
		var ackerDone chan struct{}
		if cfg.ackMode == "batch" {
			acks, ackerDone = make(chan []string, 1024), make(chan struct{})
			go func() {
				defer close(ackerDone)
				var batch []string
				for ids := range acks {
					batch = append(batch[:0], ids...)
				more:
					for len(batch) < ackBatchMax {
						select {
						case ids, ok := <-acks:
							if !ok {
								break more
							}
							batch = append(batch, ids...)
						default:
							break more
						}
					}
					ack(batch)
				}
			}()
			defer func() { close(acks); <-ackerDone }()
		}
		var local uint64
		defer func() { sink.Add(local) }()
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() != nil {
					return nil // the run is over
				}
				return fmt.Errorf("subscribe stream: %w", err)
			}
			if a := resp.GetAssignment(); a != nil {
				revoked.Add(int64(len(a.GetRevoked())))
				continue
			}
			ds := resp.GetDeliveries().GetDeliveries()
			if len(ds) == 0 {
				continue
			}
			frames.Add(1)
			ids := make([]string, len(ds))
			for i, d := range ds {
				local += touch(d.GetValue())
				ids[i] = d.GetAckId()
			}
			pending.Add(int64(len(ids)))
			cov.add(len(ds), func(i int) (int32, int64) { return ds[i].GetPartition(), ds[i].GetOffset() })
			if acks != nil {
				acks <- ids
			} else {
				ack(ids)
			}
		}
	}

	errs := make(chan error, cfg.streams)
	for range cfg.streams {
		go func() { errs <- oneStream() }()
	}
	var runErr error
	running := cfg.streams
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timeout := time.After(b.opts.consumeTimeout)
wait:
	for {
		select {
		case <-finished:
			break wait
		case err := <-errs:
			running--
			if err != nil {
				runErr = err
				break wait
			}
			if running == 0 {
				break wait
			}
		case <-tick.C:
			if cov.stalled(consumeStall) {
				break wait
			}
		case <-timeout:
			break wait
		case <-ctx.Done():
			runErr = ctx.Err()
			break wait
		}
	}
	res := consumeResult{records: t.total}
	cov.mu.Lock()
	res.cpu = mark.since()
	cov.mu.Unlock()
	cancel()
	for range running {
		if err := <-errs; err != nil && runErr == nil {
			runErr = err
		}
	}
	cov.mu.Lock()
	if end.IsZero() {
		end = time.Now()
	}
	res.elapsed = end.Sub(cov.first)
	res.unique, res.dups, res.outside = cov.unique, cov.dups, cov.outside
	cov.mu.Unlock()
	if res.unique < res.records {
		res.missing = cov.missingText()
	}
	res.frames, res.ackCalls, res.sink = frames.Load(), ackCalls.Load(), sink.Load()
	res.failed, res.firstErr = failures.failed.Load(), failures.firstErr
	if n := revoked.Load(); n > 0 {
		res.firstErr = firstNonEmpty(res.firstErr, fmt.Sprintf("%d partitions revoked during the run", n))
	}
	if status.Code(runErr) == codes.Canceled && ctx.Err() != nil {
		runErr = nil
	}
	return res, runErr
}

// ---------------------------------------------------------------- checks

// waitCommitted waits until group has committed the high watermark of
// every partition (everything was processed, so everything must commit),
// for up to timeout.
func (b *bench) waitCommitted(ctx context.Context, t *filledTopic, group string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		tps := make([]kafka.TopicPartition, len(t.high))
		for p := range tps {
			tps[p] = kafka.TopicPartition{Topic: &t.name, Partition: int32(p)}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := b.admin.ListConsumerGroupOffsets(cctx, []kafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}})
		cancel()
		if err == nil && len(res.ConsumerGroupsTopicPartitions) == 1 {
			var behind []string
			for _, tp := range res.ConsumerGroupsTopicPartitions[0].Partitions {
				if tp.Error != nil || int64(tp.Offset) != t.high[tp.Partition] {
					behind = append(behind, fmt.Sprintf("[%d] at %v of %d", tp.Partition, tp.Offset, t.high[tp.Partition]))
				}
			}
			if len(behind) == 0 {
				return nil
			}
			last = strings.Join(behind, ", ")
		} else if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("group %s did not commit the whole topic within %s: %s", group, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// deleteGroups deletes the consumer groups of the run (best effort: a
// group still in use stays).
func (b *bench) deleteGroups() {
	if len(b.groups) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.admin.DeleteConsumerGroups(ctx, b.groups); err != nil {
		fmt.Fprintf(os.Stderr, "gatewaybench: delete consumer groups: %v\n", err)
	}
}

// ---------------------------------------------------------------- scenarios

// directConsume is the consume baseline: a plain librdkafka consumer that
// stores offsets after processing each polled batch.
func (b *bench) directConsume(ctx context.Context) ([]Row, error) {
	t, err := b.consumeTopic(ctx)
	if err != nil {
		return nil, err
	}
	row, err := b.consumeRuns(ctx, "direct-consume", t, nil, func(run int) (consumeResult, string, error) {
		group := b.newGroupName("direct-consume", run)
		res, err := b.directConsumeRun(ctx, t, group)
		return res, group, err
	}, nil)
	if row.Value > 0 {
		b.directConsumeRate = row.Value
	}
	row.Note = fmt.Sprintf("Poll + StoreOffsets per batch of ≤ %d, auto-commit 1 s; %s, baseline", directConsumeBatch, row.Note)
	return []Row{row}, err
}

// gatewayConsume reads the topic through the gateway's Subscribe with
// ordering, acknowledging every record, on a gateway of its own with
// maxBuffered records per partition.
func (b *bench) gatewayConsume(ctx context.Context, name string, ordering gatewayv1.Ordering, streams, maxBuffered int, target float64) ([]Row, error) {
	t, err := b.consumeTopic(ctx)
	if err != nil {
		return nil, err
	}
	gw, err := b.gatewayWith(ctx, b.consumeGatewaySpec(strings.TrimPrefix(name, "gateway-"), maxBuffered))
	if err != nil {
		return nil, err
	}
	cfg := consumeClientConfig{ordering: ordering, streams: streams, maxInFlight: b.opts.consumeInFlight, ackMode: b.opts.consumeAck}
	// With KEY ordering, the gateway's in-flight count over the runs says
	// whether the keys or the round trip bound the rate. Once a second: a
	// scrape of the gateway's metrics costs it a few milliseconds of CPU
	// (ten a second took 16% of its profile).
	sctx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var inFlight *inFlightSampler
	if ordering == gatewayv1.Ordering_ORDERING_KEY {
		inFlight = sampleInFlight(sctx, gw.pprof, time.Second)
	}
	row, err := b.consumeRuns(ctx, name, t, gw, func(run int) (consumeResult, string, error) {
		group := b.newGroupName(name, run)
		res, err := b.gatewayConsumeRun(ctx, gw, t, group, cfg)
		return res, group, err
	}, nil)
	stopSampling()
	if inFlight != nil {
		if s := inFlight.summary(row.Value, target*b.directConsumeRate, numKeys); s != "" {
			row.Note += "; " + s
		}
	}
	if name == "gateway-consume-none" && row.Value > 0 {
		b.consumeNoneRate = row.Value
	}
	hwm, hwmErr := procStatusKB(gw.pid(), "VmHWM")
	row.Note = fmt.Sprintf("%s, %s; gateway max_buffered_records=%d; %s; gateway VmHWM %.0f MiB",
		ordering, cfg, maxBuffered, row.Note, float64(hwm)/1024)
	rows := []Row{row}
	if name == "gateway-consume-none" && hwmErr == nil {
		mib := float64(hwm) / 1024
		rows = append(rows, Row{
			Figure: "RSS peak (VmHWM)", Value: mib, Unit: "MiB",
			Target: atMost(mib, consumeRSSTarget, "MiB"),
			Note:   fmt.Sprintf("the gateway of the runs above, after them; now %s", rssSplit(gw.pid())),
		})
	}
	if b.directConsumeRate > 0 && row.Value > 0 {
		row.Ratio = row.Value / b.directConsumeRate
		if target > 0 {
			row.Target = atLeastRatio(row.Ratio, target)
			row.Target.Text = fmt.Sprintf("≥ %.2f× direct-consume", target)
		}
	}
	rows[0] = row
	return rows, err
}

// consumeRuns runs a consume scenario opts.consumeRepeats times, checks
// each run (every offset seen, nothing failed, the group committed the
// whole topic, then verify when not nil), and returns the row of the median
// run. A run with missing or failed records counts its records as Failures.
//
// The last run is profiled, for as long as the runs before it took: the
// gateway gw (nil for the direct consumer) and this process, which is the
// direct consumer or the bench client.
func (b *bench) consumeRuns(ctx context.Context, name string, t *filledTopic, gw *gatewayProc, run func(i int) (consumeResult, string, error), verify func(group string) error) (Row, error) {
	var clean []consumeResult
	var problems []string
	var bad int64 // records missing or failed, over all runs
	var profiles []profileSummary
	var took []time.Duration
	failedAs := "missing"
	for i := range b.opts.consumeRepeats {
		var prof *profiling
		if i == b.opts.consumeRepeats-1 && len(took) > 0 {
			slices.Sort(took)
			seconds := profileSeconds(took[len(took)/2])
			if gw == nil {
				prof = b.startProfiling(name, "direct consumer", seconds)
			} else {
				prof = b.startProfiling(name, "bench client", seconds,
					profileTarget{process: "gateway", own: "gateway code", addr: gw.pprof, pid: gw.pid()})
			}
		}
		res, group, err := run(i)
		if prof != nil {
			profiles = prof.finish()
		}
		took = append(took, res.elapsed)
		if err != nil {
			return Row{}, fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Fprintf(os.Stderr, "   run %d: %s records/s, %s records in %s, %d duplicates, %d frames, %d acks/stores; cpu %s\n",
			i+1, thousands(int64(float64(res.unique)/res.elapsed.Seconds())), thousands(res.unique), res.elapsed.Round(time.Millisecond),
			res.dups, res.frames, res.ackCalls, res.cpu)
		switch {
		case res.unique < res.records:
			bad += res.records - res.unique
			problems = append(problems, fmt.Sprintf("run %d: %d of %d records missing (%s)", i+1, res.records-res.unique, res.records, res.missing))
			continue
		case res.failed > 0 || res.outside > 0:
			bad += res.failed + res.outside
			failedAs = "missing or failed"
			problems = append(problems, fmt.Sprintf("run %d: %d records failed, %d outside the topic's offsets; first: %s", i+1, res.failed, res.outside, res.firstErr))
			continue
		case res.firstErr != "":
			problems = append(problems, fmt.Sprintf("run %d: %s", i+1, res.firstErr))
		}
		if err := b.waitCommitted(ctx, t, group, 20*time.Second); err != nil {
			problems = append(problems, fmt.Sprintf("run %d: %v", i+1, err))
			continue
		}
		if verify != nil {
			if err := verify(group); err != nil {
				problems = append(problems, fmt.Sprintf("run %d: %v", i+1, err))
				continue
			}
		}
		clean = append(clean, res)
	}
	if len(clean) == 0 {
		return Row{Figure: "throughput", Unit: "records/s", Failures: max(bad, 1), FailedAs: failedAs, Note: strings.Join(problems, "; ")},
			fmt.Errorf("no clean run: %s", strings.Join(problems, "; "))
	}
	slices.SortFunc(clean, func(a, b consumeResult) int {
		return cmp.Compare(a.measurement().rate(), b.measurement().rate())
	})
	runs := make([]measurement, len(clean))
	for i, r := range clean {
		runs[i] = r.measurement()
	}
	m, spread := median(runs) // runs are sorted already: the same index
	res := clean[len(clean)/2]
	var dups int64
	for _, r := range clean {
		dups += r.dups
	}
	per := "Deliveries frame"
	if name == "direct-consume" {
		per = "poll batch"
	}
	row := Row{
		Figure: "throughput", Value: m.rate(), Unit: "records/s",
		Detail:   mbps(int(m.records), m.elapsed),
		Failures: bad,
		FailedAs: failedAs,
		CPU:      m.cpu,
		Profiles: profiles,
		Note: fmt.Sprintf("%s records, first record to last processed, %s (clean runs); %d of %d runs clean (every offset seen, "+
			"the group committed the whole topic), %d duplicates in them; %.0f records per %s",
			thousands(m.records), spread, len(clean), b.opts.consumeRepeats, dups, float64(res.unique+res.dups)/float64(max(res.frames, 1)), per),
	}
	if len(problems) > 0 {
		row.Note += "; " + strings.Join(problems, "; ")
	}
	if bad > 0 {
		return row, errFailures
	}
	if len(problems) > 0 {
		return row, errors.New(strings.Join(problems, "; "))
	}
	return row, nil
}
