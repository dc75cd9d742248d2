package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	testTopic = "orders"
	testGroup = "g"
	sec       = int64(time.Second)
)

// testRun is a synthetic run: records written, read back, delivered once
// each to one app of one group, processed and acked OK in order; record 5
// is a small poison record and record 7 a large one, each dead-lettered
// once (in full and compact). Each case then breaks it one way.
type testRun struct {
	h   *history
	cfg checkConfig
	rep *report
}

func newTestRun(n int, ordering string) *testRun {
	tr := &testRun{
		h: &history{
			groups:    map[string]*groupLedger{testGroup: newGroupLedger(testGroup, ordering)},
			ends:      map[int32]int64{0: int64(n)},
			committed: map[string]map[int32]int64{testGroup: {0: int64(n)}},
		},
		cfg: checkConfig{topic: testTopic, dedupe: true, ackTimeout: 20 * time.Second, minWritten: 1, minProcessed: 1},
		rep: &report{drainedOK: true},
	}
	t := 100 * sec
	for i := range n {
		id, key := "0-"+strconv.Itoa(i+1), "k"+strconv.Itoa(i%2)
		seq, poison := i/2+1, poisonNone
		switch {
		case i == 5:
			poison = poisonSmall
		case i == 7:
			poison = poisonLarge
		}
		tr.h.attempts = append(tr.h.attempts, &attempt{id: id, key: key, seq: seq, poison: poison, tries: 1, outcome: outcomeOK, partition: 0, offset: int64(i), messageID: id})
		rec := topicRecord{partition: 0, offset: int64(i), key: key, messageID: id, value: recordValue(id, key, seq, poison)}
		if poison != poisonNone {
			rec.headers = []header{{poisonHeader, poisonName(poison)}}
		}
		tr.h.topic = append(tr.h.topic, rec)
		t += sec / 100
		d := &delivery{app: "app-a", gateway: "a", msg: id, partition: 0, offset: int64(i), attempt: 1, recv: t, deadline: t + 20*sec}
		if poison == poisonNone {
			d.processed, d.sent, d.outcome, d.answered = t, t+sec/1000, evAcked, t+2*sec/1000
		} else {
			d.outcome, d.answered = evDeadLetter, t+sec/1000
			tr.h.deadLetters = append(tr.h.deadLetters, deadLetterOf(rec, testGroup, poison == poisonLarge))
		}
		tr.h.groups[testGroup].add(d)
	}
	if n > 5 {
		tr.cfg.minPoison = 1
	}
	tr.h.drainedAt = t + 100*sec // after the redeliveries the cases add
	return tr
}

// deadLetterOf is the dead letter the gateway writes for rec.
func deadLetterOf(rec topicRecord, group string, compact bool) topicRecord {
	dl := topicRecord{offset: rec.offset, headers: []header{
		{dlqSourceTopic, testTopic}, {dlqSourcePartition, strconv.Itoa(int(rec.partition))}, {dlqSourceOffset, strconv.FormatInt(rec.offset, 10)},
		{dlqAttempts, "1"}, {dlqReason, "poison"}, {dlqGroup, group}, {dlqMessageID, rec.messageID},
	}}
	if compact {
		dl.headers = append(dl.headers, header{dlqPayloadOmitted, strconv.Itoa(len(rec.value))})
	} else {
		dl.key, dl.value = rec.key, rec.value
		dl.headers = append(rec.headers, dl.headers...)
	}
	return dl
}

func (tr *testRun) msg(i int) []*delivery {
	return tr.h.groups[testGroup].byMsg["0-"+strconv.Itoa(i+1)]
}

// redeliver adds another delivery of record i to app, received at recv.
func (tr *testRun) redeliver(i int, app, gateway string, recv int64, outcome byte, answered int64) *delivery {
	d0 := tr.msg(i)[0]
	d := &delivery{app: app, gateway: gateway, msg: d0.msg, partition: d0.partition, offset: d0.offset, attempt: d0.attempt + 1,
		recv: recv, deadline: recv + 20*sec, processed: recv, outcome: outcome, answered: answered}
	if outcome != 0 {
		d.sent = answered - sec/1000
	}
	tr.h.groups[testGroup].add(d)
	return d
}

func (tr *testRun) check() string {
	check(tr.rep, tr.cfg, tr.h)
	return strings.Join(tr.rep.violations, "; ")
}

// The story: the review found that a run in which nothing was written or
// consumed passed the checker. A run now needs a minimum of activity.
func TestCheckerFailsAnEmptyHistory(t *testing.T) {
	t.Parallel()
	tr := newTestRun(0, "key")
	if got := tr.check(); !strings.Contains(got, "too little activity") {
		t.Errorf("an empty history: violations %q, want too little activity", got)
	}
}

// The story: the review found that two apps processing one message at once
// (dedupe on) passed the checker when the second ack was refused or of
// unknown fate: only extra OK acks and processing after an OK ack counted.
// Each delivery is now held from its receipt until its ack's answer (or its
// deadline), and two holds of one message must not intersect.
func TestCheckerFailsTwoAppsHoldingOneMessageAtOnce(t *testing.T) {
	t.Parallel()
	tr := newTestRun(8, "key")
	d := tr.msg(2)[0]
	tr.redeliver(2, "app-b", "a", d.recv, evRefused, d.recv+sec/10)
	if got := tr.check(); !strings.Contains(got, "overlaps") {
		t.Errorf("a message held by two apps at once (dedupe on): violations %q, want an overlap", got)
	}
}

func TestCheckerFlagsEachKindOfViolation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		ordering string
		breaks   func(tr *testRun)
		want     string // "" means the history passes
	}{
		{"consistent history passes", "key", func(*testRun) {}, ""},
		{"consistent history passes, partition ordering", "partition", func(*testRun) {}, ""},
		{"consistent history passes, no ordering", "none", func(*testRun) {}, ""},
		{"consistent history passes without dedupe", "key", func(tr *testRun) { tr.cfg.dedupe = false }, ""},

		{"too few records written", "key", func(tr *testRun) { tr.cfg.minWritten = 100 }, "too little activity"},
		{"too few messages processed by a group", "key", func(tr *testRun) { tr.cfg.minProcessed = 100 }, "too little activity: group g"},
		{"no large poison record", "key", func(tr *testRun) {
			tr.h.topic[7].value = recordValue("0-8", "k1", 4, poisonNone)
			tr.h.attempts[7].poison = poisonNone
			tr.h.deadLetters = tr.h.deadLetters[:1]
			tr.msg(7)[0].outcome, tr.msg(7)[0].processed = evAcked, tr.msg(7)[0].recv
		}, "too little activity: 1 poison records"},

		{"acknowledged write missing from the topic", "key", func(tr *testRun) {
			tr.h.topic = tr.h.topic[1:]
			delete(tr.h.groups[testGroup].byMsg, "0-1")
		}, "lost writes"},
		{"acknowledged write elsewhere than reported", "key", func(tr *testRun) { tr.h.attempts[3].offset = 9 }, "lost writes"},
		{"acknowledged write with offset -1, in its partition", "key", func(tr *testRun) { tr.h.attempts[3].offset = -1 }, ""},
		{"acknowledged write with offset -1, in another partition", "key", func(tr *testRun) {
			tr.h.attempts[3].offset, tr.h.attempts[3].partition = -1, 1
		}, "lost writes"},
		{"acknowledged write with offset -1, missing from the topic", "key", func(tr *testRun) {
			tr.h.attempts[0].offset = -1
			tr.h.topic = tr.h.topic[1:]
			delete(tr.h.groups[testGroup].byMsg, "0-1")
		}, "lost writes"},
		{"idempotency key written twice", "key", func(tr *testRun) {
			dup := tr.h.topic[3]
			dup.offset = 99
			tr.h.topic = append(tr.h.topic, dup)
		}, "idempotency keys written twice"},
		{"phantom record in the topic", "key", func(tr *testRun) {
			tr.h.topic = append(tr.h.topic, topicRecord{partition: 0, offset: 99, key: "k9", messageID: "9-9", value: "w=9-9 k=k9 s=1"})
		}, "phantom records"},
		{"message ID that is not the idempotency key", "key", func(tr *testRun) { tr.h.topic[2].messageID = "other" }, "phantom records"},
		{"topic order: sequence numbers out of order", "key", func(tr *testRun) {
			tr.h.topic[0].value, tr.h.topic[2].value = tr.h.topic[2].value, tr.h.topic[0].value
			tr.h.topic[0].messageID, tr.h.topic[2].messageID = "0-3", "0-1"
			tr.h.attempts[0].offset, tr.h.attempts[2].offset = 2, 0
			tr.msg(0)[0].offset, tr.msg(2)[0].offset = 2, 0
		}, "out of order in the topic"},
		{"ledger entry at another offset than the topic's", "key", func(tr *testRun) { tr.msg(1)[0].offset = 7 }, "phantom ledger"},

		{"record never acked OK", "key", func(tr *testRun) { tr.msg(3)[0].outcome = evRefused }, "records lost"},
		{"an ack of unknown fate does not settle a record", "key", func(tr *testRun) { tr.msg(3)[0].outcome = evUnknown }, "1 of them with acks of unknown fate only"},
		{"an app that died during its ack did not settle the record", "key", func(tr *testRun) { tr.msg(3)[0].outcome = 0 }, "1 of them with acks of unknown fate only"},
		{"acked OK twice with dedupe", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			tr.redeliver(2, "app-b", "a", d.answered+sec, evAcked, d.answered+2*sec)
		}, "duplicate acks"},
		{"delivered again after its OK ack with dedupe", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			tr.redeliver(2, "app-b", "a", d.answered+sec, evRefused, d.answered+2*sec)
		}, "delivered again after an OK ack"},
		{"a frame that waited in a slow stream past its deadline was not delivered after the ack", "key", func(tr *testRun) {
			// Sent before the OK ack of the other delivery, read (and
			// skipped) by the app only after it.
			d := tr.msg(2)[0]
			e := tr.redeliver(2, "app-b", "a", d.answered+30*sec, 0, 0)
			e.deadline, e.processed, e.skipped = d.answered+5*sec, 0, true
		}, ""},
		{"a delivery read only after its deadline, while the next one is held, is no hold", "none", func(tr *testRun) {
			// Seen in a long run: attempt 1 waited in a stream's buffer
			// past its deadline; attempt 2 went out on another stream and
			// was held; then the app read attempt 1 and did not start it.
			d := tr.msg(2)[0]
			e := tr.redeliver(2, "app-a", "a", d.deadline+sec, 0, 0)
			e.processed = e.recv
			d.recv, d.processed, d.outcome, d.sent, d.answered, d.skipped = e.recv+5*sec, 0, 0, 0, 0, true
			tr.msg(2)[0].attempt, e.attempt = 1, 2
			tr.redeliver(2, "app-b", "a", e.deadline+sec, evAcked, e.deadline+2*sec)
		}, ""},
		{"a delivery read after its deadline and started anyway, while the next one is held", "none", func(tr *testRun) {
			// The same, but the app works on the stale delivery: its hold
			// is still empty (its lease was over when it began), but the
			// ack it gets answered OK is a late ack.
			d := tr.msg(2)[0]
			e := tr.redeliver(2, "app-a", "a", d.deadline+sec, 0, 0)
			e.processed = e.recv
			d.recv, d.processed = e.recv+5*sec, e.recv+5*sec
			d.sent, d.answered = d.recv+sec, d.recv+sec+sec/1000
		}, "late acks accepted"},
		{"two holds overlap: the second begins before the first ack's answer", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			tr.redeliver(2, "app-b", "a", d.answered-sec/2000, evRefused, d.answered+sec)
		}, "overlaps"},
		{"a nack lets the record go when it is sent: its redelivery read before the nack's answer is no overlap", "key", func(tr *testRun) {
			// Seen with Consume streams: the nack's answer waited behind an
			// earlier ack's done marker; the redelivery went out at once.
			d := tr.msg(2)[0]
			d.outcome, d.nackSent, d.sent = evNacked, d.sent, 0
			tr.redeliver(2, "app-a", "a", d.nackSent+sec/2000, evAcked, d.answered+sec)
		}, ""},
		{"a nack whose answer never came (its stream broke) ended the hold when it was sent", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			d.outcome, d.nackSent, d.sent, d.answered = 0, d.sent, 0, 0
			tr.redeliver(2, "app-a", "a", d.nackSent+sec/4, evAcked, d.nackSent+sec)
		}, ""},
		{"two holds overlap: the second begins before the first's nack was sent", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			d.outcome, d.nackSent, d.sent = evNacked, d.sent, 0
			tr.redeliver(2, "app-b", "a", d.nackSent-sec/2000, evAcked, d.answered+sec)
		}, "overlaps"},
		{"a nack's redelivery read before its answer overlaps when the app never said when it sent it", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			d.outcome, d.sent = evNacked, 0
			tr.redeliver(2, "app-a", "a", d.answered-sec/2000, evAcked, d.answered+sec)
		}, "overlaps"},
		{"two holds overlap: the second begins before the first's deadline, the first never answered", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			d.outcome, d.sent, d.answered = 0, 0, 0
			tr.redeliver(2, "app-b", "a", d.deadline-sec, evAcked, d.deadline)
		}, "overlaps"},
		{"a slow app's ack answered OK after the redelivery began", "key", func(tr *testRun) {
			d := tr.msg(2)[0]
			// Held past the deadline (no overlap), acked at +25 s, OK.
			d.sent, d.answered = d.recv+25*sec, d.recv+25*sec+sec/1000
			tr.redeliver(2, "app-b", "a", d.deadline+sec/2, evRefused, d.deadline+sec)
		}, "late acks accepted"},
		{"a slow app's ack answered OK after the redelivery was sent to its own stream", "key", func(tr *testRun) {
			// The redelivery waits in the slow stream's buffer, and is
			// read only after the late ack's OK answer.
			d := tr.msg(2)[0]
			d.sent, d.answered = d.recv+25*sec, d.recv+25*sec+sec/1000
			e := tr.redeliver(2, "app-a", "a", d.answered+sec/1000, evRefused, d.answered+sec)
			e.deadline = d.deadline + 20*sec
		}, "late acks accepted"},
		{"a delivery after the drain with dedupe", "key", func(tr *testRun) {
			tr.redeliver(4, "app-b", "a", tr.h.drainedAt+10*sec, evRefused, tr.h.drainedAt+11*sec)
		}, "late redeliveries"},
		{"a poison record delivered after the drain with dedupe", "key", func(tr *testRun) {
			d := tr.redeliver(5, "app-b", "a", tr.h.drainedAt+10*sec, evDeadLetter, tr.h.drainedAt+11*sec)
			d.processed, d.sent = 0, 0
		}, "late redeliveries"},

		{"key order: a later record of a key processed first", "key", func(tr *testRun) {
			// 0-1 and 0-3 share key k0; 0-3 first processed before 0-1.
			tr.msg(2)[0].processed = tr.msg(0)[0].processed - 1
		}, "order violations (ordering key)"},
		{"key order allows another key first", "key", func(tr *testRun) {
			tr.msg(1)[0].processed = tr.msg(0)[0].processed - 1
		}, ""},
		{"partition order: a later record of the partition processed first", "partition", func(tr *testRun) {
			tr.msg(1)[0].processed = tr.msg(0)[0].processed - 1
		}, "order violations (ordering partition)"},
		{"no ordering: any order passes", "none", func(tr *testRun) {
			tr.msg(2)[0].processed = tr.msg(0)[0].processed - 1
		}, ""},

		{"dead letter missing", "key", func(tr *testRun) { tr.h.deadLetters = tr.h.deadLetters[1:] }, "dead letters missing"},
		{"dead letter written twice", "key", func(tr *testRun) {
			tr.h.deadLetters = append(tr.h.deadLetters, tr.h.deadLetters[0])
		}, "dead letters written twice"},
		{"dead letter of a record that is not poison", "key", func(tr *testRun) {
			tr.h.deadLetters = append(tr.h.deadLetters, deadLetterOf(tr.h.topic[2], testGroup, false))
		}, "unexpected dead letters"},
		{"dead letter of another group", "key", func(tr *testRun) {
			tr.h.deadLetters = append(tr.h.deadLetters, deadLetterOf(tr.h.topic[5], "other", false))
		}, "unexpected dead letters"},
		{"dead letter without the original message ID", "key", func(tr *testRun) {
			dl := &tr.h.deadLetters[1]
			dl.headers = dl.headers[:len(dl.headers)-2] // drops dlq-message-id
			dl.headers = append(dl.headers, header{dlqPayloadOmitted, "20000"})
		}, "malformed dead letters"},
		{"full dead letter of a record too large for the dead-letter topic", "key", func(tr *testRun) {
			tr.h.deadLetters[1] = deadLetterOf(tr.h.topic[7], testGroup, false)
		}, "malformed dead letters"},
		{"compact dead letter that keeps the record's headers", "key", func(tr *testRun) {
			dl := &tr.h.deadLetters[1]
			dl.headers = append(dl.headers, header{poisonHeader, "large"})
		}, "malformed dead letters"},
		{"a small poison record's dead letter may be compact", "key", func(tr *testRun) {
			tr.h.deadLetters[0] = deadLetterOf(tr.h.topic[5], testGroup, true)
		}, ""},
		{"commit short of the log end", "key", func(tr *testRun) { tr.h.committed[testGroup][0] = 3 }, "committed short of the log end"},

		{"a revocation while an app was slow", "key", func(tr *testRun) {
			tr.h.events = []faultEvent{{kind: faultSlowApp, start: time.Unix(0, 100), heal: time.Unix(0, 200)}}
			tr.h.groups[testGroup].revokes = []int64{150}
		}, "revocations while an app was slower"},
		{"backlog not drained, stuck", "key", func(tr *testRun) { tr.rep.drainedOK, tr.rep.undrained = false, 40 }, "not drained within 0s of the last heal (liveness): 40 records unsettled, none settled in the last 30s (stuck)"},
		{"backlog not drained, slow", "key", func(tr *testRun) {
			tr.rep.drainedOK, tr.rep.undrained, tr.rep.settledLast = false, 40, 900
		}, "40 records unsettled, still settling 30/s over the last 30s (slow, not stuck)"},

		{"without dedupe, duplicates after a gateway kill are reported only", "key", func(tr *testRun) {
			tr.cfg.dedupe = false
			d := tr.msg(2)[0]
			tr.redeliver(2, "app-b", "b", d.answered+sec, evAcked, d.answered+2*sec)
			tr.h.events = []faultEvent{{kind: faultGatewayKill}}
		}, ""},
		{"without dedupe and without a redelivering fault, duplicates fail", "key", func(tr *testRun) {
			tr.cfg.dedupe = false
			d := tr.msg(2)[0]
			tr.redeliver(2, "app-b", "b", d.answered+sec, evAcked, d.answered+2*sec)
			tr.h.events = []faultEvent{{kind: faultRedisKill}}
		}, "duplicate acks"},
		{"without dedupe, overlaps and late redeliveries are reported only", "key", func(tr *testRun) {
			tr.cfg.dedupe = false
			d := tr.msg(2)[0]
			tr.redeliver(2, "app-b", "a", d.recv, evRefused, d.recv+sec/10)
			tr.redeliver(4, "app-b", "a", tr.h.drainedAt+10*sec, evRefused, tr.h.drainedAt+11*sec)
			tr.h.events = []faultEvent{{kind: faultGatewayKill}}
		}, ""},
		{"without dedupe, a late ack accepted through the same gateway fails", "key", func(tr *testRun) {
			tr.cfg.dedupe = false
			d := tr.msg(2)[0]
			d.sent, d.answered = d.recv+25*sec, d.recv+25*sec+sec/1000
			tr.redeliver(2, "app-b", "a", d.deadline+sec/2, evRefused, d.deadline+sec)
			tr.h.events = []faultEvent{{kind: faultGatewayKill}}
		}, "late acks accepted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTestRun(12, tc.ordering)
			tc.breaks(tr)
			got := tr.check()
			t.Logf("violations: %s", got)
			switch {
			case tc.want == "" && got != "":
				t.Fatalf("violations %q, want none", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Fatalf("violations %q, want one containing %q", got, tc.want)
			}
		})
	}
}

// Finding 15 of the reliability report: librdkafka answers a write with
// offset -1 when the broker took a retry as a repeat of a write it had. The
// checker finds such a write in its partition and counts it apart.
func TestCheckerCountsWritesAcknowledgedWithoutTheirOffset(t *testing.T) {
	t.Parallel()
	tr := newTestRun(12, "key")
	tr.h.attempts[3].offset, tr.h.attempts[9].offset = -1, -1
	if got := tr.check(); got != "" {
		t.Fatalf("violations %q, want none", got)
	}
	if tr.rep.offsetUnknown != 2 || tr.rep.lostWrites != 0 {
		t.Fatalf("%d writes with offset -1 found, %d lost; want 2 and 0", tr.rep.offsetUnknown, tr.rep.lostWrites)
	}
}

// A ledger is read while its app appends to it, and an app killed in the
// middle of a line leaves it cut: the reader parses whole lines as they
// come and never a cut one, and holds end at the ack's answer or the
// deadline.
func TestLedgerIsReadIncrementallyAndSkipsALineCutByAKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger-key-a-1.log")
	apps := map[string]appInfo{"key-a": {group: testGroup, gateway: "a"}}
	ls := newLedgerSet(dir, apps, map[string]string{testGroup: "key"})
	appendLines := func(s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	appendLines("R 5 6 0\nD 10 1 m1 0 7 1 30\nD 10 2 m2 0 8 1 30\nP 10 1\nS 11 1\nA 1")
	groups, err := ls.refresh()
	if err != nil {
		t.Fatal(err)
	}
	d1 := groups[testGroup].byMsg["m1"][0]
	if d1.outcome != 0 || d1.sent != 11 || d1.processed != 10 {
		t.Fatalf("after a partial line: %+v, want processed and sent, no answer yet", d1)
	}
	appendLines("2 1\nX 12 2\nD 40 3 m1 0 7 2 60\nS 41 3\nA 4") // the app is killed here
	groups, err = ls.refresh()
	if err != nil {
		t.Fatal(err)
	}
	ds := groups[testGroup].byMsg["m1"]
	if len(ds) != 2 || ds[0].outcome != evAcked || ds[0].answered != 12 || ds[0].holdEnd(0) != 12 {
		t.Fatalf("m1 deliveries %+v, want the first acked at 12", ds)
	}
	if !ds[1].unknown(true) || ds[1].holdEnd(0) != 60 {
		t.Errorf("the second delivery's ack was cut by the kill: %+v, want of unknown fate, held to its deadline", ds[1])
	}
	if d2 := groups[testGroup].byMsg["m2"][0]; !d2.skipped || d2.holdEnd(0) != 30 {
		t.Errorf("m2: %+v, want not started, held to its deadline", d2)
	}
}

// The workload's records carry their ID, key, sequence number and poison
// kind in the value; the checker reads them back from the topic.
func TestRecordValuesRoundTrip(t *testing.T) {
	t.Parallel()
	for _, poison := range []int{poisonNone, poisonSmall, poisonLarge} {
		v := recordValue("3-17", "k005", 9, poison)
		id, key, seq, p, ok := parseValue(v)
		if !ok || id != "3-17" || key != "k005" || seq != 9 || p != poison {
			t.Errorf("parseValue(recordValue(poison %d)) = %q %q %d %d %v", poison, id, key, seq, p, ok)
		}
	}
	if poison := recordValue("1-1", "k1", 1, poisonLarge); len(poison) <= deadLetterMaxBytes {
		t.Errorf("a large poison record is %d bytes, not above the dead-letter topic's limit %d", len(poison), deadLetterMaxBytes)
	}
	for _, bad := range []string{"", "w=1 k=2", "w=1 k=2 s=x", "w=1 k=2 s=3 p=9", fmt.Sprintf("w=1 k=2 s=3 p=1 %s", "x")} {
		if _, _, _, _, ok := parseValue(bad); ok {
			t.Errorf("parseValue(%q) accepted", bad)
		}
	}
}

// An ack of unknown fate (the gateway died before it answered) settles a
// message only when the gateway's own state shows the ack was applied: its
// done marker in Redis, or the commit past the record. Without that
// evidence the message is lost; with it, it is counted apart.
func TestAnAckOfUnknownFateSettlesOnlyWhatTheGatewaysStateConfirms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		confirmed bool
		want      string
	}{
		{"not confirmed", false, "1 records lost"},
		{"confirmed", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTestRun(8, "key")
			tr.msg(3)[0].outcome = evUnknown
			tr.h.confirmed = func(group string, s *source) bool {
				return tc.confirmed && group == testGroup && s.tr.offset == 3
			}
			got := tr.check()
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("violations %q, want %q", got, tc.want)
			}
			if gr := tr.rep.groups[0]; tc.confirmed && gr.confirmedUnknown != 1 {
				t.Fatalf("confirmed unknown-fate acks = %d, want 1", gr.confirmedUnknown)
			}
		})
	}
}
