package produce

import (
	"fmt"

	"github.com/kafkagate/gateway/internal/invalid"
)

// maxIdempotencyKeyBytes bounds Record.IdempotencyKey.
const maxIdempotencyKeyBytes = 256

// ValidTopicName reports why name is not a legal Kafka topic name, or "".
func ValidTopicName(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > 249:
		return fmt.Sprintf("is %d characters long; at most 249 are allowed", len(name))
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not allowed", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("%q contains %q; only [a-zA-Z0-9._-] are allowed", name, c)
		}
	}
	return ""
}

// validate checks a batch before anything of it is enqueued.
func (p *Producer) validate(topic string, records []Record) error {
	var errs invalid.Error
	if why := ValidTopicName(topic); why != "" {
		errs.Add("topic", "%s", why)
	}
	switch n := len(records); {
	case n == 0:
		errs.Add("records", "must not be empty")
	case n > p.cfg.MaxRecordsPerRequest:
		errs.Add("records", "%d records exceed max_records_per_request (%d)", n, p.cfg.MaxRecordsPerRequest)
	}
	if err := errs.Err(); err != nil {
		return err
	}
	for i := range records {
		p.validateRecord(&errs, i, &records[i])
	}
	return errs.Err()
}

// Size is the bytes of r's key, value and headers: what max_record_bytes
// and byte rate limits count.
func (r *Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

func (p *Producer) validateRecord(errs *invalid.Error, i int, r *Record) {
	size := r.Size()
	for j, h := range r.Headers {
		switch h.Key {
		case "":
			errs.Add(fmt.Sprintf("records[%d].headers[%d].key", i, j), "must not be empty")
		case p.cfg.MessageIDHeader:
			errs.Add(fmt.Sprintf("records[%d].headers[%d].key", i, j),
				"%q is set by the gateway; use idempotency_key to choose the message ID", h.Key)
		}
	}
	if size > p.cfg.MaxRecordBytes {
		errs.Add(fmt.Sprintf("records[%d]", i), "%d bytes of key, value and headers exceed max_record_bytes (%d)", size, p.cfg.MaxRecordBytes)
	}
	if r.Partition < 0 && r.Partition != AnyPartition {
		errs.Add(fmt.Sprintf("records[%d].partition", i), "must not be negative")
	}
	if len(r.IdempotencyKey) > maxIdempotencyKeyBytes {
		errs.Add(fmt.Sprintf("records[%d].idempotency_key", i), "is %d bytes long; at most %d are allowed", len(r.IdempotencyKey), maxIdempotencyKeyBytes)
	}
	if !r.Timestamp.IsZero() && r.Timestamp.UnixMilli() < 0 {
		errs.Add(fmt.Sprintf("records[%d].timestamp", i), "must not be before 1970-01-01")
	}
}

// validatePartitions checks explicit partitions against the topic's count,
// when the count is known.
func (p *Producer) validatePartitions(topic string, partitions int32, records []Record) error {
	if partitions <= 0 {
		return nil
	}
	var errs invalid.Error
	for i := range records {
		if part := records[i].Partition; part != AnyPartition && part >= partitions {
			errs.Add(fmt.Sprintf("records[%d].partition", i), "topic %q has %d partitions (0..%d)", topic, partitions, partitions-1)
		}
	}
	return errs.Err()
}
