package main

import (
	"cmp"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The report's section on where the CPU goes: for each profiled scenario
// that misses a target, each process's CPU per record split by category,
// its top functions, and the next lever, computed from those figures.

// missedProfiled returns the throughput rows that carry profiles and whose
// scenario misses a target (with --profile-all, every one), in the order
// of the table.
func (r *Report) missedProfiled() []*Row {
	var out []*Row
	for i := range r.Rows {
		row := &r.Rows[i]
		if len(row.Profiles) == 0 || !(r.Opts.profileAll || r.missesTarget(row.Scenario)) {
			continue
		}
		out = append(out, row)
	}
	return out
}

// missesTarget reports whether a row of scenario has a target it missed.
func (r *Report) missesTarget(scenario string) bool {
	for _, row := range r.Rows {
		if row.Scenario == scenario && row.Target != nil && !row.Target.Met {
			return true
		}
	}
	return false
}

// unitOf is what a throughput row counts: record or call.
func unitOf(row *Row) string {
	if row.Unit == "calls/s" {
		return "call"
	}
	return "record"
}

// processCPU is the CPU the profiled process used in row's measurement.
func processCPU(row *Row, p profileSummary) time.Duration {
	switch p.Process {
	case "gateway":
		return row.CPU.Gateway
	case "echo server":
		return row.CPU.Echo
	}
	return row.CPU.Bench
}

// references are the baseline rows whose profiles help read scenario's.
func (r *Report) references(scenario string) []*Row {
	var names []string
	switch {
	case strings.HasPrefix(scenario, "stream-"):
		names = []string{"direct-async", "direct-gwlike"}
	case scenario == "unary-64":
		names = []string{"grpc-echo-64"}
	case strings.HasPrefix(scenario, "gateway-consume-"):
		names = []string{"direct-consume"}
	}
	var out []*Row
	for _, n := range names {
		for i := range r.Rows {
			if row := &r.Rows[i]; row.Scenario == n && len(row.Profiles) > 0 {
				out = append(out, row)
				break
			}
		}
	}
	return out
}

// writeProfiles writes the section, as Markdown (md) or for a terminal.
func (r *Report) writeProfiles(w io.Writer, md bool) {
	missed := r.missedProfiled()
	if len(missed) == 0 {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	which := "For each scenario that misses a target, the"
	if r.Opts.profileAll {
		which = "For each profiled scenario, the"
	}
	if md {
		p("### Where the CPU goes")
		p("")
		p("%s CPU profiles taken during one of its measured runs", which)
		p("(the last run of a throughput scenario; the measured run of unary-64 and grpc-echo-64): the gateway's")
		p("from its `/debug/pprof/profile` (the bench starts its gateways with `--metrics.pprof=true`), the echo")
		p("server's likewise, and the bench process's with `runtime/pprof` (the gRPC client, or the direct producer")
		p("with its librdkafka threads). A Go profile cannot see librdkafka's own threads (`rdk:*`, which block")
		p("the profiling signal): their CPU over the profile is read per thread from `/proc` and counted as")
		p("librdkafka/cgo. The broker's CPU is measured, not profiled. Each sample counts once, in the category")
		p("of its innermost frame that has one (standard-library code and runtime helpers such as `memmove` count")
		p("for their caller; C code, the cgo crossings into it and the Go Kafka client are librdkafka/cgo), so a")
		p("process's shares add up to 100%%; *cum* is the share of samples with the category anywhere on the stack.")
		p("The µs are a share times the process's CPU per record (or call) in the reported run. *Under* names the")
		p("functions a category's samples are counted under (for a call into C, the cgo stub naming the C function).")
		p("")
	} else {
		if r.Opts.profileAll {
			p("\nwhere the CPU goes (every profile taken):")
		} else {
			p("\nwhere the CPU goes (profiles of the scenarios that miss a target):")
		}
	}
	for _, row := range missed {
		unit := unitOf(row)
		var misses []string
		for _, t := range r.Rows {
			if t.Scenario == row.Scenario && t.Target != nil && !t.Target.Met {
				v := t.ratioText()
				if t.Unit == "×" {
					v = t.valueText()
				}
				misses = append(misses, fmt.Sprintf("%s (%s)", t.Target.Text, v))
			}
		}
		title := row.Scenario
		if len(misses) > 0 {
			title += ": misses " + strings.Join(misses, ", ")
		}
		if md {
			p("#### %s", title)
			p("")
			p("| Process | CPU per %s | %s |", unit, strings.Join(categoryHeaders(), " | "))
			p("|---|---|%s", strings.Repeat("---|", int(numCategories)))
		} else {
			p("\n%s", title)
		}
		type entry struct {
			label string
			row   *Row
			prof  profileSummary
		}
		var entries []entry
		for _, prof := range row.Profiles {
			entries = append(entries, entry{prof.Process, row, prof})
		}
		for _, ref := range r.references(row.Scenario) {
			for _, prof := range ref.Profiles {
				entries = append(entries, entry{fmt.Sprintf("%s (%s)", prof.Process, ref.Scenario), ref, prof})
			}
		}
		for _, e := range entries {
			us := e.row.CPU.perUnit(processCPU(e.row, e.prof), e.row.Value)
			if e.prof.Err != "" {
				if md {
					p("| %s | %.1f µs | no profile: %s |%s", e.label, us, mdEscape(e.prof.Err), strings.Repeat(" |", int(numCategories)-1))
				} else {
					p("  %s: %.1f µs per %s; no profile: %s", e.label, us, unitOf(e.row), e.prof.Err)
				}
				continue
			}
			var cells []string
			for c := range numCategories {
				cs := e.prof.Cats[c]
				cells = append(cells, fmt.Sprintf("%.0f%% = %.2f µs (cum %.0f%%)", 100*cs.Flat, cs.Flat*us, 100*cs.Cum))
			}
			if md {
				p("| %s | %.1f µs | %s |", e.label, us, strings.Join(cells, " | "))
			} else {
				var parts []string
				for c := range numCategories {
					parts = append(parts, category(c).name(e.prof.Own)+" "+cells[c])
				}
				p("  %s: %.1f µs per %s: %s", e.label, us, unitOf(e.row), strings.Join(parts, ", "))
			}
		}
		if row.CPU.Broker > 0 {
			us := row.CPU.perUnit(row.CPU.Broker, row.Value)
			if md {
				p("| broker | %.1f µs | CPU only, not profiled |%s", us, strings.Repeat(" |", int(numCategories)-1))
			} else {
				p("  broker: %.1f µs per %s (CPU only, not profiled)", us, unit)
			}
		}
		if md {
			p("")
		}
		for _, e := range entries {
			if e.prof.Err == "" {
				writeProfileDetail(p, e.label, e.prof, md)
			}
		}
		if l := r.lever(row); l != "" {
			if md {
				p("")
				p("**Next lever** (%s): %s", row.Scenario, l)
				p("")
			} else {
				p("  next lever: %s", l)
			}
		}
	}
}

// categoryHeaders are the category columns' names.
func categoryHeaders() []string {
	var out []string
	for c := range numCategories {
		out = append(out, category(c).name("own code"))
	}
	return out
}

// writeProfileDetail lists, for each category with at least 1% of the
// process's CPU, the functions its CPU is counted under and those with the
// largest cumulative share.
func writeProfileDetail(p func(string, ...any), label string, prof profileSummary, md bool) {
	cpu := fmt.Sprintf("%s of CPU sampled, %d samples", prof.CPU.Round(10*time.Millisecond), prof.Samples)
	if prof.Threads > 0 {
		cpu = fmt.Sprintf("%s of CPU over the profile: %s in librdkafka's own threads, measured per thread since a Go profile cannot see them; %s sampled in the Go threads, %d samples",
			prof.ProcCPU.Round(10*time.Millisecond), prof.Threads.Round(10*time.Millisecond), prof.CPU.Round(10*time.Millisecond), prof.Samples)
	}
	indent, sub := "- ", "  - "
	if !md {
		indent, sub = "  - ", "    - "
	}
	if md {
		label = "**" + label + "**"
	}
	p("%s%s (%s):", indent, label, cpu)
	for _, c := range categoriesByShare(prof) {
		cs := prof.Cats[c]
		if cs.Flat < 0.01 {
			break
		}
		line := fmt.Sprintf("%s %.0f%%", c.name(prof.Own), 100*cs.Flat)
		if c == catRuntime {
			line += fmt.Sprintf(" (allocation and GC %.0f%%, goroutine stack growth %.0f%%, scheduler and the rest %.0f%%)",
				100*prof.MallocGC, 100*prof.Stack, 100*prof.Sched)
		}
		line += ": under " + funcList(cs.TopFlat, false, md)
		if len(cs.TopCum) > 0 {
			line += "; cum " + funcList(cs.TopCum, true, md)
		}
		if c == catRuntime && len(prof.Allocators) > 0 {
			line += "; allocating most: " + funcList(prof.Allocators, false, md)
		}
		p("%s%s", sub, line)
	}
}

// categoriesByShare lists the categories, the largest flat share first.
func categoriesByShare(prof profileSummary) []category {
	cats := make([]category, 0, numCategories)
	for c := range numCategories {
		cats = append(cats, c)
	}
	slices.SortStableFunc(cats, func(a, b category) int { return cmp.Compare(prof.Cats[b].Flat, prof.Cats[a].Flat) })
	return cats
}

// funcList formats functions with their flat (or cum) share.
func funcList(fs []funcShare, cum, md bool) string {
	var parts []string
	for _, f := range fs {
		v := f.Flat
		if cum {
			v = f.Cum
		}
		name := shortFunc(f.Name)
		if md {
			name = "`" + name + "`"
		}
		parts = append(parts, fmt.Sprintf("%s %.1f%%", name, 100*v))
	}
	return strings.Join(parts, ", ")
}

// goShape is the type arguments of a generic function's instantiation.
var goShape = regexp.MustCompile(`\[go\.shape\.[^\]]*\]`)

// shortFunc drops a function's package path up to its last slash, and the
// type arguments of a generic instantiation.
func shortFunc(name string) string {
	name = goShape.ReplaceAllString(name, "[…]")
	paren := strings.IndexAny(name, "(")
	head := name
	if paren >= 0 {
		head = name[:paren]
	}
	if i := strings.LastIndex(head, "/"); i >= 0 {
		return name[i+1:]
	}
	return name
}

// lever states, from the gateway's profile in row, the category that costs
// the gateway the most CPU per record (or call), what it is most counted
// under, what the baselines of the same run spend on the same work, and the
// runner-up; then what the other measured processes took from the machine.
func (r *Report) lever(row *Row) string {
	var gw *profileSummary
	for i := range row.Profiles {
		if row.Profiles[i].Process == "gateway" && row.Profiles[i].Err == "" {
			gw = &row.Profiles[i]
		}
	}
	if gw == nil {
		return ""
	}
	unit := unitOf(row)
	us := row.CPU.perUnit(row.CPU.Gateway, row.Value)
	cats := categoriesByShare(*gw)
	first, second := cats[0], cats[1]
	part := func(c category) string {
		s := fmt.Sprintf("%.1f µs per %s, %.0f%% of the gateway's %.1f µs", gw.Cats[c].Flat*us, unit, 100*gw.Cats[c].Flat, us)
		if c == catRuntime {
			s += fmt.Sprintf(": allocation and GC %.1f µs, goroutine stack growth %.1f µs, scheduler and the rest %.1f µs",
				gw.MallocGC*us, gw.Stack*us, gw.Sched*us)
			if len(gw.Allocators) > 0 {
				s += fmt.Sprintf("; the code allocating most is `%s` (%.0f%% of the gateway's CPU)", shortFunc(gw.Allocators[0].Name), 100*gw.Allocators[0].Flat)
			}
		} else if top := gw.Cats[c].TopFlat; len(top) > 0 {
			s += fmt.Sprintf(", most of it under `%s` (%.0f%%)", shortFunc(top[0].Name), 100*top[0].Flat)
		}
		return s
	}
	var s string
	switch first {
	case catKafka:
		s = "the path into the Kafka client: librdkafka and the cgo calls into it take " + part(first)
		if d := r.row("direct-consume", "throughput"); d != nil && isConsume(row) {
			if dUS := d.CPU.perUnit(d.CPU.Bench, d.Value); dUS > 0 {
				s += fmt.Sprintf("; direct-consume's whole consumer process spends %.1f µs per record, so the gateway's way out of librdkafka costs %.1f× what direct-consume's whole consumer does: fewer cgo calls per record (fetching in batches) and fewer Go objects per polled message is where the gain is",
					dUS, gw.Cats[first].Flat*us/dUS)
			}
		} else if d := r.row("direct-async", "throughput"); d != nil && unit == "record" {
			dUS := d.CPU.perUnit(d.CPU.Bench, d.Value)
			s += fmt.Sprintf("; direct-async's whole producer process spends %.1f µs per record", dUS)
			if l := r.row("direct-gwlike", "throughput"); l != nil {
				s += fmt.Sprintf(" and direct-gwlike's %.1f", l.CPU.perUnit(l.CPU.Bench, l.Value))
			}
			if dUS > 0 {
				s += fmt.Sprintf(", so the gateway's way into librdkafka costs %.1f× what direct-async's whole producer does: fewer cgo calls per record and less per-record work handed to librdkafka is where the gain is",
					gw.Cats[first].Flat*us/dUS)
			}
		}
	case catGRPC:
		s = "the gRPC hop: gRPC and HTTP/2 (framing, flow control, the socket writes and reads under them) take " + part(first)
		if e := r.row("grpc-echo-64", "calls/s"); e != nil && unit == "call" {
			if echoUS := e.CPU.perUnit(e.CPU.Echo, e.Value); echoUS > 0 {
				s += fmt.Sprintf("; the bare echo server spends %.1f µs per call in all, so the gateway's gRPC work alone is %.1f× the echo server's whole",
					echoUS, gw.Cats[first].Flat*us/echoUS)
			}
		} else {
			s += "; more records per message and fewer writes and flushes per message is where the gain is"
		}
	case catProto:
		s = "protobuf: decoding requests and encoding responses take " + part(first) + "; fewer objects per record in the messages is where the gain is"
	case catOwn:
		s = "the gateway's own code takes " + part(first)
	case catRuntime:
		s = "the Go runtime takes " + part(first)
		switch max(gw.MallocGC, gw.Stack, gw.Sched) {
		case gw.MallocGC:
			s += "; fewer heap objects per " + unit + " is where the gain is"
		case gw.Stack:
			s += "; fewer goroutines started per " + unit + " (each new one grows its stack again) is where the gain is"
		default:
			s += "; fewer goroutine hand-offs (channel sends, wake-ups) per " + unit + " is where the gain is"
		}
	default:
		s = "standard-library code outside the categories takes " + part(first)
	}
	s += fmt.Sprintf(". After it: %s (%s).", second.leverName(gw.Own), part(second))
	if wall := row.CPU.Wall.Seconds(); wall > 0 {
		others := (row.CPU.Bench + row.CPU.Broker + row.CPU.Redis).Seconds() / wall
		cores := float64(runtime.NumCPU())
		s += fmt.Sprintf(" Meanwhile the bench client took %.2f cores (%.1f µs per %s) and the broker %.2f: of the machine's %.0f cores, %.2f were left for the gateway (less any other load on the machine), which used %.2f.",
			row.CPU.Bench.Seconds()/wall, row.CPU.perUnit(row.CPU.Bench, row.Value), unit, row.CPU.Broker.Seconds()/wall,
			cores, max(cores-others, 0), row.CPU.Gateway.Seconds()/wall)
	}
	if c := r.ceiling(row); c != "" {
		s += " " + c
	}
	return s
}

// ceiling says what the gateway's CPU per record (or call) would have to
// come down to for row to reach its throughput target on this machine, with
// the other processes spending what they did per record in this run: at the
// target's rate the machine's cores give cores ÷ rate µs per record to all
// of them. When the bench client, the broker and Redis alone spend that
// much, no gateway reaches the target here, and it says so.
func (r *Report) ceiling(row *Row) string {
	var goal float64
	var of string
	switch row.Scenario {
	case "unary-64":
		if e := r.row("grpc-echo-64", "calls/s"); e != nil {
			goal, of = echoTarget*e.Value, fmt.Sprintf("%.2f× grpc-echo-64", echoTarget)
		}
	case "gateway-consume-none", "gateway-consume-key":
		if d := r.row("direct-consume", "throughput"); d != nil {
			t := consumeNoneTarget
			if row.Scenario == "gateway-consume-key" {
				t = consumeKeyTarget
			}
			goal, of = t*d.Value, fmt.Sprintf("%.2f× direct-consume", t)
		}
	case "stream-100", "stream-1000":
		if d := r.row("direct-async", "throughput"); d != nil {
			t := stream100Target
			if row.Scenario == "stream-1000" {
				t = stream1000Target
			}
			goal, of = t*d.Value, fmt.Sprintf("%.2f× direct-async", t)
		}
	}
	if goal <= row.Value || row.CPU.Wall <= 0 {
		return ""
	}
	unit := unitOf(row)
	budget := float64(runtime.NumCPU()) / goal * 1e6
	others := row.CPU.perUnit(row.CPU.Bench+row.CPU.Broker+row.CPU.Redis, row.Value)
	gw := row.CPU.perUnit(row.CPU.Gateway, row.Value)
	s := fmt.Sprintf("The ceiling: %s is %.0f %ss/s, at which the machine's %d cores give %.1f µs of CPU per %s to all its processes; at this run's CPU per %s the bench client, broker and Redis spend %.1f µs of it",
		of, goal, unit, runtime.NumCPU(), budget, unit, unit, others)
	if others >= budget {
		return s + fmt.Sprintf(", more than all of it, so no gateway reaches the target on this machine unless they spend less per %s (the broker does with more records per request).", unit)
	}
	if left := budget - others; left >= gw {
		s += fmt.Sprintf(", which leaves the gateway %.1f µs per %s, more than the %.1f it spent: CPU did not bound this run's rate (the gateway used %.2f of the %.2f cores left to it)",
			left, unit, gw, row.CPU.cores(row.CPU.Gateway), float64(runtime.NumCPU())-row.CPU.cores(row.CPU.Bench+row.CPU.Broker+row.CPU.Redis))
	} else {
		s += fmt.Sprintf(", which leaves the gateway %.1f µs per %s, against the %.1f it spent (%.0f%% less)", left, unit, gw, 100*(1-left/gw))
	}
	if d := r.row("direct-consume", "throughput"); d != nil && isConsume(row) {
		if direct := d.CPU.perUnit(d.CPU.Bench, d.Value); direct > budget-others {
			s += fmt.Sprintf(", and less than direct-consume's whole consumer process spent per record (%.1f µs), though the gateway runs the same librdkafka consumer inside it", direct)
		}
	} else if e := r.row("grpc-echo-64", "calls/s"); e != nil && unit == "call" {
		if echo := e.CPU.perUnit(e.CPU.Echo, e.Value); echo > budget-others {
			s += fmt.Sprintf(", and less than the bare echo server spent per call (%.1f µs) answering with no work behind the call, though the gateway serves the same gRPC call and produces the record too", echo)
		}
	} else if e := r.row("grpc-echo-64", "calls/s"); e != nil && unit == "call" {
		if echo := e.CPU.perUnit(e.CPU.Echo, e.Value); echo > budget-others {
			s += fmt.Sprintf(", and less than the bare echo server spent per call (%.1f µs) answering with no work behind the call, though the gateway serves the same gRPC call and produces the record too", echo)
		}
	} else if d := r.row("direct-async", "throughput"); d != nil && unit == "record" {
		if direct := d.CPU.perUnit(d.CPU.Bench, d.Value); direct > budget-others {
			s += fmt.Sprintf(", and less than direct-async's whole producer process spent per record (%.1f µs), though the gateway runs the same librdkafka producer inside it", direct)
		}
	}
	return s + "."
}

// isConsume reports whether row is a gateway consume scenario's.
func isConsume(row *Row) bool { return strings.HasPrefix(row.Scenario, "gateway-consume-") }

// leverName names the category in the lever sentence.
func (c category) leverName(own string) string {
	switch c {
	case catKafka:
		return "librdkafka and cgo"
	case catGRPC:
		return "gRPC and HTTP/2"
	case catOwn:
		return "the " + own
	case catRuntime:
		return "the Go runtime"
	}
	return c.name(own)
}
