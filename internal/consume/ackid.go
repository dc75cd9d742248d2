package consume

import (
	"strconv"
	"strings"

	"github.com/kafkagate/gateway/internal/invalid"
)

// AckID identifies one delivered record: its partition, its offset, and the
// epoch of the partition's assignment on this gateway when it was
// delivered. The epoch makes acks from before a revocation stale even if
// the partition comes back later.
//
// Its text form is "topic/partition/offset/epoch" (topic names cannot hold
// a slash), readable in logs and cheap to parse.
type AckID struct {
	Topic     string
	Partition int32
	Offset    int64
	Epoch     uint64
}

// String returns the text form.
func (a AckID) String() string {
	b := make([]byte, 0, len(a.Topic)+40)
	b = append(b, a.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(a.Partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, a.Offset, 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, a.Epoch, 10)
	return string(b)
}

// ParseAckID parses the text form. field names the ID in errors, for
// example "ack_ids[3]".
func ParseAckID(field, s string) (AckID, error) {
	bad := func(why string) (AckID, error) {
		return AckID{}, invalid.Field(field, "%q is not an ack ID from this gateway: %s", truncate(s, 100), why)
	}
	// Split from the right: the topic is everything before the last three
	// slashes.
	rest, epoch, ok1 := cutLast(s)
	rest, offset, ok2 := cutLast(rest)
	topic, part, ok3 := cutLast(rest)
	if !ok1 || !ok2 || !ok3 || topic == "" {
		return bad("want topic/partition/offset/epoch")
	}
	p, err := strconv.ParseInt(part, 10, 32)
	if err != nil || p < 0 {
		return bad("bad partition")
	}
	o, err := strconv.ParseInt(offset, 10, 64)
	if err != nil || o < 0 {
		return bad("bad offset")
	}
	e, err := strconv.ParseUint(epoch, 10, 64)
	if err != nil || e == 0 {
		return bad("bad epoch")
	}
	return AckID{Topic: topic, Partition: int32(p), Offset: o, Epoch: e}, nil
}

func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// messageIDFallback is "topic/partition/offset": the identity of a record
// without a message-id header, and of a record within this gateway.
func messageIDFallback(topic string, partition int32, offset int64) string {
	b := make([]byte, 0, len(topic)+24)
	b = append(b, topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, offset, 10)
	return string(b)
}
