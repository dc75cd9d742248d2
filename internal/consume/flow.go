package consume

import (
	"time"
)

// balanceFlow pauses partitions holding too many unfinished records, or
// whose group holds more than its share of the gateway's byte bound, and
// resumes them once they have drained to half; a partition with nothing
// pending is always resumed. Polling never stops, so a slow app never makes
// the consumer miss max.poll.interval.ms. Runs on the poll goroutine.
//
// The byte bound (consumer.max_buffered_bytes) is shared fairly: each
// running group may hold up to bound ÷ running groups. So one group whose
// records nobody acknowledges (no app attached, a stuck app) pauses only its
// own partitions, never another group's. It reports whether any partition
// stays paused.
func (g *group) balanceFlow() (paused bool) {
	maxRecs := g.m.cfg.MaxBufferedRecords
	share := int64(g.m.cfg.MaxBufferedBytes) / int64(max(1, g.m.active.Load()))
	own := g.bytes.Load()
	var pause, resume []TopicPartition
	g.mu.Lock()
	for _, l := range g.order {
		n := l.pending()
		tp := TopicPartition{Topic: l.topic, Partition: l.partition}
		switch {
		case l.paused && n == 0:
			l.paused = false
			resume = append(resume, tp)
		case !l.paused && n > 0 && (n >= maxRecs || own > share):
			l.paused = true
			pause = append(pause, tp)
		case l.paused && n <= maxRecs/2 && own <= share/2:
			l.paused = false
			resume = append(resume, tp)
		}
		paused = paused || l.paused
	}
	g.mu.Unlock()
	if len(pause) > 0 {
		if err := g.client.Pause(pause); err != nil {
			g.logger.Warn("pause partitions", "err", err)
		}
	}
	if len(resume) > 0 {
		if err := g.client.Resume(resume); err != nil {
			g.logger.Warn("resume partitions", "err", err)
		}
	}
	return paused
}

// stallAfter is how long a partition may have a deliverable record, credit
// to deliver it and nothing being worked on, before it counts as stalled.
// Dispatch runs after every change, so a healthy partition never waits so
// long.
const stallAfter = 30 * time.Second

// watchStalls checks, about once a second, that no partition has records
// waiting with nothing in flight while streams have credit: a partition
// whose dispatch indexes lost a record (or whose record bookkeeping
// drifted) would otherwise stall silently. A stalled partition is logged at
// error level, counted, and exported (GroupStats.Stalled), and its indexes
// are rebuilt from its records.
func (g *group) watchStalls() {
	now := g.m.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.nextStallCheck) {
		return
	}
	g.nextStallCheck = now.Add(time.Second)
	credit := false
	for _, s := range g.streams {
		credit = credit || s.credit() > 0
	}
	credit = credit && !g.draining
	for _, l := range g.order {
		var r *record
		if credit && l.busy() == 0 {
			r = l.firstDeliverable(g.settings.Ordering)
		}
		if r == nil {
			l.waitingSince = time.Time{}
			if l.stalled {
				l.stalled = false
				g.logger.Info("partition no longer stalled", "topic", l.topic, "partition", l.partition)
			}
			continue
		}
		switch {
		case l.waitingSince.IsZero():
			l.waitingSince = now
		case !l.stalled && now.Sub(l.waitingSince) >= stallAfter:
			l.stalled = true
			g.stats.stalls.Add(1)
			g.logger.Error("partition stalled: a record waits for delivery with nothing in flight while streams have credit; rebuilding its dispatch state",
				"topic", l.topic, "partition", l.partition, "offset", r.offset, "pending", l.pending(), "waiting", now.Sub(l.waitingSince).Round(time.Second))
			l.reindex()
			g.dispatchLocked()
		}
	}
}
