package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// inFlightSampler reads a gateway's gateway_consumer_in_flight_records and
// gateway_consumer_buffered_records (summed over its groups) every interval
// while a consume scenario's streams are attached. With ORDERING_KEY, what
// may be in flight is bounded by the keys (one record per key), so the rate
// is that number over the time a record takes from its delivery to the
// delivery of the next record of its key (Little's law): the samples say
// which of the two bounds the rate, and how often the gateway had nothing
// buffered to deliver (waiting for librdkafka's fetch).
type inFlightSampler struct {
	samples []gauges // those taken while streams were attached: a run under way
	done    chan struct{}
}

// gauges are the consumer gauges of one scrape, summed over the groups.
type gauges struct {
	inFlight, buffered, streams float64
}

func sampleInFlight(ctx context.Context, metricsAddr string, interval time.Duration) *inFlightSampler {
	s := &inFlightSampler{done: make(chan struct{})}
	if metricsAddr == "" {
		close(s.done)
		return s
	}
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			resp, err := client.Get("http://" + metricsAddr + "/metrics")
			if err != nil {
				continue
			}
			g, ok := gaugesOf(resp.Body)
			resp.Body.Close()
			if ok && g.streams > 0 {
				s.samples = append(s.samples, g)
			}
		}
	}()
	return s
}

// gaugesOf sums the consumer gauges over the groups of a Prometheus text
// exposition; ok is false when it has no in-flight gauge.
func gaugesOf(r io.Reader) (g gauges, ok bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, m := range []struct {
			name string
			sum  *float64
		}{
			{"gateway_consumer_in_flight_records", &g.inFlight},
			{"gateway_consumer_buffered_records", &g.buffered},
			{"gateway_consumer_streams", &g.streams},
		} {
			rest, found := strings.CutPrefix(line, m.name)
			if !found || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				continue
			}
			*m.sum += v
			ok = ok || m.sum == &g.inFlight
		}
	}
	return g, ok
}

// summary states the mean in flight and what it implies at rate records/s:
// the mean time from a record's delivery to the delivery of the next of its
// key, and what that time would have to be for goal records/s at the same
// concurrency; and how many samples found nothing buffered. Empty without
// samples.
func (s *inFlightSampler) summary(rate, goal float64, bound int) string {
	<-s.done
	if len(s.samples) == 0 || rate <= 0 {
		return ""
	}
	var sum, high float64
	empty := 0
	for _, g := range s.samples {
		sum += g.inFlight
		high = max(high, g.inFlight)
		if g.buffered == 0 {
			empty++
		}
	}
	mean := sum / float64(len(s.samples))
	out := fmt.Sprintf("in flight %.0f records on average, %.0f at most, of the %d the keys allow (one per key; %d samples of the gateway's gateway_consumer_in_flight_records while the runs' streams were attached): "+
		"a record took %.1f ms on average from its delivery to the delivery of the next of its key (in flight ÷ rate)",
		mean, high, bound, len(s.samples), mean/rate*1e3)
	if goal > rate {
		out += fmt.Sprintf(", and would have to take %.1f ms for %s records/s at the same concurrency", mean/goal*1e3, thousands(int64(goal)))
	}
	out += fmt.Sprintf("; %d of the samples found nothing buffered (the gateway waiting for records from librdkafka)", empty)
	return out
}
