package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/produce"
)

// Headers the replay adds to each record it writes back.
const (
	// HeaderReplaySource is "<dead-letter topic>/<partition>/<offset>".
	HeaderReplaySource = "replay-source"
	// HeaderReplayOriginalID is the message ID the record had before.
	HeaderReplayOriginalID = "replay-original-message-id"
)

// AllPartitions selects every partition of the dead-letter topic.
const AllPartitions = -1

// ReplayRequest selects dead letters to write back. Field names in errors
// are those of gateway.v1.ReplayDeadLettersRequest.
type ReplayRequest struct {
	DeadLetterTopic string
	Partition       int32 // or AllPartitions
	StartOffset     int64
	EndOffset       int64 // exclusive; -1: the log end when the replay starts
	Group           string
	TargetTopic     string
	DryRun          bool
	// Requester names the caller in the log.
	Requester string
	// MayWrite, when set, authorizes each target topic before anything is
	// written to it (also in a dry run); its error ends the replay.
	MayWrite func(topic string) error
}

// ReplayProgress counts a replay's records.
type ReplayProgress struct {
	Total, Scanned, Replayed, Skipped int64
}

const (
	// replayBatch bounds the records written per Produce call (and so
	// does the producer's max_records_per_request).
	replayBatch = 500
	// replayStall ends a replay that reads nothing for this long.
	replayStall = 30 * time.Second
)

// ReplayDeadLetters writes dead letters back to their source topics (see
// gateway.v1 AdminService.ReplayDeadLetters). progress is called with the
// counts so far after each batch; an error from it ends the replay. It
// returns the final counts, also when it fails midway.
func (s *Service) ReplayDeadLetters(ctx context.Context, req ReplayRequest, progress func(ReplayProgress) error) (ReplayProgress, error) {
	var prog ReplayProgress
	if err := req.validate(); err != nil {
		return prog, err
	}
	descs, err := s.describeTopics(ctx, "dead_letter_topic", []string{req.DeadLetterTopic})
	if err != nil {
		return prog, err
	}
	if req.TargetTopic != "" {
		if _, err := s.describeTopics(ctx, "target_topic", []string{req.TargetTopic}); err != nil {
			return prog, err
		}
	}
	var tps []tp
	for _, p := range descs[0].Partitions {
		if req.Partition == AllPartitions || int32(p.Partition) == req.Partition {
			tps = append(tps, tp{req.DeadLetterTopic, int32(p.Partition)})
		}
	}
	if len(tps) == 0 {
		n := len(descs[0].Partitions)
		return prog, invalid.Field("partition", "topic %q has %d partitions (0..%d)", req.DeadLetterTopic, n, n-1)
	}
	low, high, err := s.watermarks(ctx, tps)
	if err != nil {
		return prog, err
	}
	ends := map[int32]int64{}
	var assign []kafka.TopicPartition
	for _, t := range tps {
		start, end := max(req.StartOffset, low[t]), high[t]
		if req.EndOffset >= 0 {
			end = min(end, req.EndOffset)
		}
		if end > start {
			ends[t.partition] = end
			prog.Total += end - start
			k := t.kafka()
			k.Offset = kafka.Offset(start)
			assign = append(assign, k)
		}
	}
	if err := progress(prog); err != nil {
		return prog, err
	}
	if len(assign) > 0 {
		err = s.replay(ctx, req, assign, ends, &prog, progress)
	}
	s.logger.Warn("dead letters replayed", "topic", req.DeadLetterTopic, "by", req.Requester, "dry_run", req.DryRun,
		"replayed", prog.Replayed, "skipped", prog.Skipped, "scanned", prog.Scanned, "err", err)
	return prog, err
}

func (r ReplayRequest) validate() error {
	var errs invalid.Error
	if why := produce.ValidTopicName(r.DeadLetterTopic); why != "" {
		errs.Add("dead_letter_topic", "%s", why)
	}
	if r.TargetTopic != "" {
		if why := produce.ValidTopicName(r.TargetTopic); why != "" {
			errs.Add("target_topic", "%s", why)
		}
	}
	if r.Partition < 0 && r.Partition != AllPartitions {
		errs.Add("partition", "must not be negative")
	}
	if r.StartOffset < 0 {
		errs.Add("start_offset", "must not be negative")
	}
	if r.EndOffset >= 0 && r.EndOffset < r.StartOffset {
		errs.Add("end_offset", "%d is below start_offset %d", r.EndOffset, r.StartOffset)
	}
	return errs.Err()
}

// replay reads the assigned ranges with a consumer outside any group and
// writes the selected records back in batches.
func (s *Service) replay(ctx context.Context, req ReplayRequest, assign []kafka.TopicPartition, ends map[int32]int64, prog *ReplayProgress, progress func(ReplayProgress) error) error {
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	cm := s.kafka.ConfigMap(map[string]string{
		"auto.offset.reset": "earliest",
	}, map[string]string{
		// Assigned, never subscribed: the group is never joined or committed.
		"group.id":             "gateway-replay-" + hex.EncodeToString(suffix[:]),
		"enable.auto.commit":   "false",
		"enable.partition.eof": "true",
	})
	cm["go.logs.channel.enable"] = true // into the gateway's logs, not stderr
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return fmt.Errorf("create dead-letter reader: %w", err)
	}
	defer c.Close()
	go kafkaclient.RouteLogs(s.logger.With("component", "librdkafka", "replay", req.DeadLetterTopic), c.Logs())
	if err := c.Assign(assign); err != nil {
		return fmt.Errorf("assign %s: %w", req.DeadLetterTopic, kafkaclient.Classify(err))
	}

	var batch []produce.Record
	var batchTopic string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if !req.DryRun {
			if err := s.write(ctx, batchTopic, batch); err != nil {
				return err
			}
		}
		prog.Replayed += int64(len(batch))
		batch, batchTopic = batch[:0], ""
		return progress(*prog)
	}
	lastRead := time.Now()
	for len(ends) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Since(lastRead) > replayStall {
			return fmt.Errorf("read %s: %w: nothing read for %v", req.DeadLetterTopic, kafkaclient.ErrUnavailable, replayStall)
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			lastRead = time.Now()
			p, off := e.TopicPartition.Partition, int64(e.TopicPartition.Offset)
			end, reading := ends[p]
			if e.TopicPartition.Error != nil {
				return fmt.Errorf("read %s/%d: %w", req.DeadLetterTopic, p, kafkaclient.Classify(e.TopicPartition.Error))
			}
			if !reading || off >= end {
				delete(ends, p)
				continue
			}
			if off+1 >= end {
				delete(ends, p)
			}
			prog.Scanned++
			rec, topic, ok := s.replayRecord(req, e)
			if !ok {
				prog.Skipped++
				continue
			}
			if req.MayWrite != nil && topic != batchTopic {
				if err := req.MayWrite(topic); err != nil {
					return err
				}
			}
			if topic != batchTopic && len(batch) > 0 {
				if err := flush(); err != nil {
					return err
				}
			}
			batch, batchTopic = append(batch, rec), topic
			if len(batch) >= s.maxBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		case kafka.PartitionEOF:
			lastRead = time.Now()
			if end, ok := ends[e.Partition]; ok && int64(e.Offset) >= end {
				delete(ends, e.Partition)
			}
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("read %s: %w", req.DeadLetterTopic, kafkaclient.Classify(e))
			}
		}
	}
	return flush()
}

// write produces one batch and fails on the first record that failed.
func (s *Service) write(ctx context.Context, topic string, batch []produce.Record) error {
	results, err := s.producer.Produce(ctx, topic, batch)
	if err != nil {
		return fmt.Errorf("write to %s: %w", topic, err)
	}
	for _, r := range results {
		if r.Err != nil {
			return fmt.Errorf("write to %s: %w", topic, r.Err)
		}
	}
	return nil
}

// replayRecord turns a dead letter into the record to write back and its
// topic; ok is false when the record is not selected.
func (s *Service) replayRecord(req ReplayRequest, m *kafka.Message) (rec produce.Record, topic string, ok bool) {
	var source, group, ownID, originalID string
	compact := false
	for _, h := range m.Headers {
		switch h.Key {
		case consume.HeaderDLQTopic:
			source = string(h.Value)
		case consume.HeaderDLQGroup:
			group = string(h.Value)
		case consume.HeaderDLQMessageID:
			originalID = string(h.Value)
		case s.messageIDHeader:
			ownID = string(h.Value)
		case consume.HeaderDLQPayloadOmitted:
			compact = true
		case consume.HeaderDLQPartition, consume.HeaderDLQOffset, consume.HeaderDLQAttempts, consume.HeaderDLQReason,
			HeaderReplaySource, HeaderReplayOriginalID:
			// Described the failure, or an earlier replay: not part of the record.
		default:
			rec.Headers = append(rec.Headers, produce.Header{Key: h.Key, Value: h.Value})
		}
	}
	if originalID == "" {
		originalID = ownID // a dead letter written before dlq-message-id existed
	}
	// A compact dead letter carries no payload to write back: its record is
	// read at its source coordinates, not replayed.
	if compact || req.Group != "" && group != req.Group {
		return rec, "", false
	}
	topic = req.TargetTopic
	if topic == "" {
		topic = source
	}
	if topic == "" {
		return rec, "", false
	}
	place := *m.TopicPartition.Topic + "/" + strconv.Itoa(int(m.TopicPartition.Partition)) + "/" + strconv.FormatInt(int64(m.TopicPartition.Offset), 10)
	rec.Key, rec.Value = m.Key, m.Value
	rec.Partition = produce.AnyPartition
	rec.IdempotencyKey = replayKey(place)
	rec.Headers = append(rec.Headers, produce.Header{Key: HeaderReplaySource, Value: []byte(place)})
	if originalID != "" {
		rec.Headers = append(rec.Headers, produce.Header{Key: HeaderReplayOriginalID, Value: []byte(originalID)})
	}
	return rec, topic, true
}

// replayKey is the message ID of a replayed record: derived from its place
// in the dead-letter topic, so a second replay of it writes nothing new
// (producer idempotency) or is dropped by consumers' dedupe.
func replayKey(place string) string {
	if k := "replay:" + place; len(k) <= 256 {
		return k
	}
	sum := sha256.Sum256([]byte(place))
	return "replay:" + hex.EncodeToString(sum[:])
}
