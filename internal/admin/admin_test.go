package admin

import (
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/identity"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ids := identity.Config{Header: "x-caller"}
	for _, tc := range []struct {
		name string
		cfg  Config
		ids  identity.Config
		err  string
	}{
		{"defaults", DefaultConfig(), ids, ""},
		{"allow list", Config{RequestTimeout: DefaultConfig().RequestTimeout, AllowedIdentities: []string{"ops", "sre"}}, ids, ""},
		{"empty identity", Config{RequestTimeout: DefaultConfig().RequestTimeout, AllowedIdentities: []string{""}}, ids, "admin.allowed_identities[0]"},
		{"twice", Config{RequestTimeout: DefaultConfig().RequestTimeout, AllowedIdentities: []string{"ops", "ops"}}, ids, "listed twice"},
		{"no way to identify", Config{RequestTimeout: DefaultConfig().RequestTimeout, AllowedIdentities: []string{"ops"}}, identity.Config{}, "no caller has an identity"},
		{"service names callers", Config{RequestTimeout: DefaultConfig().RequestTimeout, AllowedIdentities: []string{"ops"}}, identity.Config{Service: "ops"}, ""},
		{"request timeout", Config{}, ids, "admin.request_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate(tc.ids)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Validate = %v, want %q", err, tc.err)
			}
		})
	}
	if !(Config{}).Allowed("anyone") || !(Config{AllowedIdentities: []string{"ops"}}).Allowed("ops") || (Config{AllowedIdentities: []string{"ops"}}).Allowed("sre") {
		t.Error("Allowed disagrees with the allow list")
	}
}

func TestReplayRecordRestoresTheOriginalRecord(t *testing.T) {
	t.Parallel()
	s := &Service{messageIDHeader: "message-id"}
	dlq := "orders.dlq"
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &dlq, Partition: 2, Offset: 17},
		Key:            []byte("k"),
		Value:          []byte("v"),
		Headers: []kafka.Header{
			{Key: "message-id", Value: []byte("id-1")},
			{Key: "app", Value: []byte("x")},
			{Key: consume.HeaderDLQTopic, Value: []byte("orders")},
			{Key: consume.HeaderDLQPartition, Value: []byte("0")},
			{Key: consume.HeaderDLQOffset, Value: []byte("5")},
			{Key: consume.HeaderDLQAttempts, Value: []byte("3")},
			{Key: consume.HeaderDLQReason, Value: []byte("boom")},
			{Key: consume.HeaderDLQGroup, Value: []byte("billing")},
			{Key: HeaderReplaySource, Value: []byte("older/0/1")},
		},
	}
	rec, topic, ok := s.replayRecord(ReplayRequest{}, msg)
	if !ok || topic != "orders" {
		t.Fatalf("selected %v, topic %q", ok, topic)
	}
	var hs []string
	for _, h := range rec.Headers {
		hs = append(hs, h.Key+"="+string(h.Value))
	}
	if got := strings.Join(hs, " "); got != "app=x replay-source=orders.dlq/2/17 replay-original-message-id=id-1" {
		t.Errorf("headers %s", got)
	}
	if rec.IdempotencyKey != "replay:orders.dlq/2/17" || string(rec.Key) != "k" || string(rec.Value) != "v" {
		t.Errorf("record %+v", rec)
	}
	if _, _, ok := s.replayRecord(ReplayRequest{Group: "shipping"}, msg); ok {
		t.Error("a record of another group was selected")
	}
	if _, topic, _ := s.replayRecord(ReplayRequest{TargetTopic: "orders-retry"}, msg); topic != "orders-retry" {
		t.Errorf("target topic ignored: %q", topic)
	}
	msg.Headers = msg.Headers[:2]
	if _, _, ok := s.replayRecord(ReplayRequest{}, msg); ok {
		t.Error("a record without a source topic was selected")
	}
	if k := replayKey(strings.Repeat("t", 249) + "/0/1"); len(k) > 256 || !strings.HasPrefix(k, "replay:") {
		t.Errorf("long key %q", k)
	}
}
