package main

// The ledgers: what the apps did with each delivery, one line per event,
// appended by each app process to a file of its own
// (ledger-<app>-<run>.log), and read back by the harness while the run goes
// on (to tell when the backlog is drained) and at the end (for the checker).
//
// Lines, fields separated by spaces; time is Unix nanoseconds from the wall
// clock, which all processes of the machine share; seq numbers the
// deliveries of one app process:
//
//	D time seq msgID partition offset attempt deadline   a delivery was received; deadline is its
//	                                                      ack_deadline (0: the gateway sent none)
//	X time seq        not processed: its deadline had passed or was too close
//	P time seq        processed (the effect, tentative until an OK ack commits it)
//	S time seq        an Ack is being sent (a kill now leaves its fate unknown)
//	A time seq        the Ack returned OK: the effect is committed
//	F time seq        the Ack was refused (FAILED_PRECONDITION): the effect is rolled back
//	I time seq        the Ack was refused as invalid (INVALID_ARGUMENT)
//	U time seq        the Ack's answer never came: its fate is unknown
//	N time seq        a Nack (redeliver) returned OK
//	L time seq        a dead-letter Nack returned OK
//	E time seq        a Nack was refused (a Nack without an answer leaves no line)
//	R time assigned revoked   an Assignment frame (counts of partitions)

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

const (
	evDelivered   = 'D'
	evSkipped     = 'X'
	evProcessed   = 'P'
	evAckSent     = 'S'
	evNackSent    = 'n'
	evAcked       = 'A'
	evRefused     = 'F'
	evInvalid     = 'I'
	evUnknown     = 'U'
	evNacked      = 'N'
	evDeadLetter  = 'L'
	evNackFailed  = 'E'
	evAssignFrame = 'R'
)

// delivery is one delivery to one app, with everything the app did with it.
type delivery struct {
	app       string // the app (ledger name without the run number)
	gateway   string // the gateway the app consumes through
	msg       string
	partition int32
	offset    int64
	attempt   int32
	recv      int64 // when the app received it
	deadline  int64 // its ack_deadline; 0 when the gateway sent none
	processed int64 // when the app processed it; 0 if it did not
	skipped   bool  // not processed: too close to its deadline
	sent      int64 // when its Ack was sent; 0 if never
	nackSent  int64 // when its Nack (retry or dead letter) was sent; 0 if never
	outcome   byte  // the answer: evAcked ... evNackFailed; 0 for none (yet)
	answered  int64 // when the answer came
}

// acked reports an Ack answered OK.
func (d *delivery) acked() bool { return d.outcome == evAcked }

// unknown reports an Ack whose answer never came: the app said so (U), or
// it died during the call (an S and nothing after it, once its run ended).
func (d *delivery) unknown(runEnded bool) bool {
	return d.outcome == evUnknown || d.outcome == 0 && d.sent != 0 && runEnded
}

// sentAt is when the gateway gave the delivery out: its lease's start, the
// deadline minus the ack timeout (a frame may wait in the app's stream
// buffer, even past its deadline, before the app reads it); without a
// deadline, its receipt.
func (d *delivery) sentAt(ackTimeout int64) int64 {
	if d.deadline == 0 {
		return d.recv
	}
	return min(d.recv, d.deadline-ackTimeout)
}

// holdEnd is when the app stopped holding the delivery: when its Ack was
// answered, or its Nack sent, or at its deadline, whichever came first.
// A nack ends the hold when the app sends it, whether or not its answer
// comes: the app has let the record go, and asked for the redelivery, which
// may reach it before the nack's answer (a Consume stream answers settles in
// order, so a nack's answer can wait behind an earlier ack's done marker
// while the redelivery is sent at once; or the stream breaks before the
// answer). Without a deadline from the gateway, the deadline is taken
// as the receipt time plus the subscription's ack timeout.
func (d *delivery) holdEnd(ackTimeout int64) int64 {
	end := d.deadline
	if end == 0 {
		end = d.recv + ackTimeout
	}
	if d.nackSent != 0 {
		end = min(end, d.nackSent) // whatever its answer, if any came
	}
	switch d.outcome {
	case evAcked, evRefused, evInvalid, evNacked, evDeadLetter, evNackFailed:
		end = min(end, d.answered)
	}
	return end
}

// groupLedger is one consumer group's ledger, from all its apps' files.
type groupLedger struct {
	name, ordering string
	byMsg          map[string][]*delivery // every delivery of each message ID, in ledger order
	assigns        []int64                // R times
	revokes        []int64                // R times with partitions revoked: a rebalance took some away
}

func newGroupLedger(name, ordering string) *groupLedger {
	return &groupLedger{name: name, ordering: ordering, byMsg: map[string][]*delivery{}}
}

func (gl *groupLedger) add(d *delivery) { gl.byMsg[d.msg] = append(gl.byMsg[d.msg], d) }

// appInfo says which group and gateway an app belongs to.
type appInfo struct{ group, gateway string }

// ledgerSet reads the ledger files of a run incrementally: each refresh
// parses only what was appended since the last one.
type ledgerSet struct {
	dir  string
	apps map[string]appInfo

	mu     sync.Mutex
	groups map[string]*groupLedger
	files  map[string]*ledgerFile
}

// ledgerFile is the reading state of one file.
type ledgerFile struct {
	app     string
	info    appInfo
	offset  int64
	partial []byte // a last line without its newline yet
	bySeq   map[int64]*delivery
}

func newLedgerSet(dir string, apps map[string]appInfo, orderings map[string]string) *ledgerSet {
	ls := &ledgerSet{dir: dir, apps: apps, groups: map[string]*groupLedger{}, files: map[string]*ledgerFile{}}
	for g, o := range orderings {
		ls.groups[g] = newGroupLedger(g, o)
	}
	return ls
}

// refresh reads what the apps appended since the last call and returns
// the groups' ledgers. The caller must not use them while another
// goroutine refreshes.
func (ls *ledgerSet) refresh() (map[string]*groupLedger, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	paths, err := filepath.Glob(filepath.Join(ls.dir, "ledger-*.log"))
	if err != nil {
		return nil, err
	}
	for _, path := range paths {
		lf := ls.files[path]
		if lf == nil {
			name := strings.TrimPrefix(filepath.Base(path), "ledger-")
			name = name[:strings.LastIndexByte(name, '-')]
			info, ok := ls.apps[name]
			if !ok || ls.groups[info.group] == nil {
				return nil, fmt.Errorf("ledger %s: unknown app %q", path, name)
			}
			lf = &ledgerFile{app: name, info: info, bySeq: map[int64]*delivery{}}
			ls.files[path] = lf
		}
		if err := lf.read(path, ls.groups[lf.info.group]); err != nil {
			return nil, err
		}
	}
	return ls.groups, nil
}

// read parses the file from where the last read stopped. A last line
// without a newline is kept for the next read; when the app was killed
// while writing it, it stays cut for ever and is never parsed.
func (lf *ledgerFile) read(path string, gl *groupLedger) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(lf.offset, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		chunk, err := r.ReadBytes('\n')
		lf.offset += int64(len(chunk))
		if err == io.EOF {
			lf.partial = append(lf.partial, chunk...)
			return nil
		}
		if err != nil {
			return err
		}
		line := chunk
		if len(lf.partial) > 0 {
			line = append(lf.partial, chunk...)
			lf.partial = nil
		}
		if err := lf.parse(line, gl); err != nil {
			return fmt.Errorf("ledger %s: %w", path, err)
		}
	}
}

func (lf *ledgerFile) parse(line []byte, gl *groupLedger) error {
	fs := bytes.Fields(line)
	bad := func() error { return fmt.Errorf("bad line %q", line) }
	if len(fs) < 3 || len(fs[0]) != 1 {
		return bad()
	}
	num := func(i int) int64 {
		if i >= len(fs) {
			return -1
		}
		n, err := strconv.ParseInt(string(fs[i]), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	t := num(1)
	if t < 0 {
		return bad()
	}
	ev := fs[0][0]
	switch ev {
	case evAssignFrame:
		// A stream gets the current assignment when it subscribes; only
		// revocations tell of a rebalance.
		gl.assigns = append(gl.assigns, t)
		if num(3) > 0 {
			gl.revokes = append(gl.revokes, t)
		}
		return nil
	case evDelivered:
		if len(fs) != 8 {
			return bad()
		}
		seq, p, o, att, dl := num(2), num(4), num(5), num(6), num(7)
		if seq < 0 || p < 0 || o < 0 || att < 0 || dl < 0 {
			return bad()
		}
		d := &delivery{app: lf.app, gateway: lf.info.gateway, msg: string(fs[3]), partition: int32(p), offset: o, attempt: int32(att), recv: t, deadline: dl}
		lf.bySeq[seq] = d
		gl.add(d)
		return nil
	}
	seq := num(2)
	d := lf.bySeq[seq]
	if d == nil {
		return bad()
	}
	switch ev {
	case evSkipped:
		d.skipped = true
	case evProcessed:
		d.processed = t
	case evAckSent:
		d.sent = t
	case evNackSent:
		d.nackSent = t
	case evAcked, evRefused, evInvalid, evUnknown, evNacked, evDeadLetter, evNackFailed:
		// The answer is a delivery's last event.
		d.outcome, d.answered = ev, t
		delete(lf.bySeq, seq)
	default:
		return bad()
	}
	return nil
}
