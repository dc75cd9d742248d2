// Package canary runs a gateway's end-to-end canary: every interval it
// writes a sequence-numbered record to the canary topic through the
// gateway's own producer, and reads it back through a consumer group of its
// own on the gateway's own consume path (subscribe, deliver, ack, commit;
// dedupe too when enabled). What an app would see, the canary sees first:
// end-to-end latency, lost records (gaps in the sequence) and duplicates.
package canary

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// Config is the canary.
type Config struct {
	// Enabled runs the canary.
	Enabled bool `yaml:"enabled"`
	// Topic receives the canary records of every gateway that uses it; each
	// gateway reads them all and keeps its own. Every gateway reads every
	// gateway's records, so share a topic among tens of gateways, not
	// thousands (one topic per service, for example).
	Topic string `yaml:"topic"`
	// Interval is the time between two canary records.
	Interval time.Duration `yaml:"interval"`
	// Group is the canary's consumer group; empty: "gateway-canary-" and
	// the consumer instance ID (or the host name). Each gateway needs a
	// group of its own, or it would read only part of its records back.
	Group string `yaml:"group"`
	// CreateTopic creates a missing canary topic (one partition).
	CreateTopic bool `yaml:"create_topic"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Topic: "gateway-canary", Interval: 10 * time.Second, CreateTopic: true}
}

// Validate checks c; messages name the key at fault.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if why := produce.ValidTopicName(c.Topic); why != "" {
		return fmt.Errorf("canary.topic: %s", why)
	}
	if c.Interval < 100*time.Millisecond {
		return errors.New("canary.interval: must be at least 100ms")
	}
	return nil
}

// GroupName is the canary group for instanceID (the consumer's static
// membership ID, or "").
func (c Config) GroupName(instanceID string) string {
	if c.Group != "" {
		return c.Group
	}
	if instanceID == "" {
		instanceID, _ = os.Hostname()
	}
	return "gateway-canary-" + instanceID
}

// Observer takes the canary's measurements (metrics.Canary); nil takes
// none.
type Observer interface {
	Sent()
	SendFailed()
	// Received counts a record received at at; latency is negative when
	// the record's send time is unknown.
	Received(latency time.Duration, at time.Time)
	Lost(n int)
	Duplicate()
}

type nopObserver struct{}

func (nopObserver) Sent()                             {}
func (nopObserver) SendFailed()                       {}
func (nopObserver) Received(time.Duration, time.Time) {}
func (nopObserver) Lost(int)                          {}
func (nopObserver) Duplicate()                        {}

// Producer writes canary records (produce.Producer).
type Producer interface {
	Produce(ctx context.Context, topic string, records []produce.Record) ([]produce.Result, error)
}

// Consumer reads them back (consume.Manager).
type Consumer interface {
	Subscribe(ctx context.Context, req consume.SubscribeRequest) (*consume.Stream, error)
	Ack(ctx context.Context, group string, ackIDs []string) error
}

// Canary is one gateway's canary. Create it with New and run it with Run.
type Canary struct {
	cfg      Config
	group    string
	source   string // this process's records carry it as their key
	kafka    kafkaclient.Config
	producer Producer
	consumer Consumer
	obs      Observer
	logger   *slog.Logger
	now      func() time.Time
	track    *tracker
}

// New creates the canary. group is its consumer group (Config.GroupName);
// kc is used to create a missing canary topic.
func New(cfg Config, group string, kc kafkaclient.Config, p Producer, c Consumer, obs Observer, logger *slog.Logger) *Canary {
	if obs == nil {
		obs = nopObserver{}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	return &Canary{
		cfg:      cfg,
		group:    group,
		source:   host + "-" + hex.EncodeToString(b[:]),
		kafka:    kc,
		producer: p,
		consumer: c,
		obs:      obs,
		logger:   logger,
		now:      time.Now,
		track:    newTracker(),
	}
}

// Run subscribes the canary group and writes a record every interval
// until ctx ends.
func (c *Canary) Run(ctx context.Context) error {
	c.logger.Info("canary started", "topic", c.cfg.Topic, "group", c.group, "interval", c.cfg.Interval, "source", c.source)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.receive(ctx)
	}()
	c.send(ctx)
	<-done
	return nil
}

// send writes one record per interval, one at a time, so that records are
// written in sequence order.
func (c *Canary) send(ctx context.Context) {
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	var seq uint64
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		seq++
		sent := c.now()
		c.track.sending(seq, sent)
		rec := produce.Record{
			Key:       []byte(c.source),
			Value:     []byte(strconv.FormatUint(seq, 10) + " " + strconv.FormatInt(sent.UnixNano(), 10)),
			Partition: produce.AnyPartition,
		}
		pctx, cancel := context.WithTimeout(ctx, max(c.cfg.Interval, 30*time.Second))
		results, err := c.producer.Produce(pctx, c.cfg.Topic, []produce.Record{rec})
		cancel()
		if err == nil {
			err = results[0].Err
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.track.failed(seq)
			c.obs.SendFailed()
			if !failing {
				c.logger.Warn("canary write failing", "topic", c.cfg.Topic, "err", err)
			}
			failing = true
			continue
		}
		c.obs.Sent()
		if failing {
			c.logger.Info("canary writes again", "topic", c.cfg.Topic)
		}
		failing = false
	}
}

// receive keeps a stream of the canary group open and accounts for every
// record of this source; it acks every record, others' too.
func (c *Canary) receive(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		st, err := c.subscribe(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Warn("canary subscribe failed; retrying", "group", c.group, "err", err, "in", backoff)
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		c.read(ctx, st)
		st.Close()
	}
}

func (c *Canary) subscribe(ctx context.Context) (*consume.Stream, error) {
	req := consume.SubscribeRequest{
		Group:         c.group,
		Topics:        []string{c.cfg.Topic},
		Ordering:      consume.OrderingPartition,
		StartPosition: consume.StartLatest,
	}
	st, err := c.consumer.Subscribe(ctx, req)
	if errors.Is(err, kafkaclient.ErrUnknownTopic) && c.cfg.CreateTopic {
		if err := c.createTopic(ctx); err != nil {
			return nil, err
		}
		st, err = c.consumer.Subscribe(ctx, req)
	}
	return st, err
}

func (c *Canary) createTopic(ctx context.Context) error {
	cm := c.kafka.ConfigMap(nil, nil)
	cm["log_level"] = 0 // see consume.New: it would print to stderr
	admin, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return fmt.Errorf("create canary topic: %w", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: c.cfg.Topic, NumPartitions: 1, ReplicationFactor: -1}})
	if err != nil {
		return fmt.Errorf("create canary topic %q: %w", c.cfg.Topic, err)
	}
	if code := res[0].Error.Code(); code != kafka.ErrNoError && code != kafka.ErrTopicAlreadyExists {
		return fmt.Errorf("create canary topic %q: %w", c.cfg.Topic, res[0].Error)
	}
	c.logger.Info("created canary topic", "topic", c.cfg.Topic)
	// Subscribe checks the topic through metadata: give it a moment.
	time.Sleep(time.Second)
	return nil
}

// read handles frames until the stream or ctx ends.
func (c *Canary) read(ctx context.Context, st *consume.Stream) {
	for {
		f, err := st.Next(ctx)
		if err != nil {
			return
		}
		if len(f.Deliveries) == 0 {
			continue
		}
		ids := make([]string, len(f.Deliveries))
		for i, d := range f.Deliveries {
			ids[i] = d.AckID
			if string(d.Key) == c.source {
				c.account(d)
			}
		}
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		if err := c.consumer.Ack(actx, c.group, ids); err != nil && ctx.Err() == nil {
			c.logger.Debug("canary ack", "err", err) // redelivered, and counted as a duplicate
		}
		cancel()
	}
}

func (c *Canary) account(d consume.Delivery) {
	seqText, _, ok := strings.Cut(string(d.Value), " ")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if !ok || err != nil {
		return
	}
	now := c.now()
	r := c.track.receive(seq, now)
	switch {
	case r.duplicate:
		c.obs.Duplicate()
		c.logger.Warn("canary record received again", "seq", seq, "attempt", d.Attempt, "partition", d.Partition, "offset", d.Offset)
		return
	case r.lost > 0:
		c.obs.Lost(r.lost)
		c.logger.Warn("canary records lost: written, never received", "records", r.lost, "before_seq", seq)
	}
	if !r.timed {
		r.latency = -1
	}
	c.obs.Received(r.latency, now)
}
