package consume

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"sync"

	"github.com/kafkagate/gateway/internal/invalid"
	"github.com/kafkagate/gateway/internal/produce"
)

// AckID identifies one delivery of a record: its partition and offset, the
// epoch of the partition's assignment on this gateway when it was
// delivered, and the record's delivery number within that assignment. Only
// the latest delivery of a record may be acknowledged: the epoch makes acks
// from before a revocation stale even if the partition comes back, and the
// delivery number makes an ack of an earlier delivery stale once the record
// has gone out again.
//
// Its text form, "topic/partition/offset/epoch/delivery/mac", carries a MAC
// over the group and the fields, keyed by a secret of this gateway process:
// an ID cannot be guessed or altered, and an ID that does not verify gets
// the same answer as a stale one, so the answer tells nothing about which
// records exist.
type AckID struct {
	Topic     string
	Partition int32
	Offset    int64
	Epoch     uint64
	Delivery  uint32
}

// ackIDParts is the number of slash-separated fields of the text form.
const ackIDParts = 6

// macBytes is the length of the MAC in the text form (hex encoded).
const macBytes = 12

// ackSigner signs and verifies ack IDs with a key of its own.
type ackSigner struct {
	pool sync.Pool // of hash.Hash (HMAC-SHA256 with the key)
}

func newAckSigner() *ackSigner {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("consume: no randomness for the ack ID key: " + err.Error())
	}
	s := &ackSigner{}
	s.pool.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// mac computes the MAC of id in group into dst (macBytes long).
func (s *ackSigner) mac(dst []byte, group string, id AckID) {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	var buf [8 + 4 + 8 + 8 + 4]byte
	binary.BigEndian.PutUint64(buf[0:], uint64(len(group)))
	binary.BigEndian.PutUint32(buf[8:], uint32(id.Partition))
	binary.BigEndian.PutUint64(buf[12:], uint64(id.Offset))
	binary.BigEndian.PutUint64(buf[20:], id.Epoch)
	binary.BigEndian.PutUint32(buf[28:], id.Delivery)
	h.Write(buf[:])
	h.Write([]byte(group))
	h.Write([]byte(id.Topic))
	var sum [sha256.Size]byte
	copy(dst, h.Sum(sum[:0]))
	s.pool.Put(h)
}

// format returns the signed text form of id for group.
func (s *ackSigner) format(group string, id AckID) string {
	var m [macBytes]byte
	s.mac(m[:], group, id)
	b := make([]byte, 0, len(id.Topic)+64)
	b = append(b, id.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(id.Partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, id.Offset, 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, id.Epoch, 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(id.Delivery), 10)
	b = append(b, '/')
	b = hex.AppendEncode(b, m[:])
	return string(b)
}

// verify reports whether mac is id's MAC in group.
func (s *ackSigner) verify(group string, id AckID, mac []byte) bool {
	var want [macBytes]byte
	s.mac(want[:], group, id)
	return hmac.Equal(want[:], mac)
}

// ParseAckID parses the text form, without verifying its MAC. field names
// the ID in errors, for example "ack_ids[3]".
func ParseAckID(field, s string) (AckID, []byte, error) {
	bad := func(why string) (AckID, []byte, error) {
		return AckID{}, nil, invalid.Field(field, "%q is not an ack ID from this gateway: %s", truncate(s, 100), why)
	}
	// Split from the right: the topic is everything before the last five
	// slashes (topic names cannot hold a slash).
	var parts [ackIDParts - 1]string
	rest := s
	for i := len(parts) - 1; i >= 0; i-- {
		j := strings.LastIndexByte(rest, '/')
		if j < 0 {
			return bad("want topic/partition/offset/epoch/delivery/mac")
		}
		rest, parts[i] = rest[:j], rest[j+1:]
	}
	if why := produce.ValidTopicName(rest); why != "" {
		return bad("the topic " + why)
	}
	p, err := strconv.ParseInt(parts[0], 10, 32)
	if err != nil || p < 0 {
		return bad("bad partition")
	}
	o, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || o < 0 {
		return bad("bad offset")
	}
	e, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil || e == 0 {
		return bad("bad epoch")
	}
	d, err := strconv.ParseUint(parts[3], 10, 32)
	if err != nil || d == 0 {
		return bad("bad delivery number")
	}
	mac, err := hex.DecodeString(parts[4])
	if err != nil || len(mac) != macBytes {
		return bad("bad signature")
	}
	return AckID{Topic: rest, Partition: int32(p), Offset: o, Epoch: e, Delivery: uint32(d)}, mac, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// recordID is "topic/partition/offset": the identity of a record without a
// message-id header.
func recordID(topic string, partition int32, offset int64) string {
	return string(AppendRecordID(make([]byte, 0, RecordIDLen(topic, partition, offset)), topic, partition, offset))
}

// AppendRecordID appends "topic/partition/offset", the message ID of a
// record that carries none, to b.
func AppendRecordID(b []byte, topic string, partition int32, offset int64) []byte {
	b = append(b, topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, '/')
	return strconv.AppendInt(b, offset, 10)
}

// RecordIDLen is the length of AppendRecordID's text.
func RecordIDLen(topic string, partition int32, offset int64) int {
	return len(topic) + 2 + decimalLen(int64(partition)) + decimalLen(offset)
}

// decimalLen is the length of strconv.FormatInt(v, 10).
func decimalLen(v int64) int {
	n, u := 1, uint64(v)
	if v < 0 {
		n, u = 2, uint64(-(v+1))+1 // MinInt64 has no positive int64
	}
	for ; u >= 10; u /= 10 {
		n++
	}
	return n
}
