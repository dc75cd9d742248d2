package main

// The checker: the topic read back, the producer's log and the apps'
// ledgers, against the claims: no loss, no duplicate effect, per-key order,
// no phantom, and a bounded drain after the last fault.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// msgLedger is what a group's apps did with one message ID.
type msgLedger struct {
	processed  []int64 // P times
	firstP     int64
	firstA     int64
	acked      int // A
	unknown    int // U
	refused    int // F
	invalid    int // I
	nacked     int // N
	wrongPlace int // P events whose partition/offset is not the topic's for this ID
	partition  int32
	offset     int64
}

// groupLedger is one consumer group's ledger, from all its apps' files.
type groupLedger struct {
	msgs    map[string]*msgLedger
	assigns []int64 // R times
	revokes []int64 // R times with partitions revoked: a rebalance took some away
}

// readLedgers parses the ledger files of the given apps (by name prefix
// "ledger-<app>-"), grouped by each app's group.
func readLedgers(dir string, appGroup map[string]string) (map[string]*groupLedger, error) {
	out := map[string]*groupLedger{}
	for _, g := range appGroup {
		if out[g] == nil {
			out[g] = &groupLedger{msgs: map[string]*msgLedger{}}
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "ledger-*.log"))
	if err != nil {
		return nil, err
	}
	for _, path := range files {
		name := strings.TrimPrefix(filepath.Base(path), "ledger-")
		name = name[:strings.LastIndexByte(name, '-')]
		gl := out[appGroup[name]]
		if gl == nil {
			return nil, fmt.Errorf("ledger %s: unknown app %q", path, name)
		}
		if err := readLedger(path, gl); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readLedger(path string, gl *groupLedger) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	// Acks sent by this run of the app without an outcome: the app died
	// during the call, so whether the gateway applied them is unknown.
	sent := map[string]*msgLedger{}
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			// A last line without newline was cut by a kill: skip it.
			for _, m := range sent {
				m.unknown++
			}
			return nil
		}
		if err != nil {
			return err
		}
		fs := strings.Fields(line)
		if len(fs) < 2 {
			return fmt.Errorf("ledger %s: bad line %q", path, line)
		}
		t, err := strconv.ParseInt(fs[1], 10, 64)
		if err != nil {
			return fmt.Errorf("ledger %s: bad line %q", path, line)
		}
		if fs[0][0] == evAssign {
			// A stream gets the current assignment when it subscribes;
			// only revocations tell of a rebalance.
			gl.assigns = append(gl.assigns, t)
			if len(fs) == 4 && fs[3] != "0" {
				gl.revokes = append(gl.revokes, t)
			}
			continue
		}
		if len(fs) < 5 {
			return fmt.Errorf("ledger %s: bad line %q", path, line)
		}
		m := gl.msgs[fs[2]]
		if m == nil {
			p, _ := strconv.ParseInt(fs[3], 10, 32)
			o, _ := strconv.ParseInt(fs[4], 10, 64)
			m = &msgLedger{partition: int32(p), offset: o}
			gl.msgs[fs[2]] = m
		}
		if fs[3] != strconv.Itoa(int(m.partition)) || fs[4] != strconv.FormatInt(m.offset, 10) {
			m.wrongPlace++
		}
		switch fs[0][0] {
		case evAckSent:
			sent[fs[2]] = m
		case evProcessed:
			m.processed = append(m.processed, t)
			if m.firstP == 0 || t < m.firstP {
				m.firstP = t
			}
		case evAcked:
			delete(sent, fs[2])
			m.acked++
			if m.firstA == 0 || t < m.firstA {
				m.firstA = t
			}
		case evUnknown:
			delete(sent, fs[2])
			m.unknown++
		case evRefused:
			delete(sent, fs[2])
			m.refused++
		case evInvalid:
			delete(sent, fs[2])
			m.invalid++
		case evNacked:
			m.nacked++
		}
	}
}

// drained reports whether every topic record has a settled ack (OK, or of
// unknown fate) in every group, and how many do not.
func drained(topic []topicRecord, ledgers map[string]*groupLedger) (bool, int) {
	missing := 0
	for _, gl := range ledgers {
		for _, r := range topic {
			m := gl.msgs[r.messageID]
			if m == nil || m.acked+m.unknown == 0 {
				missing++
			}
		}
	}
	return missing == 0, missing
}

// groupResult is the verdict of one group.
type groupResult struct {
	name, ordering string
	processed      int // P events
	messages       int // distinct message IDs processed
	lost           int // topic records never processed with a settled ack
	duplicates     int // extra successful acks of a message ID
	afterAck       int // deliveries processed after the message's first successful ack
	reprocessed    int // P events beyond one per message (retries after nack, crash, disconnect)
	orderViol      int
	phantom        int
	ackUnknown     int
	refused        int
	invalidAcks    int // acks of IDs the gateway issued, refused as invalid
	nacked         int
	examples       []string
}

// report is the whole verdict.
type report struct {
	runID      string
	seed       uint64
	profile    string
	dedupe     bool
	attempts   map[outcome]int
	topicLen   int
	lostWrites int // ok produces missing from the topic, or elsewhere than reported
	writtenOK  map[outcome]int
	twice      int // workload IDs written more than once
	phantom    int // topic records no attempt explains
	topicOrder int // per-key sequence numbers out of order in the topic
	groups     []*groupResult
	faults     map[string]int
	slowRebal  int
	drainedOK  bool
	recovery   time.Duration
	// drainAfterLoad is the drain measured from the end of the load.
	drainAfterLoad time.Duration
	drainLimit     time.Duration
	wall           time.Duration
	violations     []string
	examples       []string
}

func (r *report) violate(format string, args ...any) {
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

func example(list *[]string, format string, args ...any) {
	if len(*list) < 5 {
		*list = append(*list, fmt.Sprintf(format, args...))
	}
}

// check compares the producer's log, the topic and the ledgers.
func check(r *report, attempts []*attempt, topic []topicRecord, ledgers map[string]*groupLedger, orderings map[string]string, events []faultEvent) {
	r.attempts = map[outcome]int{}
	r.writtenOK = map[outcome]int{}
	byID := map[string]*attempt{}
	for _, a := range attempts {
		r.attempts[a.outcome]++
		byID[a.id] = a
	}
	r.topicLen = len(topic)
	inTopic := map[string]topicRecord{}
	type pk struct {
		p int32
		k string
	}
	lastSeq := map[pk]int{}
	for _, tr := range topic {
		id, key, seq, ok := parseValue(tr.value)
		a := byID[id]
		if !ok || a == nil || a.key != key || a.seq != seq || tr.key != key {
			r.phantom++
			example(&r.examples, "phantom record %d@%d value %q", tr.partition, tr.offset, tr.value)
			continue
		}
		if _, dup := inTopic[id]; dup {
			r.twice++
			example(&r.examples, "workload record %s written twice (again at %d@%d)", id, tr.partition, tr.offset)
			continue
		}
		inTopic[id] = tr
		r.writtenOK[a.outcome]++
		k := pk{tr.partition, key}
		if seq <= lastSeq[k] {
			r.topicOrder++
			example(&r.examples, "key %s: seq %d at %d@%d after seq %d", key, seq, tr.partition, tr.offset, lastSeq[k])
		}
		lastSeq[k] = max(lastSeq[k], seq)
	}
	for _, a := range attempts {
		if a.outcome != outcomeOK {
			continue
		}
		tr, ok := inTopic[a.id]
		switch {
		case !ok:
			r.lostWrites++
			example(&r.examples, "acknowledged write %s (%d@%d) is not in the topic", a.id, a.partition, a.offset)
		case tr.partition != a.partition || tr.offset != a.offset || tr.messageID != a.messageID:
			r.lostWrites++
			example(&r.examples, "acknowledged write %s reported at %d@%d %s, found at %d@%d %s", a.id, a.partition, a.offset, a.messageID, tr.partition, tr.offset, tr.messageID)
		}
	}

	byMsg := map[string]topicRecord{}
	for _, tr := range topic {
		byMsg[tr.messageID] = tr
	}
	names := make([]string, 0, len(ledgers))
	for g := range ledgers {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		gl := ledgers[g]
		gr := &groupResult{name: g, ordering: orderings[g]}
		r.groups = append(r.groups, gr)
		for id, m := range gl.msgs {
			tr, ok := byMsg[id]
			if !ok || m.wrongPlace > 0 || tr.partition != m.partition || tr.offset != m.offset {
				gr.phantom++
				example(&gr.examples, "ledger message %s at %d@%d is not that topic record", id, m.partition, m.offset)
				continue
			}
			gr.processed += len(m.processed)
			if len(m.processed) > 0 {
				gr.messages++
				gr.reprocessed += len(m.processed) - 1
			}
			if m.acked > 1 {
				gr.duplicates += m.acked - 1
				example(&gr.examples, "message %s (%d@%d) acked %d times", id, tr.partition, tr.offset, m.acked)
			}
			if m.firstA != 0 {
				for _, t := range m.processed {
					if t > m.firstA {
						gr.afterAck++
						example(&gr.examples, "message %s (%d@%d) processed again %.3fs after its ack", id, tr.partition, tr.offset, float64(t-m.firstA)/1e9)
					}
				}
			}
			if m.acked == 0 && m.unknown > 0 {
				gr.ackUnknown++
			}
			gr.refused += m.refused
			gr.invalidAcks += m.invalid
			gr.nacked += m.nacked
		}
		for _, tr := range topic {
			if m := gl.msgs[tr.messageID]; m == nil || m.acked+m.unknown == 0 {
				gr.lost++
				example(&gr.examples, "record %d@%d (%s) never processed and acked", tr.partition, tr.offset, tr.value)
			}
		}
		if gr.ordering == "key" {
			// Within a key, records must be processed for the first time
			// in offset order: a record is never processed before an
			// earlier record of its key has been.
			latest := map[pk]int64{}
			for _, tr := range topic { // offset order within each partition
				m := gl.msgs[tr.messageID]
				if m == nil || m.firstP == 0 {
					continue
				}
				k := pk{tr.partition, tr.key}
				if m.firstP < latest[k] {
					gr.orderViol++
					example(&gr.examples, "key %s: %d@%d first processed %.3fs before an earlier record of its key", tr.key, tr.partition, tr.offset, float64(latest[k]-m.firstP)/1e9)
				}
				latest[k] = max(latest[k], m.firstP)
			}
		}
		for _, ev := range events {
			if ev.kind != faultSlowApp {
				continue
			}
			for _, t := range gl.revokes {
				if t >= ev.start.UnixNano() && t <= ev.heal.UnixNano() {
					r.slowRebal++
				}
			}
		}
	}

	// Verdicts.
	if r.lostWrites > 0 {
		r.violate("%d acknowledged writes missing from the topic", r.lostWrites)
	}
	if r.phantom > 0 {
		r.violate("%d phantom records in the topic", r.phantom)
	}
	if r.twice > 0 {
		r.violate("%d records written twice", r.twice)
	}
	if r.topicOrder > 0 {
		r.violate("%d per-key sequence numbers out of order in the topic", r.topicOrder)
	}
	redeliveryExpected := false
	for _, ev := range events {
		redeliveryExpected = redeliveryExpected || slices.Contains(mayRedeliver, ev.kind)
	}
	for _, gr := range r.groups {
		if gr.lost > 0 {
			r.violate("group %s: %d records lost", gr.name, gr.lost)
		}
		if gr.phantom > 0 {
			r.violate("group %s: %d phantom ledger entries", gr.name, gr.phantom)
		}
		if gr.orderViol > 0 {
			r.violate("group %s: %d order violations", gr.name, gr.orderViol)
		}
		if gr.duplicates+gr.afterAck > 0 && (r.dedupe || !redeliveryExpected) {
			r.violate("group %s: %d duplicate acks, %d records processed again after their ack", gr.name, gr.duplicates, gr.afterAck)
		}
	}
	if r.slowRebal > 0 {
		r.violate("%d revocations while an app was slower than max.poll.interval.ms", r.slowRebal)
	}
	if !r.drainedOK {
		r.violate("backlog not drained within %v of the last heal", r.drainLimit)
	}
	r.faults = map[string]int{}
	for _, ev := range events {
		r.faults[ev.kind]++
	}
}

// print writes the summary table.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nchaos summary: run %s, profile %s, dedupe %v, seed %d, wall time %s\n\n", r.runID, r.profile, r.dedupe, r.seed, r.wall.Round(time.Second))
	row := func(k string, v any) { fmt.Fprintf(w, "  %-44s %v\n", k, v) }
	total := r.attempts[outcomeOK] + r.attempts[outcomeError] + r.attempts[outcomeUnknown]
	row("records attempted", total)
	row("  ok / error / unknown", fmt.Sprintf("%d / %d / %d", r.attempts[outcomeOK], r.attempts[outcomeError], r.attempts[outcomeUnknown]))
	row("records in the topic", r.topicLen)
	row("  of which error / unknown outcomes", fmt.Sprintf("%d / %d", r.writtenOK[outcomeError], r.writtenOK[outcomeUnknown]))
	kinds := make([]string, 0, len(r.faults))
	nf := 0
	for k, n := range r.faults {
		kinds = append(kinds, k)
		nf += n
	}
	slices.Sort(kinds)
	row("faults injected", nf)
	for _, k := range kinds {
		row("  "+k, r.faults[k])
	}
	row("lost acknowledged writes", r.lostWrites)
	row("records written twice", r.twice)
	row("phantom records", r.phantom)
	row("topic order violations (per-key seq)", r.topicOrder)
	for _, g := range r.groups {
		fmt.Fprintf(w, "  group %s (ordering %s)\n", g.name, g.ordering)
		row("    messages processed (events)", fmt.Sprintf("%d (%d)", g.messages, g.processed))
		row("    lost", g.lost)
		row("    duplicates (extra acks / after ack)", fmt.Sprintf("%d / %d", g.duplicates, g.afterAck))
		if g.ordering == "key" {
			row("    order violations", g.orderViol)
		}
		row("    phantom ledger entries", g.phantom)
		row("    retried (nack/crash/disconnect)", g.reprocessed)
		row("    acks refused / of unknown fate", fmt.Sprintf("%d / %d", g.refused, g.ackUnknown))
		row("    acks refused as invalid (see reliability.md)", g.invalidAcks)
		row("    nacks", g.nacked)
	}
	row("revocations during slow-app", r.slowRebal)
	if r.drainedOK {
		row("recovery (last heal to drained)", fmt.Sprintf("%.1fs (limit %s)", r.recovery.Seconds(), r.drainLimit))
		row("  drained after the load stopped", fmt.Sprintf("%.1fs", r.drainAfterLoad.Seconds()))
	} else {
		row("recovery (last heal to drained)", "NOT DRAINED within "+r.drainLimit.String())
	}
	for _, g := range r.groups {
		for _, e := range g.examples {
			fmt.Fprintf(w, "  example (%s): %s\n", g.name, e)
		}
	}
	for _, e := range r.examples {
		fmt.Fprintf(w, "  example: %s\n", e)
	}
	if len(r.violations) == 0 {
		fmt.Fprintf(w, "\nRESULT: PASS (no violation)\n")
		return
	}
	fmt.Fprintf(w, "\nRESULT: FAIL\n")
	for _, v := range r.violations {
		fmt.Fprintf(w, "  violation: %s\n", v)
	}
}
