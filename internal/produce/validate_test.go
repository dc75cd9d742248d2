package produce

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/invalid"
)

func TestValidateRejectsBadBatchesNamingTheField(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.MaxRecordBytes = 100
	cfg.MaxRecordsPerRequest = 3
	p := &Producer{cfg: cfg}
	ok := Record{Value: []byte("v"), Partition: AnyPartition}
	cases := []struct {
		name    string
		topic   string
		records []Record
		field   string // "" means valid
	}{
		{"valid", "orders", []Record{ok, ok}, ""},
		{"empty topic", "", []Record{ok}, "topic"},
		{"illegal topic character", "orders/eu", []Record{ok}, "topic"},
		{"topic too long", strings.Repeat("t", 250), []Record{ok}, "topic"},
		{"no records", "orders", nil, "records"},
		{"too many records", "orders", []Record{ok, ok, ok, ok}, "records"},
		{"record too large", "orders", []Record{ok, {Value: make([]byte, 101), Partition: AnyPartition}}, "records[1]"},
		{"headers count toward size", "orders", []Record{{Value: make([]byte, 90), Headers: []Header{{Key: "h", Value: make([]byte, 10)}}, Partition: AnyPartition}}, "records[0]"},
		{"empty header key", "orders", []Record{{Headers: []Header{{Key: ""}}, Partition: AnyPartition}}, "records[0].headers[0].key"},
		{"message id header is reserved", "orders", []Record{ok, {Headers: []Header{{Key: "a"}, {Key: "message-id"}}, Partition: AnyPartition}}, "records[1].headers[1].key"},
		{"negative partition", "orders", []Record{{Partition: -5}}, "records[0].partition"},
		{"idempotency key too long", "orders", []Record{{IdempotencyKey: strings.Repeat("k", 257), Partition: AnyPartition}}, "records[0].idempotency_key"},
		{"timestamp before 1970", "orders", []Record{{Timestamp: time.Unix(-10, 0), Partition: AnyPartition}}, "records[0].timestamp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := p.validate(tc.topic, tc.records)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid batch rejected: %v", err)
				}
				return
			}
			var inv *invalid.Error
			if !errors.As(err, &inv) {
				t.Fatalf("error = %v, want *invalid.Error", err)
			}
			if got := inv.Violations[0].Field; got != tc.field {
				t.Errorf("field = %q, want %q (%v)", got, tc.field, err)
			}
		})
	}
}

func TestValidatePartitionsChecksAgainstTheTopic(t *testing.T) {
	t.Parallel()
	p := &Producer{cfg: DefaultConfig()}
	records := []Record{{Partition: 2}, {Partition: AnyPartition}, {Partition: 3}}
	err := p.validatePartitions("orders", 3, records)
	var inv *invalid.Error
	if !errors.As(err, &inv) || len(inv.Violations) != 1 || inv.Violations[0].Field != "records[2].partition" {
		t.Fatalf("error = %v, want one violation on records[2].partition", err)
	}
	if err := p.validatePartitions("orders", 0, records); err != nil {
		t.Errorf("unknown partition count must not reject: %v", err)
	}
}

func TestTopicCacheRemembersHitsLongerThanMisses(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	lookups := map[string]int{}
	c := newTopicCache(func(_ context.Context, topic string) (int32, error) {
		lookups[topic]++
		if topic == "missing" {
			return 0, ErrUnknownTopic
		}
		return 4, nil
	}, func() time.Time { return now })
	ctx := context.Background()

	for range 3 {
		if n, err := c.get(ctx, "orders"); n != 4 || err != nil {
			t.Fatalf("get(orders) = %d, %v", n, err)
		}
		if _, err := c.get(ctx, "missing"); !errors.Is(err, ErrUnknownTopic) {
			t.Fatalf("get(missing) error = %v", err)
		}
	}
	now = now.Add(2 * time.Second) // past missingTTL, within topicTTL
	c.get(ctx, "orders")
	c.get(ctx, "missing")
	if lookups["orders"] != 1 || lookups["missing"] != 2 {
		t.Errorf("lookups = %v, want orders once and missing twice", lookups)
	}
}

// The review found the cache of unknown topics was never evicted: a caller
// naming ever new topics grew it without bound.
func TestTopicCacheStaysBoundedUnderEverNewTopicNames(t *testing.T) {
	t.Parallel()
	c := newTopicCache(func(_ context.Context, topic string) (int32, error) {
		return 0, ErrUnknownTopic
	}, time.Now)
	for i := range 5 * maxTopicEntries {
		_, _ = c.get(context.Background(), fmt.Sprintf("missing-%d", i))
	}
	if n := c.size(); n > maxTopicEntries {
		t.Fatalf("%d entries cached, more than %d", n, maxTopicEntries)
	}
}
