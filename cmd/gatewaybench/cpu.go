package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU is the CPU time the processes used during a measurement.
type CPU struct {
	Wall    time.Duration
	Gateway time.Duration // the gateway subprocess (0 when none took part)
	Bench   time.Duration // this process: the gRPC client, or the direct producer with its librdkafka threads
	Broker  time.Duration // the broker JVM (0 when its pid is unknown)
	Redis   time.Duration // redis-server, for a gateway that uses it (0 otherwise, or when its pid is unknown)
	Echo    time.Duration // the echo server of grpc-echo-64 (0 when none took part)
}

// cpuMark is a snapshot of the processes' CPU times.
type cpuMark struct {
	at                                  time.Time
	gwPID, brokerPID, redisPID, echoPID int
	gateway, bench, broker, redis, echo time.Duration
}

// markCPU snapshots CPU times; gw may be nil. Redis counts only when gw
// uses it (dedupe on) and its pid is known.
func (b *bench) markCPU(gw *gatewayProc) cpuMark {
	return b.markCPUOf(gw, 0)
}

// markCPUOf is markCPU with the echo server's pid too (0: none).
func (b *bench) markCPUOf(gw *gatewayProc, echoPID int) cpuMark {
	m := cpuMark{at: time.Now(), brokerPID: b.opts.brokerPID, echoPID: echoPID}
	if echoPID > 0 {
		m.echo = procCPU(echoPID)
	}
	if gw != nil {
		m.gwPID = gw.pid()
		m.gateway = procCPU(m.gwPID)
		if gw.usesRedis && b.opts.redisPID > 0 {
			m.redisPID = b.opts.redisPID
			m.redis = procCPU(m.redisPID)
		}
	}
	if m.brokerPID > 0 {
		m.broker = procCPU(m.brokerPID)
	}
	m.bench = selfCPU()
	return m
}

// since returns the CPU used from m until now.
func (m cpuMark) since() CPU {
	c := CPU{Wall: time.Since(m.at), Bench: selfCPU() - m.bench}
	if m.gwPID > 0 {
		c.Gateway = procCPU(m.gwPID) - m.gateway
	}
	if m.brokerPID > 0 {
		c.Broker = procCPU(m.brokerPID) - m.broker
	}
	if m.redisPID > 0 {
		c.Redis = procCPU(m.redisPID) - m.redis
	}
	if m.echoPID > 0 {
		c.Echo = procCPU(m.echoPID) - m.echo
	}
	return c
}

// cpuShare is one process's part of a measurement's CPU.
type cpuShare struct {
	label string // gw, echo, bench, broker, redis
	d     time.Duration
}

// shares lists the processes that took part, in the order the report
// shows them: the server (gateway or echo server), the bench client, the
// broker, Redis.
func (c CPU) shares() []cpuShare {
	var out []cpuShare
	if c.Gateway > 0 {
		out = append(out, cpuShare{"gw", c.Gateway})
	}
	if c.Echo > 0 {
		out = append(out, cpuShare{"echo", c.Echo})
	}
	out = append(out, cpuShare{"bench", c.Bench})
	if c.Broker > 0 {
		out = append(out, cpuShare{"broker", c.Broker})
	}
	if c.Redis > 0 {
		out = append(out, cpuShare{"redis", c.Redis})
	}
	return out
}

// Total is the CPU time of every measured process.
func (c CPU) Total() time.Duration { return c.Gateway + c.Echo + c.Bench + c.Broker + c.Redis }

// perUnit is d per unit of work at rate units per second over the
// measurement, in microseconds.
func (c CPU) perUnit(d time.Duration, rate float64) float64 {
	if c.Wall <= 0 || rate <= 0 {
		return 0
	}
	return d.Seconds() / c.Wall.Seconds() / rate * 1e6
}

// cores is d as cores busy over the measurement.
func (c CPU) cores(d time.Duration) float64 {
	if c.Wall <= 0 {
		return 0
	}
	return d.Seconds() / c.Wall.Seconds()
}

// PerUnitText shows each process's CPU per record (or per call) at rate,
// in microseconds, and the sum.
func (c CPU) PerUnitText(rate float64) string {
	if c.Wall <= 0 || rate <= 0 {
		return ""
	}
	var parts []string
	for _, s := range c.shares() {
		parts = append(parts, fmt.Sprintf("%s %.1f", s.label, c.perUnit(s.d, rate)))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; all %.1f", c.perUnit(c.Total(), rate))
}

// String shows each process's CPU time as cores busy on average.
func (c CPU) String() string {
	if c.Wall <= 0 {
		return ""
	}
	var parts []string
	for _, s := range c.shares() {
		parts = append(parts, fmt.Sprintf("%s %.2f", s.label, s.d.Seconds()/c.Wall.Seconds()))
	}
	return strings.Join(parts, ", ")
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// for every common architecture).
const clockTicks = 100

// procCPU returns utime+stime of pid from /proc/<pid>/stat, or 0.
func procCPU(pid int) time.Duration {
	return statCPU(fmt.Sprintf("/proc/%d/stat", pid))
}

// statCPU returns utime+stime of a process's or a thread's stat file, or 0.
func statCPU(path string) time.Duration {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// rdkThreadCPU returns the CPU time of pid's librdkafka threads (named
// "rdk:main", "rdk:broker1", …), which block every signal and so never
// appear in a Go CPU profile. Threads that ended are not counted.
func rdkThreadCPU(pid int) time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, t := range tasks {
		comm, err := os.ReadFile(filepath.Join(dir, t.Name(), "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "rdk:") {
			continue
		}
		total += statCPU(filepath.Join(dir, t.Name(), "stat"))
	}
	return total
}
