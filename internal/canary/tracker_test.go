package canary

import (
	"testing"
	"time"
)

// step is one event in a tracker's life: a send (ok or failed) or a
// receipt, with what the receipt must find.
type step struct {
	send, fail, recv uint64
	wantLost         int
	wantDup, timed   bool
}

func TestTrackerFindsGapsAndRepeats(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{
			{send: 1}, {recv: 1, timed: true}, {send: 2}, {recv: 2, timed: true},
		}},
		{"a gap is lost once a later record arrives", []step{
			{send: 1}, {send: 2}, {send: 3}, {recv: 1, timed: true}, {recv: 3, wantLost: 1, timed: true},
		}},
		{"a repeat is a duplicate", []step{
			{send: 1}, {recv: 1, timed: true}, {recv: 1, wantDup: true},
		}},
		{"a failed write is not lost", []step{
			{send: 1}, {send: 2}, {fail: 2}, {send: 3}, {recv: 1, timed: true}, {recv: 3, timed: true},
		}},
		{"a record counted lost that arrives late is not a duplicate", []step{
			{send: 1}, {send: 2}, {recv: 2, wantLost: 1, timed: true}, {recv: 1},
		}},
		{"a failed write that landed anyway is received, untimed", []step{
			{send: 1}, {fail: 1}, {recv: 1}, {recv: 1, wantDup: true},
		}},
		{"a record still unanswered is not lost while nothing later arrives", []step{
			{send: 1}, {send: 2}, {recv: 1, timed: true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTracker()
			at := time.Unix(1_000, 0)
			for i, s := range tc.steps {
				at = at.Add(time.Second)
				switch {
				case s.send != 0:
					tr.sending(s.send, at)
				case s.fail != 0:
					tr.failed(s.fail)
				default:
					r := tr.receive(s.recv, at)
					if r.lost != s.wantLost || r.duplicate != s.wantDup || r.timed != s.timed {
						t.Errorf("step %d (receive %d) = %+v, want lost %d, duplicate %v, timed %v", i, s.recv, r, s.wantLost, s.wantDup, s.timed)
					}
				}
			}
		})
	}
}

func TestTrackerLatencyRunsFromSendToReceipt(t *testing.T) {
	t.Parallel()
	tr := newTracker()
	sent := time.Unix(1_000, 0)
	tr.sending(1, sent)
	if r := tr.receive(1, sent.Add(1500*time.Millisecond)); !r.timed || r.latency != 1500*time.Millisecond {
		t.Fatalf("receipt = %+v, want latency 1.5s", r)
	}
}

func TestTrackerForgetsOldReceiptsAndBoundsPending(t *testing.T) {
	t.Parallel()
	tr := newTracker()
	at := time.Unix(1_000, 0)
	for seq := uint64(1); seq <= 3*receivedWindow; seq++ {
		tr.sending(seq, at)
		tr.receive(seq, at)
	}
	if n := len(tr.received); n > 2*receivedWindow {
		t.Errorf("%d receipts remembered, want at most %d", n, 2*receivedWindow)
	}
	for seq := uint64(1); seq <= maxPending+10; seq++ {
		tr.sending(1_000_000+seq, at)
	}
	if n := len(tr.pending); n > maxPending {
		t.Errorf("%d records pending, want at most %d", n, maxPending)
	}
}
