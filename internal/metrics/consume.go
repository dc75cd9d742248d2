package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafkagate/gateway/internal/consume"
)

// consumerCollector reads the consumer groups' counters and state at scrape
// time: nothing is added to the delivery and ack paths.
type consumerCollector struct {
	groups func() []consume.GroupStats

	counters []counterDesc
	gauges   []gaugeDesc
}

type counterDesc struct {
	desc  *prometheus.Desc
	value func(*consume.GroupStats) int64
}

type gaugeDesc struct {
	desc  *prometheus.Desc
	value func(*consume.GroupStats) float64
}

// RegisterConsumer registers the consumer and dedupe metrics, read from
// groups (consume.Manager.Groups) at each scrape.
func RegisterConsumer(r *Registry, groups func() []consume.GroupStats) {
	c := &consumerCollector{groups: groups}
	counter := func(name, help string, v func(*consume.GroupStats) int64) {
		c.counters = append(c.counters, counterDesc{prometheus.NewDesc(name, help, []string{"group"}, nil), v})
	}
	gauge := func(name, help string, v func(*consume.GroupStats) float64) {
		c.gauges = append(c.gauges, gaugeDesc{prometheus.NewDesc(name, help, []string{"group"}, nil), v})
	}
	counter("gateway_consumer_deliveries_total", "Records delivered to app streams, first deliveries and redeliveries.",
		func(s *consume.GroupStats) int64 { return s.Delivered })
	counter("gateway_consumer_redeliveries_total", "Deliveries of records that were nacked or timed out before (attempt > 1).",
		func(s *consume.GroupStats) int64 { return s.Redelivered })
	counter("gateway_consumer_acks_total", "Ack IDs named by successful Ack calls.",
		func(s *consume.GroupStats) int64 { return s.Acked })
	counter("gateway_consumer_nacks_total", "Ack IDs named by successful Nack calls.",
		func(s *consume.GroupStats) int64 { return s.Nacked })
	counter("gateway_consumer_skipped_done_total", "Records fetched that the committed offset's metadata named done (acknowledged out of order before a rebalance or restart): never delivered again.",
		func(s *consume.GroupStats) int64 { return s.SkippedDone })
	counter("gateway_consumer_extensions_total", "Ack IDs named by successful Extend calls (ack deadlines moved out).",
		func(s *consume.GroupStats) int64 { return s.Extended })
	counter("gateway_consumer_ack_timeouts_total", "Deliveries not acknowledged within the ack timeout.",
		func(s *consume.GroupStats) int64 { return s.TimedOut })
	counter("gateway_consumer_dead_lettered_total", "Records written to a dead-letter topic.",
		func(s *consume.GroupStats) int64 { return s.DeadLettered })
	counter("gateway_consumer_dead_letters_compact_total", "Dead letters written in compact form (source coordinates, reason and message ID, without the payload) because the full one could not be written (too large, rejected, not authorized).",
		func(s *consume.GroupStats) int64 { return s.DeadLetteredCompact })
	counter("gateway_consumer_dead_letters_dropped_total", "Records settled without a dead letter because neither the full nor the compact one could be written; each is logged at error level with its coordinates.",
		func(s *consume.GroupStats) int64 { return s.DeadLettersDropped })
	counter("gateway_consumer_stalls_total", "Partitions found stalled: a record waiting for delivery with nothing in flight while streams had credit, or a partition not fetched although its log grew. Each is logged at error level and repaired.",
		func(s *consume.GroupStats) int64 { return s.Stalls })
	counter("gateway_consumer_commits_total", "Successful offset commits (periodic, at revoke and at shutdown).",
		func(s *consume.GroupStats) int64 { return s.Commits })
	counter("gateway_consumer_commit_failures_total", "Failed offset commits.",
		func(s *consume.GroupStats) int64 { return s.CommitFailures })
	counter("gateway_consumer_offset_resets_total", "Positions librdkafka reset by auto.offset.reset because they were not on the broker any more (deleted by retention before they were consumed, for example): records were skipped, or will be read again.",
		func(s *consume.GroupStats) int64 { return s.OffsetResets })
	counter("gateway_consumer_rebalances_total", "Assignment changes of this gateway's member: each assignment and each revocation.",
		func(s *consume.GroupStats) int64 { return s.Rebalances })
	counter("gateway_dedupe_claims_total", "Deliveries made under a dedupe claim.",
		func(s *consume.GroupStats) int64 { return s.Claims })
	counter("gateway_dedupe_duplicates_dropped_total", "Records dropped without delivery because their message ID was already processed by the group.",
		func(s *consume.GroupStats) int64 { return s.Duplicates })
	counter("gateway_dedupe_held_total", "Claims that found another live owner's claim; the record waits and tries again.",
		func(s *consume.GroupStats) int64 { return s.Held })
	counter("gateway_dedupe_redis_errors_total", "Dedupe round trips to Redis that failed.",
		func(s *consume.GroupStats) int64 { return s.RedisErrors })
	counter("gateway_dedupe_lost_claims_total", "Done markers that found another owner's claim: the lease lapsed and the record may have been processed twice.",
		func(s *consume.GroupStats) int64 { return s.LostClaims })
	gauge("gateway_consumer_in_flight_records", "Records delivered (or being claimed for delivery) and not yet settled.",
		func(s *consume.GroupStats) float64 { return float64(s.InFlight) })
	gauge("gateway_consumer_buffered_records", "Records fetched from Kafka and not yet done.",
		func(s *consume.GroupStats) float64 { return float64(s.Buffered) })
	gauge("gateway_consumer_oldest_unacked_age_seconds", "Age, since it was fetched, of the group's oldest record not yet done: the record holding a commit point back. 0 when none is pending.",
		func(s *consume.GroupStats) float64 { return s.OldestUnacked.Seconds() })
	gauge("gateway_consumer_stalled_partitions", "Partitions stalled now (see gateway_consumer_stalls_total).",
		func(s *consume.GroupStats) float64 { return float64(s.Stalled) })
	gauge("gateway_consumer_partitions_assigned", "Partitions assigned to this gateway's member of the group.",
		func(s *consume.GroupStats) float64 { return float64(s.Partitions) })
	gauge("gateway_consumer_streams", "App streams attached to the group on this gateway.",
		func(s *consume.GroupStats) float64 { return float64(s.Streams) })
	gauge("gateway_consumer_group_running", "1 while the group's consumer runs on this gateway, 0 after it left (idle).",
		func(s *consume.GroupStats) float64 { return b2f(s.Running) })
	gauge("gateway_dedupe_degraded", "1 while the group's dedupe cannot reach Redis (deliveries paused, or undeduplicated with on_redis_failure: deliver).",
		func(s *consume.GroupStats) float64 { return b2f(s.Degraded) })
	r.MustRegister(c)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.counters {
		ch <- d.desc
	}
	for _, d := range c.gauges {
		ch <- d.desc
	}
}

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.groups() {
		for _, d := range c.counters {
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.value(&s)), s.Group)
		}
		for _, d := range c.gauges {
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, d.value(&s), s.Group)
		}
	}
}
