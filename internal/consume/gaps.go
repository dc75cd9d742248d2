package consume

import (
	"strconv"
	"strings"
)

// Gap-aware commits. The commit rule commits only the contiguous done
// prefix of a partition; records done beyond it (acked out of order) are
// written into the commit's metadata, so that the partition's next owner
// (another gateway after a rebalance, or this one after a restart) skips
// them instead of delivering them again.
//
// The metadata is "kg1:<base>:<gap>.<len>,<gap>.<len>,...": base is the
// committed offset, and each range of done offsets [start, start+len)
// starts gap offsets after the end of the previous range (the first after
// base), all in decimal. It is at most maxGapMetadata bytes: ranges that do
// not fit are left out, and their records are delivered again (at least
// once, as without the metadata). Metadata in any other form, an
// older version or another client's, is ignored.

const (
	gapMetadataPrefix = "kg1:"
	// maxGapMetadata bounds the metadata, under the broker's
	// offset.metadata.max.bytes (4096 by default).
	maxGapMetadata = 1024
	// maxGapScan bounds the records looked at past the committed offset.
	maxGapScan = 1 << 14
)

// offsetRange is the offsets [start, end).
type offsetRange struct{ start, end int64 }

// encodeGaps returns the metadata of done ranges beyond base (sorted, not
// overlapping, each starting after base), or "" when there are none.
func encodeGaps(base int64, ranges []offsetRange) string {
	if len(ranges) == 0 {
		return ""
	}
	b := make([]byte, 0, 64)
	b = append(b, gapMetadataPrefix...)
	b = strconv.AppendInt(b, base, 10)
	b = append(b, ':')
	prev := base
	n := 0
	for _, r := range ranges {
		mark := len(b)
		if n > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, r.start-prev, 10)
		b = append(b, '.')
		b = strconv.AppendInt(b, r.end-r.start, 10)
		if len(b) > maxGapMetadata {
			b = b[:mark]
			break
		}
		prev = r.end
		n++
	}
	if n == 0 {
		return ""
	}
	return string(b)
}

// decodeGaps parses metadata made by encodeGaps; ok is false for anything
// else, which then counts for nothing.
func decodeGaps(meta string) (base int64, ranges []offsetRange, ok bool) {
	rest, found := strings.CutPrefix(meta, gapMetadataPrefix)
	if !found || len(meta) > maxGapMetadata {
		return 0, nil, false
	}
	baseText, list, found := strings.Cut(rest, ":")
	if !found {
		return 0, nil, false
	}
	base, err := strconv.ParseInt(baseText, 10, 64)
	if err != nil || base < 0 {
		return 0, nil, false
	}
	prev := base
	for item := range strings.SplitSeq(list, ",") {
		gapText, lenText, found := strings.Cut(item, ".")
		if !found {
			return 0, nil, false
		}
		gap, err1 := strconv.ParseInt(gapText, 10, 64)
		n, err2 := strconv.ParseInt(lenText, 10, 64)
		if err1 != nil || err2 != nil || gap < 0 || n <= 0 || gap > 1<<62-prev || n > 1<<62-prev-gap {
			return 0, nil, false
		}
		if len(ranges) > 0 && gap == 0 {
			return 0, nil, false // ranges are separate
		}
		r := offsetRange{prev + gap, prev + gap + n}
		ranges = append(ranges, r)
		prev = r.end
	}
	return base, ranges, len(ranges) > 0
}

// gapsFrom returns the done ranges of metadata committed with offset
// committed, from committed on.
func gapsFrom(meta string, committed int64) []offsetRange {
	_, ranges, ok := decodeGaps(meta)
	if !ok {
		return nil
	}
	var out []offsetRange
	for _, r := range ranges {
		if r.end <= committed {
			continue
		}
		out = append(out, offsetRange{max(r.start, committed), r.end})
	}
	return out
}

// doneRanges returns the ranges of done records past the log's first
// record that is not done (at most maxGapScan records looked at). Records
// with offsets between two done ones (a gap in the log: compaction,
// transaction markers) count as done with them: nothing there can be
// delivered.
func (l *partitionLog) doneRanges() []offsetRange {
	if l.count[stateDone] == 0 {
		return nil
	}
	var out []offsetRange
	open := false
	for i, r := range l.recs {
		if i == maxGapScan {
			break
		}
		switch {
		case r.state == stateDone && open:
			out[len(out)-1].end = r.offset + 1
		case r.state == stateDone:
			out = append(out, offsetRange{r.offset, r.offset + 1})
			open = true
		default:
			open = false
		}
	}
	return out
}

// commitPoint is the offset to commit for the log and the metadata naming
// the records done beyond it.
func (l *partitionLog) commitPoint() PartitionOffset {
	off := l.committable()
	return PartitionOffset{Topic: l.topic, Partition: l.partition, Offset: off, Metadata: encodeGaps(off, l.doneRanges())}
}

// skipDone reports whether a fetched record at offset was done before the
// partition came to this log (named in the committed metadata), dropping
// ranges it has passed.
func (l *partitionLog) skipDone(offset int64) bool {
	for len(l.skip) > 0 && l.skip[0].end <= offset {
		l.skip = l.skip[1:]
	}
	return len(l.skip) > 0 && l.skip[0].start <= offset
}
