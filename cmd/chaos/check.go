package main

// The checker: the producer's log, the topic and the dead-letter topic read
// back, and the apps' ledgers, against the gateway's claims. See
// docs/reliability.md for each kind of violation.

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// history is what a run recorded, as the checker reads it.
type history struct {
	attempts    []*attempt
	topic       []topicRecord // sorted by partition, then offset
	deadLetters []topicRecord // the dead-letter topic
	groups      map[string]*groupLedger
	events      []faultEvent
	// drainedAt is when every record was seen settled in every group
	// (Unix ns); 0 if that never happened.
	drainedAt int64
	// committed is each group's committed offset per partition after the
	// gateways stopped, and ends the partitions' log end offsets; nil when
	// they could not be read.
	committed map[string]map[int32]int64
	ends      map[int32]int64
	// confirmed tells whether the gateway's own state shows a message
	// settled in a group (see settled); nil: never.
	confirmed confirmer
}

// confirmer tells whether the gateway's own state shows group's message s
// settled: with dedupe, its done marker in Redis; without, the group's
// committed offset past the record. Nothing but an Ack (or a dead letter)
// makes either happen, so when the only acks of a message have an unknown
// fate, this settles which way the gateway took them.
type confirmer func(group string, s *source) bool

// checkConfig is what a history is held against.
type checkConfig struct {
	topic  string // the workload topic (dead letters name it as their source)
	dedupe bool
	// ackTimeout is the subscriptions' ack timeout: the lease of a delivery
	// that came without an ack_deadline.
	ackTimeout time.Duration
	// Too little activity fails the run: fewer records written with an OK
	// answer than minWritten, fewer messages processed by a group than
	// minProcessed, fewer poison records in the topic than minPoison (or
	// none large, when minPoison > 0).
	minWritten, minProcessed, minPoison int
	drainLimit                          time.Duration
}

// Dead-letter headers (the gateway's contract).
const (
	dlqSourceTopic     = "dlq-source-topic"
	dlqSourcePartition = "dlq-source-partition"
	dlqSourceOffset    = "dlq-source-offset"
	dlqAttempts        = "dlq-attempts"
	dlqReason          = "dlq-reason"
	dlqGroup           = "dlq-group"
	dlqMessageID       = "dlq-message-id"
	dlqPayloadOmitted  = "dlq-payload-omitted"
)

// groupResult is the verdict of one group.
type groupResult struct {
	name, ordering string
	processed      int // P events
	messages       int // distinct message IDs processed
	lost           int // records (not poison) without an OK ack
	lostUnknown    int // of which some ack had an unknown fate
	duplicates     int // OK acks beyond one per message ID
	afterAck       int // deliveries sent after the message's first OK ack
	overlaps       int // pairs of deliveries of one message held at once
	lateAcks       int // OK acks answered after another delivery of the message was sent
	lateAcksOther  int // of which the other delivery came through another gateway
	late           int // deliveries sent after the drain
	reprocessed    int // P events beyond one per message (retries after nack, crash, disconnect)
	orderViol      int
	phantom        int // deliveries that are not a topic record of their message ID
	ackUnknown     int // deliveries whose ack's fate is unknown
	// confirmedUnknown are messages whose only acks had an unknown fate
	// and which the gateway's state shows settled (see confirmer).
	confirmedUnknown int
	refused          int
	invalidAcks      int // acks of IDs the gateway issued, refused as invalid
	nacked           int
	skipped          int // deliveries too close to their deadline to start
	noDeadline       int // deliveries without an ack_deadline
	dlFull           int // dead letters in full
	dlCompact        int // compact dead letters
	dlMissing        int
	dlTwice          int
	commitBehind     int // partitions whose committed offset is short of the log end
	examples         examples
}

// report is the whole verdict.
type report struct {
	runID      string
	seed       uint64
	profile    string
	dedupe     bool
	attempts   map[outcome]int
	retried    int // records with more than one try
	topicLen   int
	poison     [3]int // poison records in the topic, by kind
	lostWrites int    // ok produces missing from the topic, or elsewhere than reported
	// offsetUnknown counts ok produces answered with offset -1 (written,
	// offset unknown: librdkafka's answer when the broker took a retry as
	// a repeat of a write it had) that are in the topic in the partition
	// reported; those not found there count as lost writes.
	offsetUnknown int
	writtenOK     map[outcome]int
	twice         int // idempotency keys (workload IDs) written more than once
	phantom       int // topic records no attempt explains
	topicOrder    int // per-key sequence numbers out of order in the topic
	dlUnexpect    int // dead letters of records that are not poison, or of no record
	dlBad         int // dead letters without the contract's headers or content
	groups        []*groupResult
	faults        map[string]int
	slowRebal     int
	drainedOK     bool
	recovery      time.Duration
	// drainAfterLoad is the drain measured from the end of the load.
	drainAfterLoad time.Duration
	drainLimit     time.Duration
	// Not drained: what was left unsettled, and how many records the
	// groups settled in the last drainWindow of the wait (zero: stuck;
	// more: slow).
	undrained, settledLast int
	lateWindow             time.Duration
	wall                   time.Duration
	violations             []string
	examples               examples
}

// drainWindow is how far back a failed drain looks to tell a stuck
// backlog from a slow one.
const drainWindow = 30 * time.Second

// drainProgress says, for a backlog not drained, whether it was still
// shrinking when the wait ended.
func (r *report) drainProgress() string {
	if r.settledLast <= 0 {
		return fmt.Sprintf("%d records unsettled, none settled in the last %v (stuck)", r.undrained, drainWindow)
	}
	return fmt.Sprintf("%d records unsettled, still settling %.0f/s over the last %v (slow, not stuck)",
		r.undrained, float64(r.settledLast)/drainWindow.Seconds(), drainWindow)
}

func (r *report) violate(format string, args ...any) {
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

// examples keeps a few examples of each kind of finding.
type examples map[string][]string

func example(ex examples, kind, format string, args ...any) {
	if len(ex[kind]) < 3 {
		ex[kind] = append(ex[kind], fmt.Sprintf(format, args...))
	}
}

// print writes them, by kind.
func (ex examples) print(w io.Writer, prefix string) {
	for _, k := range slices.Sorted(maps.Keys(ex)) {
		for _, e := range ex[k] {
			fmt.Fprintf(w, "  example%s (%s): %s\n", prefix, k, e)
		}
	}
}

type loc struct {
	p int32
	o int64
}

func (l loc) String() string { return fmt.Sprintf("%d@%d", l.p, l.o) }

// source is what the checker knows of one topic record.
type source struct {
	tr     topicRecord
	id     string // workload ID (its idempotency key)
	key    string
	poison int
}

// topicIndex indexes the topic read back.
type topicIndex struct {
	byLoc map[loc]*source
	byMsg map[string][]*source // by message ID; more than one: written twice
	order []*source            // partition, offset order
}

func indexTopic(topic []topicRecord) *topicIndex {
	ix := &topicIndex{byLoc: map[loc]*source{}, byMsg: map[string][]*source{}}
	for _, tr := range topic {
		s := &source{tr: tr}
		s.id, s.key, _, s.poison, _ = parseValue(tr.value)
		ix.byLoc[loc{tr.partition, tr.offset}] = s
		ix.byMsg[tr.messageID] = append(ix.byMsg[tr.messageID], s)
		ix.order = append(ix.order, s)
	}
	return ix
}

// settled reports whether a group has settled a message: an OK ack, or for
// a poison record a dead letter of the group in the dead-letter topic. An
// ack of unknown fate (its answer never came: the app or the gateway died)
// never settles a message by itself; byState reports the messages settled
// only because the gateway's state confirms that such an ack was applied.
func settled(gl *groupLedger, s *source, dead map[string]bool, confirmed confirmer) (ok, byState bool) {
	msg := s.tr.messageID
	if s.poison != poisonNone {
		return dead[gl.name+"\x00"+msg], false
	}
	unknown := false
	for _, d := range gl.byMsg[msg] {
		if d.acked() {
			return true, false
		}
		unknown = unknown || d.unknown(true)
	}
	if unknown && confirmed != nil && confirmed(gl.name, s) {
		return true, true
	}
	return false, false
}

// deadLettered returns the set of group+"\x00"+message ID that have a dead
// letter whose source is a topic record of that message.
func deadLettered(dls []topicRecord, ix *topicIndex) map[string]bool {
	out := map[string]bool{}
	for _, dl := range dls {
		h := dl.header
		p, err1 := strconv.ParseInt(h(dlqSourcePartition), 10, 32)
		o, err2 := strconv.ParseInt(h(dlqSourceOffset), 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if s := ix.byLoc[loc{int32(p), o}]; s != nil {
			out[h(dlqGroup)+"\x00"+s.tr.messageID] = true
		}
	}
	return out
}

// drainTracker tells when every record of the topic is settled in every
// group; each call looks only at what was unsettled the last time.
type drainTracker struct {
	ix        *topicIndex
	pending   map[string][]string // group → message IDs not yet settled
	confirmed confirmer
}

func newDrainTracker(ix *topicIndex, groups []string) *drainTracker {
	dt := &drainTracker{ix: ix, pending: map[string][]string{}}
	for _, g := range groups {
		for msg := range ix.byMsg {
			dt.pending[g] = append(dt.pending[g], msg)
		}
	}
	return dt
}

// unsettled returns how many (group, message) pairs are not settled yet.
func (dt *drainTracker) unsettled(groups map[string]*groupLedger, dls []topicRecord) int {
	dead := deadLettered(dls, dt.ix)
	n := 0
	for g, msgs := range dt.pending {
		gl := groups[g]
		left := msgs[:0]
		for _, msg := range msgs {
			if ok, _ := settled(gl, dt.ix.byMsg[msg][0], dead, dt.confirmed); !ok {
				left = append(left, msg)
			}
		}
		dt.pending[g] = left
		n += len(left)
	}
	return n
}

// check holds the history against the claims and fills r.
func check(r *report, cfg checkConfig, h *history) {
	r.dedupe, r.drainLimit = cfg.dedupe, cfg.drainLimit
	r.examples = examples{}
	r.attempts = map[outcome]int{}
	r.writtenOK = map[outcome]int{}
	byID := map[string]*attempt{}
	for _, a := range h.attempts {
		r.attempts[a.outcome]++
		if a.tries > 1 {
			r.retried++
		}
		byID[a.id] = a
	}
	ix := indexTopic(h.topic)
	r.topicLen = len(h.topic)

	// The topic against the producer's log.
	inTopic := map[string]*source{}  // the first copy of each workload ID
	copies := map[string][]*source{} // every copy
	type pk struct {
		p int32
		k string
	}
	lastSeq := map[pk]int{}
	for _, s := range ix.order {
		tr := s.tr
		_, key, seq, poison, ok := parseValue(tr.value)
		a := byID[s.id]
		if !ok || a == nil || a.key != key || a.seq != seq || a.poison != poison || tr.key != key {
			r.phantom++
			example(r.examples, "phantom", "phantom record %d@%d value %.60q", tr.partition, tr.offset, tr.value)
			continue
		}
		if tr.messageID != s.id {
			r.phantom++
			example(r.examples, "phantom", "record %s at %d@%d has message ID %q, not its idempotency key", s.id, tr.partition, tr.offset, tr.messageID)
			continue
		}
		copies[s.id] = append(copies[s.id], s)
		if first, dup := inTopic[s.id]; dup {
			r.twice++
			example(r.examples, "written twice", "idempotency key %s written twice: at %d@%d and %d@%d", s.id, first.tr.partition, first.tr.offset, tr.partition, tr.offset)
			continue
		}
		inTopic[s.id] = s
		r.writtenOK[a.outcome]++
		r.poison[poison]++
		k := pk{tr.partition, key}
		if seq <= lastSeq[k] {
			r.topicOrder++
			example(r.examples, "topic order", "key %s: seq %d at %d@%d after seq %d", key, seq, tr.partition, tr.offset, lastSeq[k])
		}
		lastSeq[k] = max(lastSeq[k], seq)
	}
	for _, a := range h.attempts {
		if a.outcome != outcomeOK {
			continue
		}
		cs := copies[a.id]
		at := slices.IndexFunc(cs, func(s *source) bool {
			return s.tr.partition == a.partition && (s.tr.offset == a.offset || a.offset == -1) && s.tr.messageID == a.messageID
		})
		if a.offset == -1 && at >= 0 {
			r.offsetUnknown++
		}
		switch {
		case len(cs) == 0:
			r.lostWrites++
			example(r.examples, "lost write", "acknowledged write %s (%d@%d) is not in the topic", a.id, a.partition, a.offset)
		case at < 0:
			r.lostWrites++
			example(r.examples, "lost write", "acknowledged write %s reported at %d@%d %s, found at %d@%d %s", a.id, a.partition, a.offset, a.messageID, cs[0].tr.partition, cs[0].tr.offset, cs[0].tr.messageID)
		}
	}

	redeliveryExpected := false
	for _, ev := range h.events {
		redeliveryExpected = redeliveryExpected || slices.Contains(mayRedeliver, ev.kind)
	}
	dls := checkDeadLetters(r, cfg, h, ix)
	ackTimeout := int64(cfg.ackTimeout)

	names := make([]string, 0, len(h.groups))
	for g := range h.groups {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		gl := h.groups[g]
		gr := &groupResult{name: g, ordering: gl.ordering, examples: examples{}}
		r.groups = append(r.groups, gr)
		firstP := map[loc]int64{}
		for msg, ds := range gl.byMsg {
			srcs := ix.byMsg[msg]
			var firstA int64
			acks, processed := 0, 0
			for _, d := range ds {
				l := loc{d.partition, d.offset}
				if !slices.ContainsFunc(srcs, func(s *source) bool { return s.tr.partition == d.partition && s.tr.offset == d.offset }) {
					gr.phantom++
					example(gr.examples, "phantom ledger", "delivery of message %s at %v is not that topic record", msg, l)
				}
				if d.deadline == 0 {
					gr.noDeadline++
				}
				if d.skipped {
					gr.skipped++
				}
				if d.processed != 0 {
					processed++
					if t, ok := firstP[l]; !ok || d.processed < t {
						firstP[l] = d.processed
					}
				}
				if d.acked() {
					acks++
					if firstA == 0 || d.answered < firstA {
						firstA = d.answered
					}
				}
				switch {
				case d.unknown(true):
					gr.ackUnknown++
				case d.outcome == evRefused:
					gr.refused++
				case d.outcome == evInvalid:
					gr.invalidAcks++
				case d.outcome == evNacked:
					gr.nacked++
				}
				if h.drainedAt != 0 && d.sentAt(ackTimeout) > h.drainedAt {
					gr.late++
					example(gr.examples, "late redelivery", "message %s (%v) delivered %.3fs after the drain (attempt %d, app %s)", msg, l, float64(d.sentAt(ackTimeout)-h.drainedAt)/1e9, d.attempt, d.app)
				}
			}
			gr.processed += processed
			if processed > 0 {
				gr.messages++
				gr.reprocessed += processed - 1
			}
			if acks > 1 {
				gr.duplicates += acks - 1
				example(gr.examples, "duplicate", "message %s acked OK %d times", msg, acks)
			}
			if firstA != 0 {
				for _, d := range ds {
					if d.sentAt(ackTimeout) > firstA {
						gr.afterAck++
						example(gr.examples, "after ack", "message %s delivered again %.3fs after its OK ack (attempt %d, app %s)", msg, float64(d.sentAt(ackTimeout)-firstA)/1e9, d.attempt, d.app)
					}
				}
			}
			if len(ds) > 1 {
				gr.overlaps += overlaps(gr, msg, ds, ackTimeout)
				for _, d := range ds {
					if !d.acked() {
						continue
					}
					for _, e := range ds {
						if sent := e.sentAt(ackTimeout); e != d && sent > d.sentAt(ackTimeout) && sent < d.answered {
							gr.lateAcks++
							if e.gateway != d.gateway {
								gr.lateAcksOther++
							}
							example(gr.examples, "late ack", "message %s: the ack of the delivery to %s (attempt %d) answered OK %.3fs after a delivery to %s (attempt %d) was sent", msg, d.app, d.attempt, float64(d.answered-sent)/1e9, e.app, e.attempt)
							break
						}
					}
				}
			}
		}
		for msg, srcs := range ix.byMsg {
			if srcs[0].poison != poisonNone {
				continue // settled by its dead letter: see checkDeadLetters
			}
			ok, byState := settled(gl, srcs[0], nil, h.confirmed)
			if byState {
				gr.confirmedUnknown++
			}
			if !ok {
				gr.lost++
				s := srcs[0]
				unknown := slices.ContainsFunc(gl.byMsg[msg], func(d *delivery) bool { return d.unknown(true) })
				if unknown {
					gr.lostUnknown++
				}
				example(gr.examples, "lost", "record %v (%s) never acked OK (acks of unknown fate: %v)", loc{s.tr.partition, s.tr.offset}, s.id, unknown)
			}
		}
		gr.orderViol = orderViolations(gr, ix, firstP)
		for _, ev := range h.events {
			if ev.kind != faultSlowApp && ev.kind != faultSlowAppLease {
				continue
			}
			for _, t := range gl.revokes {
				if t >= ev.start.UnixNano() && t <= ev.heal.UnixNano() {
					r.slowRebal++
				}
			}
		}
		if d := dls[g]; d != nil {
			gr.dlFull, gr.dlCompact, gr.dlMissing, gr.dlTwice = d.full, d.compact, d.missing, d.twice
		}
		if h.committed != nil {
			for p, end := range h.ends {
				if c, ok := h.committed[g][p]; end > 0 && (!ok || c < end) {
					gr.commitBehind++
					example(gr.examples, "wedge", "partition %d committed at %d, log end %d (committed: %v)", p, c, end, ok)
				}
			}
		}
	}

	// Verdicts.
	if r.attempts[outcomeOK] < cfg.minWritten {
		r.violate("too little activity: %d records written with an OK answer (want at least %d)", r.attempts[outcomeOK], cfg.minWritten)
	}
	if cfg.minPoison > 0 && (r.poison[poisonSmall]+r.poison[poisonLarge] < cfg.minPoison || r.poison[poisonLarge] == 0) {
		r.violate("too little activity: %d poison records in the topic, %d of them large (want at least %d, and a large one)", r.poison[poisonSmall]+r.poison[poisonLarge], r.poison[poisonLarge], cfg.minPoison)
	}
	for _, gr := range r.groups {
		if gr.messages < cfg.minProcessed {
			r.violate("too little activity: group %s processed %d messages (want at least %d)", gr.name, gr.messages, cfg.minProcessed)
		}
	}
	if r.lostWrites > 0 {
		r.violate("%d acknowledged writes missing from the topic (lost writes)", r.lostWrites)
	}
	if r.phantom > 0 {
		r.violate("%d phantom records in the topic", r.phantom)
	}
	if r.twice > 0 {
		r.violate("%d idempotency keys written twice", r.twice)
	}
	if r.topicOrder > 0 {
		r.violate("%d per-key sequence numbers out of order in the topic", r.topicOrder)
	}
	if r.dlUnexpect > 0 {
		r.violate("%d unexpected dead letters (of records that are not poison, or of no record)", r.dlUnexpect)
	}
	if r.dlBad > 0 {
		r.violate("%d malformed dead letters", r.dlBad)
	}
	for _, gr := range r.groups {
		if gr.lost > 0 {
			r.violate("group %s: %d records lost (never acked OK; %d of them with acks of unknown fate only)", gr.name, gr.lost, gr.lostUnknown)
		}
		if gr.dlMissing > 0 {
			r.violate("group %s: %d dead letters missing", gr.name, gr.dlMissing)
		}
		if gr.dlTwice > 0 {
			r.violate("group %s: %d dead letters written twice", gr.name, gr.dlTwice)
		}
		if gr.phantom > 0 {
			r.violate("group %s: %d phantom ledger entries", gr.name, gr.phantom)
		}
		if gr.orderViol > 0 {
			r.violate("group %s: %d order violations (ordering %s)", gr.name, gr.orderViol, gr.ordering)
		}
		if gr.duplicates > 0 && (r.dedupe || !redeliveryExpected) {
			r.violate("group %s: %d duplicate acks (a message acked OK more than once)", gr.name, gr.duplicates)
		}
		if gr.afterAck > 0 && (r.dedupe || !redeliveryExpected) {
			r.violate("group %s: %d deliveries of messages already acked OK (delivered again after an OK ack)", gr.name, gr.afterAck)
		}
		if gr.overlaps > 0 && r.dedupe {
			r.violate("group %s: %d overlaps (two holds of one message at once)", gr.name, gr.overlaps)
		}
		if n := gr.lateAcks - gr.lateAcksOther; n > 0 || gr.lateAcksOther > 0 && (r.dedupe || !redeliveryExpected) {
			r.violate("group %s: %d late acks accepted (answered OK after another delivery of the message was sent; %d of those through another gateway)", gr.name, gr.lateAcks, gr.lateAcksOther)
		}
		if gr.late > 0 && r.dedupe {
			r.violate("group %s: %d late redeliveries (delivered after the drain)", gr.name, gr.late)
		}
		if gr.commitBehind > 0 {
			r.violate("group %s: %d partitions committed short of the log end (wedged)", gr.name, gr.commitBehind)
		}
	}
	if r.slowRebal > 0 {
		r.violate("%d revocations while an app was slower than max.poll.interval.ms", r.slowRebal)
	}
	if !r.drainedOK {
		r.violate("backlog not drained within %v of the last heal (liveness): %s", r.drainLimit, r.drainProgress())
	}
	r.faults = map[string]int{}
	for _, ev := range h.events {
		r.faults[ev.kind]++
	}
}

// overlaps counts the pairs of deliveries of one message whose holds
// intersect: one received before another's hold ended, while its own hold
// had not ended. A delivery read only after its deadline holds nothing
// (its lease was over before the app saw it; the next delivery may have
// begun meanwhile). A skipped delivery read in time still holds to its
// deadline: the gateway cannot know the app skipped it, and must not hand
// the message to anyone else before then.
func overlaps(gr *groupResult, msg string, ds []*delivery, ackTimeout int64) int {
	byRecv := slices.Clone(ds)
	slices.SortFunc(byRecv, func(a, b *delivery) int { return int(a.recv - b.recv) })
	n := 0
	for i, d := range byRecv {
		end := d.holdEnd(ackTimeout)
		for _, e := range byRecv[i+1:] {
			if e.recv < end && e.recv < e.holdEnd(ackTimeout) {
				n++
				example(gr.examples, "overlap", "message %s held at once by %s (attempt %d, %s) and %s (attempt %d) for %.3fs", msg, d.app, d.attempt, holdName(d), e.app, e.attempt, float64(end-e.recv)/1e9)
			}
		}
	}
	return n
}

func holdName(d *delivery) string {
	switch {
	case d.acked():
		return "acked OK"
	case d.outcome == evRefused:
		return "ack refused"
	case d.outcome == 0 && d.sent == 0:
		return "never acked"
	case d.unknown(true):
		return "ack of unknown fate"
	}
	return "answered " + string(d.outcome)
}

// orderViolations checks that each record was processed for the first time
// only after the earlier records it must follow were: those of its key
// (ORDERING_KEY), or of its partition (ORDERING_PARTITION).
func orderViolations(gr *groupResult, ix *topicIndex, firstP map[loc]int64) int {
	if gr.ordering != "key" && gr.ordering != "partition" {
		return 0
	}
	type scope struct {
		p int32
		k string
	}
	latest := map[scope]int64{}
	n := 0
	for _, s := range ix.order { // offset order within each partition
		l := loc{s.tr.partition, s.tr.offset}
		t, ok := firstP[l]
		if !ok {
			continue
		}
		sc := scope{p: l.p}
		if gr.ordering == "key" {
			sc.k = s.tr.key
		}
		if t < latest[sc] {
			n++
			example(gr.examples, "order", "%s order: %v (key %s) first processed %.3fs before an earlier record of its %s", gr.ordering, l, s.tr.key, float64(latest[sc]-t)/1e9, gr.ordering)
		}
		latest[sc] = max(latest[sc], t)
	}
	return n
}

// dlCounts is what one group's dead letters look like.
type dlCounts struct{ full, compact, missing, twice int }

// checkDeadLetters holds the dead-letter topic against the contract: one
// dead letter per group and poison record, none of another record, each
// with the dlq-* headers; a full one with the record's key, value and
// headers, a compact one (dlq-payload-omitted) with none of them. A large
// poison record's dead letter must be compact.
func checkDeadLetters(r *report, cfg checkConfig, h *history, ix *topicIndex) map[string]*dlCounts {
	out := map[string]*dlCounts{}
	for g := range h.groups {
		out[g] = &dlCounts{}
	}
	count := map[string]int{} // group + location
	for _, dl := range h.deadLetters {
		at := loc{dl.partition, dl.offset}
		hd := dl.header
		g := hd(dlqGroup)
		p, err1 := strconv.ParseInt(hd(dlqSourcePartition), 10, 32)
		o, err2 := strconv.ParseInt(hd(dlqSourceOffset), 10, 64)
		src := ix.byLoc[loc{int32(p), o}]
		switch {
		case out[g] == nil || err1 != nil || err2 != nil || hd(dlqSourceTopic) != cfg.topic || src == nil:
			r.dlUnexpect++
			example(r.examples, "unexpected dead letter", "dead letter %v of group %q names no record of the topic (%s %s@%s)", at, g, hd(dlqSourceTopic), hd(dlqSourcePartition), hd(dlqSourceOffset))
			continue
		case src.poison == poisonNone:
			r.dlUnexpect++
			example(r.examples, "unexpected dead letter", "dead letter %v of group %s: record %d@%d is not poison", at, g, p, o)
			continue
		}
		count[g+"\x00"+loc{int32(p), o}.String()]++
		if why := badDeadLetter(dl, src); why != "" {
			r.dlBad++
			example(r.examples, "malformed dead letter", "dead letter %v of group %s for %d@%d: %s", at, g, p, o, why)
			continue
		}
		if dl.has(dlqPayloadOmitted) {
			out[g].compact++
		} else {
			out[g].full++
		}
	}
	for g, c := range out {
		for msg, srcs := range ix.byMsg {
			if srcs[0].poison == poisonNone {
				continue
			}
			n := 0
			for _, s := range srcs {
				k := count[g+"\x00"+loc{s.tr.partition, s.tr.offset}.String()]
				n += k
				if k > 1 {
					c.twice += k - 1
					example(r.examples, "dead letter twice", "group %s: %d dead letters of %d@%d (%s)", g, k, s.tr.partition, s.tr.offset, msg)
				}
			}
			if n == 0 {
				c.missing++
				example(r.examples, "dead letter missing", "group %s: no dead letter of poison record %d@%d (%s, %s)", g, srcs[0].tr.partition, srcs[0].tr.offset, msg, poisonName(srcs[0].poison))
			}
		}
	}
	return out
}

// badDeadLetter says what is wrong with a dead letter of src, or "".
func badDeadLetter(dl topicRecord, src *source) string {
	for _, k := range []string{dlqAttempts, dlqReason} {
		if !dl.has(k) {
			return "no " + k + " header"
		}
	}
	if got := dl.header(dlqMessageID); got != src.tr.messageID {
		return fmt.Sprintf("%s %q, want %q", dlqMessageID, got, src.tr.messageID)
	}
	if dl.has(dlqPayloadOmitted) {
		n, err := strconv.Atoi(dl.header(dlqPayloadOmitted))
		switch {
		case err != nil || n < len(src.tr.value):
			return fmt.Sprintf("compact, %s %q below the value's %d bytes", dlqPayloadOmitted, dl.header(dlqPayloadOmitted), len(src.tr.value))
		case dl.key != "" || dl.value != "":
			return "compact, but with a key or value"
		}
		for _, hd := range dl.headers {
			if !strings.HasPrefix(hd.key, "dlq-") {
				return "compact, but with header " + hd.key
			}
		}
		return ""
	}
	switch {
	case src.poison == poisonLarge:
		return "a full dead letter of a record larger than the dead-letter topic accepts"
	case dl.key != src.tr.key || dl.value != src.tr.value:
		return "full, but its key or value differs from the record's"
	case dl.header(poisonHeader) != src.tr.header(poisonHeader):
		return "full, but without the record's headers"
	}
	return ""
}

// print writes the summary table.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nchaos summary: run %s, profile %s, dedupe %v, seed %d, wall time %s\n\n", r.runID, r.profile, r.dedupe, r.seed, r.wall.Round(time.Second))
	row := func(k string, v any) { fmt.Fprintf(w, "  %-52s %v\n", k, v) }
	total := r.attempts[outcomeOK] + r.attempts[outcomeError] + r.attempts[outcomeUnknown]
	row("records attempted", total)
	row("  ok / error / unknown", fmt.Sprintf("%d / %d / %d", r.attempts[outcomeOK], r.attempts[outcomeError], r.attempts[outcomeUnknown]))
	row("  sent more than once (same idempotency key)", r.retried)
	row("records in the topic", r.topicLen)
	row("  of which error / unknown outcomes", fmt.Sprintf("%d / %d", r.writtenOK[outcomeError], r.writtenOK[outcomeUnknown]))
	row("  poison (small / large)", fmt.Sprintf("%d / %d", r.poison[poisonSmall], r.poison[poisonLarge]))
	kinds := make([]string, 0, len(r.faults))
	nf := 0
	for k, n := range r.faults {
		kinds = append(kinds, k)
		nf += n
	}
	slices.Sort(kinds)
	row("faults injected", fmt.Sprintf("%d of %d kinds", nf, len(kinds)))
	for _, k := range kinds {
		row("  "+k, r.faults[k])
	}
	row("lost acknowledged writes", r.lostWrites)
	row("  acknowledged with offset -1, found in their partition", r.offsetUnknown)
	row("idempotency keys written twice", r.twice)
	row("phantom records", r.phantom)
	row("topic order violations (per-key seq)", r.topicOrder)
	row("dead letters unexpected / malformed", fmt.Sprintf("%d / %d", r.dlUnexpect, r.dlBad))
	for _, g := range r.groups {
		fmt.Fprintf(w, "  group %s (ordering %s)\n", g.name, g.ordering)
		row("    messages processed (events)", fmt.Sprintf("%d (%d)", g.messages, g.processed))
		row("    lost (of which acks of unknown fate only)", fmt.Sprintf("%d (%d)", g.lost, g.lostUnknown))
		row("    duplicate acks / delivered after an OK ack", fmt.Sprintf("%d / %d", g.duplicates, g.afterAck))
		row("    overlaps / late acks accepted (other gateway)", fmt.Sprintf("%d / %d (%d)", g.overlaps, g.lateAcks, g.lateAcksOther))
		row("    late redeliveries (after the drain)", g.late)
		if g.ordering != "none" {
			row("    order violations", g.orderViol)
		}
		row("    phantom ledger entries", g.phantom)
		row("    dead letters full / compact / missing / twice", fmt.Sprintf("%d / %d / %d / %d", g.dlFull, g.dlCompact, g.dlMissing, g.dlTwice))
		row("    partitions committed short of the end", g.commitBehind)
		row("    retried (nack/crash/disconnect/lease)", g.reprocessed)
		row("    acks refused / of unknown fate", fmt.Sprintf("%d / %d", g.refused, g.ackUnknown))
		row("    settled by an ack of unknown fate (confirmed by the gateway's state)", strconv.Itoa(g.confirmedUnknown))
		row("    acks refused as invalid", g.invalidAcks)
		row("    nacks / not started (deadline too close)", fmt.Sprintf("%d / %d", g.nacked, g.skipped))
		if g.noDeadline > 0 {
			row("    deliveries without ack_deadline", g.noDeadline)
		}
	}
	row("revocations during slow-app, slow-app-lease", r.slowRebal)
	if r.drainedOK {
		row("recovery (last heal to drained)", fmt.Sprintf("%.1fs (limit %s)", r.recovery.Seconds(), r.drainLimit))
		row("  drained after the load stopped", fmt.Sprintf("%.1fs", r.drainAfterLoad.Seconds()))
		row("  watched for late redeliveries", r.lateWindow)
	} else {
		row("recovery (last heal to drained)", "NOT DRAINED within "+r.drainLimit.String())
		row("  at the end", r.drainProgress())
	}
	for _, g := range r.groups {
		g.examples.print(w, " "+g.name)
	}
	r.examples.print(w, "")
	if len(r.violations) == 0 {
		fmt.Fprintf(w, "\nRESULT: PASS (no violation)\n")
		return
	}
	fmt.Fprintf(w, "\nRESULT: FAIL\n")
	for _, v := range r.violations {
		fmt.Fprintf(w, "  violation: %s\n", v)
	}
}
