package main

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file reads the CPU profiles the bench takes (the gateway's, from its
// /debug/pprof/profile; the bench client's and the direct producers', from
// runtime/pprof in this process; the echo server's) and sums them up by
// where the CPU went: the Kafka client (librdkafka and the cgo calls into
// it), gRPC and HTTP/2, protobuf, the process's own code, and the Go
// runtime (allocation, GC, scheduling). A profile is the gzipped
// protocol buffer of github.com/google/pprof's profile.proto; only the
// fields needed here are read.

// category is where a CPU sample's time went.
type category int

const (
	catKafka   category = iota // librdkafka (C), the cgo crossings, the Go Kafka client bindings
	catGRPC                    // google.golang.org/grpc, HTTP/2 framing, the socket writes and reads they make
	catProto                   // protobuf encoding and decoding, generated message code
	catOwn                     // the process's own code: the gateway's packages, or the bench's
	catRuntime                 // the Go runtime: malloc, GC, scheduler, timers
	catOther                   // the rest (the standard library with no caller above in another category)
	numCategories
)

// name is the category's name in the report; own names the process's own
// code ("gateway code", "bench code").
func (c category) name(own string) string {
	switch c {
	case catKafka:
		return "librdkafka/cgo"
	case catGRPC:
		return "gRPC/HTTP2"
	case catProto:
		return "protobuf"
	case catOwn:
		return own
	case catRuntime:
		return "runtime/GC"
	}
	return "other"
}

// frame is one function of a stack.
type frame struct {
	name string
	c    bool   // not Go: C code of the binary or of a shared library (librdkafka, libc)
	file string // the mapping's file, for C code
}

// rawProfile is a parsed CPU profile: each sample's stack (leaf first)
// and CPU time.
type rawProfile struct {
	samples  []rawSample
	duration time.Duration
}

type rawSample struct {
	stack []frame
	cpu   time.Duration
	count int64 // profiling signals this stack got
}

// parseCPUProfile reads a CPU profile (gzipped or not) and resolves the
// addresses of C code with the symbol tables of the files they were
// mapped from, when those files are readable.
func parseCPUProfile(data []byte) (*rawProfile, error) {
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		if data, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	var (
		strs      []string
		sampleTyp [][2]int64 // (type, unit) string indexes
		samples   []struct{ locs, vals []uint64 }
		mappings  = map[uint64]pbMapping{}
		locations = map[uint64]pbLocation{}
		functions = map[uint64]int64{} // id → name string index
		duration  int64
	)
	err := eachField(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch num {
		case 1: // sample_type
			var vt [2]int64
			err := eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				if n == 1 || n == 2 {
					vt[n-1] = int64(v)
				}
				return nil
			})
			sampleTyp = append(sampleTyp, vt)
			return err
		case 2: // sample
			var s struct{ locs, vals []uint64 }
			err := eachField(b, func(n protowire.Number, t protowire.Type, v uint64, b []byte) error {
				switch n {
				case 1:
					s.locs = appendVarints(s.locs, t, v, b)
				case 2:
					s.vals = appendVarints(s.vals, t, v, b)
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case 3: // mapping
			var m pbMapping
			err := eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch n {
				case 1:
					m.id = v
				case 2:
					m.start = v
				case 3:
					m.limit = v
				case 4:
					m.offset = v
				case 5:
					m.file = int64(v)
				}
				return nil
			})
			mappings[m.id] = m
			return err
		case 4: // location
			var l pbLocation
			err := eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, b []byte) error {
				switch n {
				case 1:
					l.id = v
				case 2:
					l.mapping = v
				case 3:
					l.addr = v
				case 4: // line: function_id = 1
					return eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
						if n == 1 {
							l.funcs = append(l.funcs, v)
						}
						return nil
					})
				}
				return nil
			})
			locations[l.id] = l
			return err
		case 5: // function: id = 1, name = 2
			var id uint64
			var name int64
			err := eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch n {
				case 1:
					id = v
				case 2:
					name = int64(v)
				}
				return nil
			})
			functions[id] = name
			return err
		case 6: // string_table
			strs = append(strs, string(b))
		case 10: // duration_nanos
			duration = int64(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	str := func(i int64) string {
		if i < 0 || int(i) >= len(strs) {
			return ""
		}
		return strs[i]
	}
	// The CPU time is the value of type "cpu" (nanoseconds); the other is
	// a count of samples.
	cpuIdx, countIdx := -1, -1
	for i, vt := range sampleTyp {
		switch {
		case str(vt[0]) == "cpu" && str(vt[1]) == "nanoseconds":
			cpuIdx = i
		case str(vt[0]) == "samples" && str(vt[1]) == "count":
			countIdx = i
		}
	}
	if cpuIdx < 0 {
		return nil, errors.New("not a CPU profile (no cpu/nanoseconds sample type)")
	}

	syms := symbolizer{}
	stackOf := map[uint64][]frame{} // by location id
	p := &rawProfile{duration: time.Duration(duration)}
	for _, s := range samples {
		if cpuIdx >= len(s.vals) {
			continue
		}
		var stack []frame
		for _, id := range s.locs {
			fs, ok := stackOf[id]
			if !ok {
				l := locations[id]
				for _, f := range l.funcs { // inlined functions first, the caller they are inlined into last
					fs = append(fs, frame{name: str(functions[f])})
				}
				if len(fs) == 0 || fs[0].name == "" {
					m := mappings[l.mapping]
					file := str(m.file)
					fs = []frame{{name: syms.lookup(file, l.addr, m), c: true, file: file}}
				}
				stackOf[id] = fs
			}
			stack = append(stack, fs...)
		}
		smp := rawSample{stack: stack, cpu: time.Duration(s.vals[cpuIdx]), count: 1}
		if countIdx >= 0 && countIdx < len(s.vals) {
			smp.count = int64(s.vals[countIdx])
		}
		p.samples = append(p.samples, smp)
	}
	return p, nil
}

type pbMapping struct {
	id, start, limit, offset uint64
	file                     int64
}

type pbLocation struct {
	id, mapping, addr uint64
	funcs             []uint64
}

// eachField calls fn for each field of the message b: v holds a varint or
// fixed value, b the bytes of a length-delimited field.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var val []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v32 uint32
			v32, n = protowire.ConsumeFixed32(b)
			v = uint64(v32)
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, val); err != nil {
			return err
		}
	}
	return nil
}

// appendVarints appends a repeated varint field, packed (b) or not (v).
func appendVarints(dst []uint64, typ protowire.Type, v uint64, b []byte) []uint64 {
	if typ != protowire.BytesType {
		return append(dst, v)
	}
	for len(b) > 0 {
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			break
		}
		dst = append(dst, x)
		b = b[n:]
	}
	return dst
}

// symbolizer names C code from the ELF symbol tables of the mapped files.
type symbolizer map[string]*elfSymbols

type elfSymbols struct {
	loads []elf.ProgHeader // PT_LOAD segments
	syms  []elf.Symbol     // functions, by address
}

// lookup names the function at addr of mapping m (file), or returns the
// file's base name and the address when it cannot.
func (s symbolizer) lookup(file string, addr uint64, m pbMapping) string {
	fallback := fmt.Sprintf("[%s]+%#x", filepath.Base(cmp.Or(file, "unknown")), addr-m.start+m.offset)
	if file == "" || strings.HasPrefix(file, "[") {
		return fallback
	}
	es, ok := s[file]
	if !ok {
		es = loadELFSymbols(file)
		s[file] = es
	}
	if es == nil {
		return fallback
	}
	off := addr - m.start + m.offset
	for _, p := range es.loads {
		if off < p.Off || off >= p.Off+p.Filesz {
			continue
		}
		va := off - p.Off + p.Vaddr
		i, _ := slices.BinarySearchFunc(es.syms, va, func(sym elf.Symbol, va uint64) int { return cmp.Compare(sym.Value, va) })
		if i < len(es.syms) && es.syms[i].Value == va {
			return es.syms[i].Name
		}
		if i > 0 && va < es.syms[i-1].Value+max(es.syms[i-1].Size, 1) {
			return es.syms[i-1].Name
		}
	}
	return fallback
}

var (
	elfMu    sync.Mutex
	elfCache = map[string]*elfSymbols{}
)

// loadELFSymbols reads the function symbols of an ELF file (the static and
// the dynamic table), or returns nil.
func loadELFSymbols(path string) *elfSymbols {
	elfMu.Lock()
	defer elfMu.Unlock()
	if es, ok := elfCache[path]; ok {
		return es
	}
	var es *elfSymbols
	if f, err := elf.Open(path); err == nil {
		es = &elfSymbols{}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD {
				es.loads = append(es.loads, p.ProgHeader)
			}
		}
		static, _ := f.Symbols()
		dynamic, _ := f.DynamicSymbols()
		for _, sym := range append(static, dynamic...) {
			if elf.ST_TYPE(sym.Info) == elf.STT_FUNC && sym.Value != 0 {
				es.syms = append(es.syms, sym)
			}
		}
		slices.SortFunc(es.syms, func(a, b elf.Symbol) int { return cmp.Compare(a.Value, b.Value) })
		f.Close()
	}
	elfCache[path] = es
	return es
}

// ---------------------------------------------------------------- summary

// profileSummary is where one process's CPU went during a scenario.
type profileSummary struct {
	Process  string        // "gateway", "bench client", "direct producer", "echo server"
	Own      string        // the name of the process's own code category
	CPU      time.Duration // CPU time sampled
	Duration time.Duration // profile duration
	Samples  int64         // profiling signals

	// Cats is where the CPU went, by category. Each sample counts once, in
	// the category of its innermost frame that has one (standard library
	// and runtime helpers count for their caller), so the flat shares add
	// up to 1.
	Cats [numCategories]catShare
	// The runtime's flat share split: memory allocation and GC, goroutine
	// stack growth, and the rest (scheduler, channel hand-offs, timers).
	MallocGC, Stack, Sched float64
	Allocators             []funcShare // the callers outside the runtime of the most malloc time
	Err                    string      // the profile could not be taken or read

	// ProcCPU is the process's CPU over the profile (from /proc), Threads
	// that of librdkafka's own threads, which the profile cannot see (they
	// block the profiling signal); both 0 when the process has none.
	ProcCPU, Threads time.Duration

	top int // the length of the function lists
}

// catShare is one category's part of a profile.
type catShare struct {
	Flat float64 // share of the CPU counted in this category
	Cum  float64 // share of the samples with a frame of this category on the stack
	// TopFlat are the functions the flat share is most counted under (the
	// frame that placed each sample here; for a call into C, the cgo stub
	// naming the C function); TopCum the category's functions with the
	// largest cumulative share, one of each chain of callers with the same
	// share.
	TopFlat, TopCum []funcShare
}

// funcShare is a function's share of the CPU.
type funcShare struct {
	Name      string
	Flat, Cum float64
}

// summarizeProfile sums up p for process, whose own code is named own;
// top is the length of each category's function lists.
func summarizeProfile(p *rawProfile, process, own string, top int) profileSummary {
	s := profileSummary{Process: process, Own: own, Duration: p.duration, top: top}
	var total time.Duration
	for _, smp := range p.samples {
		total += smp.cpu
		s.Samples += smp.count
	}
	s.CPU = total
	if total <= 0 {
		s.Err = "no samples"
		return s
	}
	var (
		flatBy     [numCategories]map[string]time.Duration // by the frame each sample is counted under
		cumBy      [numCategories]map[string]time.Duration // by function of the category, once per sample
		allocators = map[string]time.Duration{}
	)
	for c := range numCategories {
		flatBy[c], cumBy[c] = map[string]time.Duration{}, map[string]time.Duration{}
	}
	for _, smp := range p.samples {
		if len(smp.stack) == 0 {
			continue
		}
		d := smp.cpu
		c, at := sampleCategory(smp.stack)
		s.Cats[c].Flat += d.Seconds()
		flatBy[c][at] += d
		seen := map[string]bool{}
		var inCat [numCategories]bool
		for _, f := range smp.stack {
			fc := frameCategory(f)
			if fc == catNeutral || seen[f.name] {
				continue
			}
			seen[f.name] = true
			inCat[fc] = true
			cumBy[fc][f.name] += d
		}
		for c := range numCategories {
			if inCat[c] {
				s.Cats[c].Cum += d.Seconds()
			}
		}
		if c == catRuntime {
			switch {
			case isMallocGC(smp.stack):
				s.MallocGC += d.Seconds()
				if caller := allocatingCaller(smp.stack); caller != "" {
					allocators[caller] += d
				}
			case isStackGrowth(smp.stack):
				s.Stack += d.Seconds()
			default:
				s.Sched += d.Seconds()
			}
		}
	}
	t := total.Seconds()
	for c := range numCategories {
		s.Cats[c].Flat /= t
		s.Cats[c].Cum /= t
		s.Cats[c].TopFlat = topFuncs(flatBy[c], t, top, false)
		for name := range cumBy[c] {
			if isEntryPoint(name) {
				delete(cumBy[c], name)
			}
		}
		s.Cats[c].TopCum = topFuncs(cumBy[c], t, top, true)
	}
	s.MallocGC /= t
	s.Stack /= t
	s.Sched /= t
	s.Allocators = topFuncs(allocators, t, 3, false)
	return s
}

// topFuncs returns the n functions of m with the largest share of total
// (seconds); cum drops a function whose share equals one already listed
// (the callers of a chain all have the same cumulative share).
func topFuncs(m map[string]time.Duration, total float64, n int, cum bool) []funcShare {
	type kv struct {
		name string
		d    time.Duration
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.d, a.d), cmp.Compare(a.name, b.name)) })
	var out []funcShare
	for _, e := range all {
		if len(out) == n {
			break
		}
		share := e.d.Seconds() / total
		if cum && len(out) > 0 && e.d.Seconds()/total == out[len(out)-1].Cum {
			continue
		}
		f := funcShare{Name: e.name, Flat: share}
		if cum {
			f = funcShare{Name: e.name, Cum: share}
		}
		out = append(out, f)
	}
	return out
}

// rdkThreads names librdkafka's own threads in the function lists.
const rdkThreads = "librdkafka's own threads (rdk:*)"

// addThreadCPU folds in CPU the profile could not see: of proc, the
// process's CPU over the profile, rdk went to librdkafka's own threads
// (measured per thread), the rest to the Go threads the profile sampled.
// Every share becomes a share of proc.
func (s *profileSummary) addThreadCPU(proc, rdk time.Duration) {
	if proc <= 0 || rdk <= 0 {
		return
	}
	rdk = min(rdk, proc)
	goShare, rdkShare := (proc-rdk).Seconds()/proc.Seconds(), rdk.Seconds()/proc.Seconds()
	scale := func(fs []funcShare) {
		for i := range fs {
			fs[i].Flat *= goShare
			fs[i].Cum *= goShare
		}
	}
	for c := range numCategories {
		cs := &s.Cats[c]
		cs.Flat *= goShare
		cs.Cum *= goShare
		scale(cs.TopFlat)
		scale(cs.TopCum)
	}
	s.MallocGC *= goShare
	s.Stack *= goShare
	s.Sched *= goShare
	scale(s.Allocators)
	k := &s.Cats[catKafka]
	k.Flat += rdkShare
	k.Cum += rdkShare
	threads := funcShare{Name: rdkThreads, Flat: rdkShare, Cum: rdkShare}
	k.TopFlat = insertShare(k.TopFlat, threads, s.top, func(f funcShare) float64 { return f.Flat })
	k.TopCum = insertShare(k.TopCum, threads, s.top, func(f funcShare) float64 { return f.Cum })
	s.Threads, s.ProcCPU = rdk, proc
}

// insertShare puts f into the list fs ordered by v, keeping at most n.
func insertShare(fs []funcShare, f funcShare, n int, v func(funcShare) float64) []funcShare {
	n = max(n, 1)
	i := 0
	for i < len(fs) && v(fs[i]) >= v(f) {
		i++
	}
	out := append(slices.Clone(fs[:i]), f)
	out = append(out, fs[i:]...)
	return out[:min(n, len(out))]
}

// catNeutral marks a frame whose time counts for its caller: standard
// library code and runtime helpers (copying, hashing, maps, conversions,
// system call entry and exit) that work on behalf of the code above them.
const catNeutral category = -1

// sampleCategory is the category of the innermost frame of stack that has
// one, and the function the sample is counted under there: that frame's,
// or for a call into C the cgo stub that names the C function (or the C
// function itself). A stack of standard library frames only is "other",
// counted under its leaf.
func sampleCategory(stack []frame) (category, string) {
	for i, f := range stack {
		c := frameCategory(f)
		if c == catNeutral {
			continue
		}
		if c == catKafka && !f.c {
			for _, g := range stack[i:] {
				if strings.Contains(g.name, "._Cfunc_") || strings.HasPrefix(g.name, "_cgo_") {
					return c, g.name
				}
				if frameCategory(g) != catKafka && frameCategory(g) != catNeutral {
					break
				}
			}
		}
		return c, f.name
	}
	if len(stack) == 0 {
		return catOther, ""
	}
	return catOther, stack[0].name
}

// frameCategory places one function.
func frameCategory(f frame) category {
	n := f.name
	switch {
	case f.c:
		if strings.HasPrefix(filepath.Base(f.file), "[vdso") {
			return catRuntime
		}
		return catKafka
	case strings.HasPrefix(n, "runtime.cgo"), n == "runtime.asmcgocall", n == "runtime._ExternalCode",
		strings.HasPrefix(n, "_cgo_"), strings.Contains(n, "._Cfunc_"), strings.Contains(n, "._cgo_"),
		strings.HasPrefix(n, "github.com/confluentinc/confluent-kafka-go/"),
		strings.HasPrefix(n, "github.com/kafkagate/gateway/internal/rdkafka"):
		return catKafka
	case strings.HasPrefix(n, "google.golang.org/grpc"), strings.HasPrefix(n, "golang.org/x/net/http2"),
		strings.HasPrefix(n, "golang.org/x/net/internal/timeseries"), strings.HasPrefix(n, "golang.org/x/net/trace"),
		strings.HasPrefix(n, "github.com/grpc-ecosystem/"):
		return catGRPC
	case strings.HasPrefix(n, "google.golang.org/protobuf/"), strings.HasPrefix(n, "github.com/golang/protobuf/"),
		strings.HasPrefix(n, "github.com/kafkagate/gateway/gen/"), strings.HasPrefix(n, "google.golang.org/genproto/"):
		return catProto
	case strings.HasPrefix(n, "github.com/kafkagate/gateway/"), strings.HasPrefix(n, "main."):
		return catOwn
	case strings.HasPrefix(n, "runtime."):
		if runtimeHelper(n) {
			return catNeutral
		}
		return catRuntime
	case isStdlib(n):
		return catNeutral
	}
	return catOther
}

// runtimeHelper reports whether a runtime function works for its caller
// rather than for the runtime itself.
func runtimeHelper(n string) bool {
	for _, p := range []string{
		"runtime.memmove", "runtime.memclr", "runtime.memequal", "runtime.memhash", "runtime.aeshash",
		"runtime.strhash", "runtime.nilinterhash", "runtime.interhash", "runtime.efaceeq", "runtime.ifaceeq",
		"runtime.cmpstring", "runtime.concatstring", "runtime.slicebytetostring", "runtime.stringtoslicebyte",
		"runtime.intstring", "runtime.convT", "runtime.convI", "runtime.assertE2I", "runtime.typeAssert",
		"runtime.getitab", "runtime.mapaccess", "runtime.mapassign", "runtime.mapdelete", "runtime.mapiter",
		"runtime.entersyscall", "runtime.exitsyscall", "runtime.reentersyscall", "runtime.entersyscallblock",
		"runtime.nanotime", "runtime.walltime", "runtime.time_now", "runtime.fastrand", "runtime.rand",
		"runtime.cheaprand", "runtime.duffcopy", "runtime.duffzero", "runtime.panicIndex", "runtime.deferreturn",
		"runtime.typedmemmove", "runtime.typedslicecopy", "runtime.wbMove", "runtime.bulkBarrierPreWrite",
		"runtime.procyield", "runtime.getcallerpc", "runtime.callers", "runtime.Callers", "runtime.FuncForPC",
		"runtime.KeepAlive", "runtime.systemstack", "runtime.asyncPreempt",
	} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// isStdlib reports whether the function is of the standard library (its
// package path has no dot before the first slash), runtime aside.
func isStdlib(n string) bool {
	pkg := n
	if i := strings.Index(pkg, "/"); i >= 0 {
		pkg = pkg[:i]
	} else if i := strings.Index(pkg, "."); i >= 0 {
		pkg = pkg[:i]
	}
	return pkg != "" && !strings.Contains(pkg, ".") && !strings.HasPrefix(n, "main.")
}

// isMallocGC reports whether a runtime sample is memory allocation or GC.
func isMallocGC(stack []frame) bool {
	for _, f := range stack {
		n := f.name
		if !strings.HasPrefix(n, "runtime.") && !strings.HasPrefix(n, "internal/runtime/") {
			return false
		}
		for _, p := range []string{
			"runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.makemap",
			"runtime.newarray", "runtime.rawstring", "runtime.rawbyteslice", "runtime.gc", "runtime.bgsweep",
			"runtime.bgscavenge", "runtime.scanobject", "runtime.markroot", "runtime.greyobject", "runtime.sweepone",
			"runtime.(*mheap)", "runtime.(*mcache)", "runtime.(*mcentral)", "runtime.(*gcWork)", "runtime.(*sweepLocked)",
			"runtime.(*mspan)", "runtime.scanblock", "runtime.scanstack", "runtime.findObject", "runtime.wbBuf",
			"runtime.deductAssistCredit", "runtime.(*gcControllerState)", "runtime._GC", "runtime.typePointers",
			"runtime.heapSetType", "runtime.(*gcBits)", "runtime.(*pageAlloc)", "runtime.sysAlloc", "runtime.sysUsed",
		} {
			if strings.HasPrefix(n, p) {
				return true
			}
		}
	}
	return false
}

// isStackGrowth reports whether a runtime sample grows a goroutine's
// stack (a new goroutine's, mostly).
func isStackGrowth(stack []frame) bool {
	for _, f := range stack {
		switch f.name {
		case "runtime.newstack", "runtime.copystack", "runtime.morestack":
			return true
		}
		if !strings.HasPrefix(f.name, "runtime.") {
			return false
		}
	}
	return false
}

// isEntryPoint reports whether the function starts a thread or a goroutine,
// or is the bench's own main path: on many stacks, it tells nothing.
func isEntryPoint(n string) bool {
	switch n {
	case "runtime.goexit", "runtime.mstart", "runtime.mstart0", "runtime.mstart1", "runtime.main",
		"runtime.mcall", "runtime._ExternalCode", "runtime._System", "runtime.rt0_go",
		"main.main", "main.run", "main.(*bench).runScenarios":
		return true
	}
	return false
}

// allocatingCaller is the innermost frame outside the runtime and the
// standard library of a malloc sample: the code that allocated.
func allocatingCaller(stack []frame) string {
	for _, f := range stack {
		if c := frameCategory(f); c != catNeutral && c != catRuntime {
			return f.name
		}
	}
	return ""
}
