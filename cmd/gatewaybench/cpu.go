package main

import (
	"fmt"
	"os"
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
}

// cpuMark is a snapshot of the processes' CPU times.
type cpuMark struct {
	at                            time.Time
	gwPID, brokerPID, redisPID    int
	gateway, bench, broker, redis time.Duration
}

// markCPU snapshots CPU times; gw may be nil. Redis counts only when gw
// uses it (dedupe on) and its pid is known.
func (b *bench) markCPU(gw *gatewayProc) cpuMark {
	m := cpuMark{at: time.Now(), brokerPID: b.opts.brokerPID}
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
	return c
}

// String shows each process's CPU time as cores busy on average.
func (c CPU) String() string {
	if c.Wall <= 0 {
		return ""
	}
	cores := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()/c.Wall.Seconds()) }
	var parts []string
	if c.Gateway > 0 {
		parts = append(parts, "gw "+cores(c.Gateway))
	}
	parts = append(parts, "bench "+cores(c.Bench))
	if c.Broker > 0 {
		parts = append(parts, "broker "+cores(c.Broker))
	}
	if c.Redis > 0 {
		parts = append(parts, "redis "+cores(c.Redis))
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
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
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
