package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// history builds a run's history: attempts, the topic and one group's
// ledger, all consistent (every record written, processed and acked once,
// in order); each case then breaks it one way.
type history struct {
	attempts []*attempt
	topic    []topicRecord
	ledger   *groupLedger
	events   []faultEvent
}

func newHistory(n int) *history {
	h := &history{ledger: &groupLedger{msgs: map[string]*msgLedger{}}}
	t := int64(1_000)
	for i := range n {
		id, key := "0-"+itoa(i+1), "k"+itoa(i%2)
		seq := i/2 + 1
		msg := "m" + itoa(i)
		h.attempts = append(h.attempts, &attempt{id: id, key: key, seq: seq, outcome: outcomeOK, partition: 0, offset: int64(i), messageID: msg})
		h.topic = append(h.topic, topicRecord{partition: 0, offset: int64(i), key: key, messageID: msg, value: recordValue(id, key, seq)})
		t += 10
		h.ledger.msgs[msg] = &msgLedger{processed: []int64{t}, firstP: t, firstA: t + 1, acked: 1, partition: 0, offset: int64(i)}
	}
	return h
}

func itoa(i int) string { return fmt.Sprintf("%02d", i) }

func (h *history) check(dedupe bool) *report {
	r := &report{dedupe: dedupe, drainedOK: true, drainLimit: time.Minute}
	check(r, h.attempts, h.topic, map[string]*groupLedger{"g": h.ledger}, map[string]string{"g": "key"}, h.events)
	return r
}

func TestCheckerFlagsEachKindOfViolation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		dedupe bool
		breaks func(h *history)
		want   string // "" means the history passes
	}{
		{"consistent history passes", true, func(*history) {}, ""},
		{"acknowledged write missing from the topic", true, func(h *history) {
			h.topic = h.topic[1:]
			delete(h.ledger.msgs, "m00")
		}, "acknowledged writes missing"},
		{"record never acked", true, func(h *history) { h.ledger.msgs["m03"].acked = 0 }, "records lost"},
		{"an ack of unknown fate counts as processed", true, func(h *history) {
			h.ledger.msgs["m03"].acked, h.ledger.msgs["m03"].unknown = 0, 1
		}, ""},
		{"acked twice with dedupe", true, func(h *history) { h.ledger.msgs["m02"].acked = 2 }, "duplicate acks"},
		{"processed after its ack with dedupe", true, func(h *history) {
			m := h.ledger.msgs["m02"]
			m.processed = append(m.processed, m.firstA+5)
		}, "processed again after their ack"},
		{"without dedupe, duplicates after a gateway kill are reported only", false, func(h *history) {
			h.ledger.msgs["m02"].acked = 2
			h.events = []faultEvent{{kind: faultGatewayKill}}
		}, ""},
		{"without dedupe and without a redelivering fault, duplicates fail", false, func(h *history) {
			h.ledger.msgs["m02"].acked = 2
			h.events = []faultEvent{{kind: faultRedisKill}}
		}, "duplicate acks"},
		{"key order: a later record of a key processed first", true, func(h *history) {
			// m00 and m02 share key k0; m02 first processed before m00.
			h.ledger.msgs["m02"].firstP = h.ledger.msgs["m00"].firstP - 1
		}, "order violations"},
		{"topic order: sequence numbers out of order", true, func(h *history) {
			h.topic[0].value, h.topic[2].value = h.topic[2].value, h.topic[0].value
			h.attempts[0].offset, h.attempts[2].offset = 2, 0
			h.topic[0].messageID, h.topic[2].messageID = "m02", "m00"
			h.attempts[0].messageID, h.attempts[2].messageID = "m00", "m02"
			h.ledger.msgs["m00"].offset, h.ledger.msgs["m02"].offset = 2, 0
		}, "out of order in the topic"},
		{"phantom record in the topic", true, func(h *history) {
			h.topic = append(h.topic, topicRecord{partition: 0, offset: 99, key: "k9", messageID: "mx", value: "w=9-9 k=k9 s=1"})
		}, "phantom records"},
		{"ledger entry at another offset than the topic's", true, func(h *history) { h.ledger.msgs["m01"].offset = 7 }, "phantom ledger"},
		{"a revocation while an app was slow", true, func(h *history) {
			h.events = []faultEvent{{kind: faultSlowApp, start: time.Unix(0, 100), heal: time.Unix(0, 200)}}
			h.ledger.revokes = []int64{150}
		}, "revocations while an app was slower"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHistory(8)
			tc.breaks(h)
			r := h.check(tc.dedupe)
			got := strings.Join(r.violations, "; ")
			switch {
			case tc.want == "" && got != "":
				t.Fatalf("violations %q, want none", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Fatalf("violations %q, want one containing %q", got, tc.want)
			}
		})
	}
}
