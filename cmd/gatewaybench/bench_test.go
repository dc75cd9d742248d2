package main

import (
	"strings"
	"testing"
)

// explainAcks tells apart the three ways answers can fail to add up to a
// topic's records; answers without an offset are not one position answered
// twice, however many there are in one partition.
func TestExplainAcksCountsEachKindApart(t *testing.T) {
	t.Parallel()
	highs := []int64{3, 2}
	for _, tc := range []struct {
		name string
		acks []ackedAt
		want string
	}{
		{"all distinct", []ackedAt{{0, 0}, {0, 1}, {1, 0}}, "0 positions answered more than once, 0 without an offset, 0 at or past"},
		{"one position twice", []ackedAt{{0, 0}, {0, 0}, {1, 0}}, "1 positions answered more than once, 0 without an offset, 0 at or past"},
		{"two without an offset in one partition", []ackedAt{{1, -1}, {1, -1}, {0, 0}}, "0 positions answered more than once, 2 without an offset, 0 at or past"},
		{"past the end", []ackedAt{{1, 2}, {2, 0}}, "0 positions answered more than once, 0 without an offset, 2 at or past"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := explainAcks(tc.acks, highs); !strings.Contains(got, tc.want) {
				t.Errorf("explainAcks = %q, want it to say %q", got, tc.want)
			}
		})
	}
}
