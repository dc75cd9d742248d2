package produce

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/invalid"
)

// FuzzValidate: a batch built from any input is either accepted, and then
// within every limit, or refused as bad input naming a field of the
// request; validation never panics.
func FuzzValidate(f *testing.F) {
	f.Add("orders", uint8(1), []byte("k"), []byte("v"), "h", []byte("hv"), int32(-1), "", int64(0))
	f.Add("", uint8(0), []byte(nil), []byte(nil), "", []byte(nil), int32(0), "", int64(0))
	f.Add("orders/eu", uint8(3), []byte("k"), make([]byte, 300), "message-id", []byte("x"), int32(-7), strings.Repeat("i", 300), int64(-5))
	f.Add(strings.Repeat("t", 250), uint8(5), []byte{0xff}, []byte{0}, "\x00", []byte{}, int32(2), "key-1", int64(1732412345000))
	f.Fuzz(func(t *testing.T, topic string, n uint8, key, value []byte, hkey string, hval []byte, partition int32, idem string, tsMillis int64) {
		cfg := DefaultConfig()
		cfg.MaxRecordBytes = 256
		cfg.MaxRecordsPerRequest = 4
		p := &Producer{cfg: cfg}
		records := make([]Record, int(n%6))
		for i := range records {
			r := Record{Key: key, Value: value, Partition: partition, IdempotencyKey: idem}
			if i%2 == 1 {
				r.Headers = []Header{{Key: hkey, Value: hval}}
			}
			if tsMillis != 0 {
				r.Timestamp = time.UnixMilli(tsMillis)
			}
			records[i] = r
		}
		err := p.validate(topic, records)
		if err != nil {
			var inv *invalid.Error
			if !errors.As(err, &inv) || len(inv.Violations) == 0 {
				t.Fatalf("validate: %v, want an invalid-argument error", err)
			}
			for _, v := range inv.Violations {
				if v.Field != "topic" && v.Field != "records" && !strings.HasPrefix(v.Field, "records[") {
					t.Fatalf("violation names %q, not a request field", v.Field)
				}
			}
			return
		}
		if ValidTopicName(topic) != "" || len(records) == 0 || len(records) > cfg.MaxRecordsPerRequest {
			t.Fatalf("accepted topic %q with %d records", topic, len(records))
		}
		for i, r := range records {
			size := len(r.Key) + len(r.Value)
			for _, h := range r.Headers {
				size += len(h.Key) + len(h.Value)
				if h.Key == "" || h.Key == cfg.MessageIDHeader {
					t.Fatalf("records[%d]: accepted header key %q", i, h.Key)
				}
			}
			if size > cfg.MaxRecordBytes || len(r.IdempotencyKey) > maxIdempotencyKeyBytes ||
				(r.Partition < 0 && r.Partition != AnyPartition) || (!r.Timestamp.IsZero() && r.Timestamp.UnixMilli() < 0) {
				t.Fatalf("records[%d]: accepted %+v", i, r)
			}
		}
	})
}
