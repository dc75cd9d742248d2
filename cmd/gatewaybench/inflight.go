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

// inFlightSampler reads a gateway's gateway_consumer_in_flight_records
// (summed over its groups) every interval while a consume scenario runs.
// With ORDERING_KEY, what may be in flight is bounded by the keys (one
// record per key), so the rate is that number over the time a record takes
// from its delivery to the delivery of the next record of its key (Little's
// law): the samples say which of the two bounds the rate.
type inFlightSampler struct {
	samples []float64 // the non-zero ones: a run was under way
	done    chan struct{}
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
			v, ok := inFlightOf(resp.Body)
			resp.Body.Close()
			if ok && v > 0 {
				s.samples = append(s.samples, v)
			}
		}
	}()
	return s
}

// inFlightOf sums gateway_consumer_in_flight_records over the groups of a
// Prometheus text exposition.
func inFlightOf(r io.Reader) (float64, bool) {
	const name = "gateway_consumer_in_flight_records"
	var sum float64
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// summary states the mean in flight and what it implies at rate records/s:
// the mean time from a record's delivery to the delivery of the next of its
// key, and what that time would have to be for goal records/s at the same
// concurrency. Empty without samples.
func (s *inFlightSampler) summary(rate, goal float64, bound int) string {
	<-s.done
	if len(s.samples) == 0 || rate <= 0 {
		return ""
	}
	var sum, high float64
	for _, v := range s.samples {
		sum += v
		high = max(high, v)
	}
	mean := sum / float64(len(s.samples))
	out := fmt.Sprintf("in flight %.0f records on average, %.0f at most, of the %d the keys allow (one per key; %d samples of the gateway's gateway_consumer_in_flight_records during the runs): "+
		"a record took %.1f ms on average from its delivery to the delivery of the next of its key (in flight ÷ rate)",
		mean, high, bound, len(s.samples), mean/rate*1e3)
	if goal > rate {
		out += fmt.Sprintf(", and would have to take %.1f ms for %s records/s at the same concurrency", mean/goal*1e3, thousands(int64(goal)))
	}
	return out
}
