package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"
)

// During one measured run of each throughput scenario (the last run of a
// consume scenario) the bench takes CPU profiles of the processes it drives: the gateway's and the echo server's
// over HTTP (/debug/pprof/profile?seconds=N: the bench starts its gateways
// with --metrics.pprof=true), and its own (the gRPC client, or the direct
// producer or consumer with its librdkafka threads) with runtime/pprof, from the run's
// start to its end. The report shows them where a target is missed.

// profileTarget is a process whose CPU profile is fetched over HTTP.
type profileTarget struct {
	process string // "gateway", "echo server"
	own     string // the name of its own code in the summary
	addr    string // host:port serving /debug/pprof/profile
	pid     int
}

// threadMark is a process's CPU time, and its librdkafka threads', at the
// start of a profile: a Go profile sees only the Go threads (librdkafka's
// own threads block the profiling signal), so their CPU is measured from
// /proc instead and added to the librdkafka/cgo share.
type threadMark struct {
	pid       int
	proc, rdk time.Duration
}

func markThreads(pid int) threadMark {
	return threadMark{pid: pid, proc: procCPU(pid), rdk: rdkThreadCPU(pid)}
}

// addThreads folds into s the librdkafka threads' CPU since m.
func (m threadMark) addThreads(s *profileSummary) {
	if s.Err != "" {
		return
	}
	s.addThreadCPU(procCPU(m.pid)-m.proc, rdkThreadCPU(m.pid)-m.rdk)
}

// profiling is the profiles of one run being taken.
type profiling struct {
	b         *bench
	scenario  string
	seconds   int
	localName string        // what this process is in the run
	localMark threadMark    // this process's CPU at the start
	local     *bytes.Buffer // this process's profile; nil when not taken
	localErr  string
	remote    []chan profileSummary
}

// profileSeconds is the length of a remote profile for a run expected to
// last d: whole seconds (what /debug/pprof/profile takes), at least 1,
// rounded down so that the profile ends before the run does.
func profileSeconds(d time.Duration) int {
	return max(1, int(d.Seconds()))
}

// startProfiling starts this process's CPU profile (local names what this
// process is in scenario's run: the bench client, or a direct producer)
// and fetches seconds of each target's. With --profile=false it takes
// none.
func (b *bench) startProfiling(scenario, local string, seconds int, targets ...profileTarget) *profiling {
	p := &profiling{b: b, scenario: scenario, seconds: seconds, localName: local}
	if !b.opts.profile {
		return p
	}
	p.localMark = markThreads(os.Getpid())
	var buf bytes.Buffer
	if b.opts.cpuProfile != "" {
		p.localErr = "not taken: --cpuprofile profiles this process for the whole run"
	} else if err := pprof.StartCPUProfile(&buf); err != nil {
		p.localErr = "not taken: " + err.Error()
	} else {
		p.local = &buf
	}
	for _, t := range targets {
		ch := make(chan profileSummary, 1)
		p.remote = append(p.remote, ch)
		go func() {
			m := markThreads(t.pid)
			s := b.fetchProfile(scenario, t, seconds)
			m.addThreads(&s)
			ch <- s
		}()
	}
	return p
}

// finish stops this process's profile (call it when the run ends), waits
// for the remote ones and returns the summaries: the remote processes
// first, then this one.
func (p *profiling) finish() []profileSummary {
	if !p.b.opts.profile {
		return nil
	}
	var local profileSummary
	switch {
	case p.local != nil:
		pprof.StopCPUProfile()
		local = p.b.readProfile(p.scenario, p.local.Bytes(), p.localName, "bench code")
		p.localMark.addThreads(&local)
	default:
		local = profileSummary{Process: p.localName, Own: "bench code", Err: p.localErr}
	}
	var out []profileSummary
	for _, ch := range p.remote {
		out = append(out, <-ch)
	}
	return append(out, local)
}

// fetchProfile takes seconds of t's CPU profile and sums it up.
func (b *bench) fetchProfile(scenario string, t profileTarget, seconds int) profileSummary {
	fail := func(err error) profileSummary {
		return profileSummary{Process: t.process, Own: t.own, Err: err.Error()}
	}
	if t.addr == "" {
		return fail(fmt.Errorf("no profile address (is metrics.pprof on?)"))
	}
	client := &http.Client{Timeout: time.Duration(seconds)*time.Second + 30*time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.addr, seconds))
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("%s: %.200s", resp.Status, data))
	}
	return b.readProfile(scenario, data, t.process, t.own)
}

// readProfile parses and sums up a profile of scenario; a profile that
// cannot be read says why. With --profile-dir the profile is also written
// there, for go tool pprof.
func (b *bench) readProfile(scenario string, data []byte, process, own string) profileSummary {
	if dir := b.opts.profileDir; dir != "" {
		path := filepath.Join(dir, fmt.Sprintf("%s.%s.pb.gz", scenario, strings.ReplaceAll(process, " ", "-")))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "   profile of %s: %v\n", process, err)
		}
	}
	top := b.opts.profileTop
	raw, err := parseCPUProfile(data)
	if err != nil {
		fmt.Fprintf(os.Stderr, "   profile of %s: %v\n", process, err)
		return profileSummary{Process: process, Own: own, Err: err.Error()}
	}
	return summarizeProfile(raw, process, own, top)
}
