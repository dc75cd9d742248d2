package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// producerConfig is the configuration the gateway gives its producer with
// default settings and the given preset: the same durable defaults, queue
// bound, preset and Go client settings.
func producerConfig(bootstrap, preset string) kafka.ConfigMap {
	cfg := produce.DefaultConfig()
	cfg.Preset = preset
	return cfg.ConfigMap(kafkaclient.Config{BootstrapServers: bootstrap, ClientID: "gatewaybench-direct"})
}

// directProducer is confluent-kafka-go used directly, as an application
// would without the gateway: Produce, and delivery reports from the events
// channel, read by one goroutine that counts them.
type directProducer struct {
	p *kafka.Producer

	mu       sync.Mutex
	reported int64 // delivery reports received, success or not
	failed   int64
	firstErr error
	target   int64         // when reported reaches target, close reached
	reached  chan struct{} // nil when nobody waits

	done chan struct{} // closed when the events channel is closed
}

func newDirectProducer(bootstrap, preset string) (*directProducer, error) {
	cm := producerConfig(bootstrap, preset)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, err
	}
	d := &directProducer{p: p, done: make(chan struct{})}
	go drainLogs(p.Logs())
	go d.handleEvents()
	return d, nil
}

func (d *directProducer) handleEvents() {
	defer close(d.done)
	for ev := range d.p.Events() {
		m, ok := ev.(*kafka.Message)
		if !ok {
			continue // errors surface as failed delivery reports
		}
		d.mu.Lock()
		d.reported++
		if err := m.TopicPartition.Error; err != nil {
			d.failed++
			if d.firstErr == nil {
				d.firstErr = err
			}
		}
		if d.reached != nil && d.reported >= d.target {
			close(d.reached)
			d.reached = nil
		}
		d.mu.Unlock()
	}
}

// counts returns the delivery reports received and the failed ones so far.
func (d *directProducer) counts() (reported, failed int64, firstErr error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reported, d.failed, d.firstErr
}

// expect arranges for the returned channel to be closed once n reports in
// total have been received. One waiter at a time.
func (d *directProducer) expect(n int64) <-chan struct{} {
	ch := make(chan struct{})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reported >= n {
		close(ch)
		return ch
	}
	d.target, d.reached = n, ch
	return ch
}

// produce enqueues one record, waiting while the local queue is full, as
// the gateway does.
func (d *directProducer) produce(msg *kafka.Message) error {
	backoff := 50 * time.Microsecond
	for {
		err := d.p.Produce(msg, nil)
		if err == nil {
			return nil
		}
		var kerr kafka.Error
		if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			return err
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Millisecond)
	}
}

// waitReports waits for n reports in total, or fails after timeout.
func (d *directProducer) waitReports(n int64, timeout time.Duration) error {
	select {
	case <-d.expect(n):
		return nil
	case <-time.After(timeout):
		got, _, _ := d.counts()
		return fmt.Errorf("only %d of %d delivery reports after %s", got, n, timeout)
	}
}

func (d *directProducer) close() {
	d.p.Flush(10_000)
	d.p.Close()
	<-d.done
}

// payload holds the keys and values every scenario writes: numKeys distinct
// keys "key-%d" and as many 100-byte values of random letters and digits
// (about 6 bits of entropy per byte, so lz4 gains little, on both sides).
type payload struct {
	keys   [][]byte
	values [][]byte
}

const (
	numKeys    = 1000
	valueBytes = 100
)

func newPayload() *payload {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	rng := rand.New(rand.NewPCG(1, 2))
	p := &payload{keys: make([][]byte, numKeys), values: make([][]byte, numKeys)}
	for i := range numKeys {
		p.keys[i] = fmt.Appendf(nil, "key-%d", i)
		v := make([]byte, valueBytes)
		for j := range v {
			v[j] = alphabet[rng.IntN(len(alphabet))]
		}
		p.values[i] = v
	}
	return p
}

// recordBytes is the payload size of record i (key + value), for MB/s.
func (p *payload) recordBytes(i int) int {
	return len(p.keys[i%numKeys]) + len(p.values[i%numKeys])
}
