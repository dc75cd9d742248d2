//go:build linux && cgo

package cmalloc

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// childEnv makes the test binary allocate instead of running the tests.
const childEnv = "CMALLOC_TEST_CHILD"

func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv(childEnv); ok {
		allocateOnManyThreads(8)
		os.Stdout.WriteString(strconv.Itoa(Arenas()) + "\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// allocateOnManyThreads makes n threads allocate C memory at the same
// time, each on an OS thread of its own.
func allocateOnManyThreads(n int) {
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread() // the thread exits with the goroutine
			ready.Done()
			ready.Wait()
			churn(1000, 256)
		}()
	}
	done.Wait()
}

// arenasOfChild runs a fresh process of the test binary (which imports the
// package) that allocates on many threads at once, with arenaMax as its
// MALLOC_ARENA_MAX ("" for none), and returns its arena count.
func arenasOfChild(t *testing.T, arenaMax string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	env := []string{childEnv + "=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MALLOC_ARENA_MAX=") {
			env = append(env, kv)
		}
	}
	if arenaMax != "" {
		env = append(env, "MALLOC_ARENA_MAX="+arenaMax)
	}
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child (MALLOC_ARENA_MAX=%q): %v: %s", arenaMax, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("child (MALLOC_ARENA_MAX=%q) printed %q", arenaMax, out)
	}
	return n
}

func TestEveryThreadAllocatesFromOneArena(t *testing.T) {
	if n := arenasOfChild(t, ""); n != 1 {
		t.Errorf("threads allocating in a process importing the package made %d arenas, want 1", n)
	}
}

// MALLOC_ARENA_MAX wins; and the count above means something only because
// threads that may make arenas of their own do.
func TestTheEnvironmentsArenaLimitWins(t *testing.T) {
	if n := arenasOfChild(t, "8"); n < 2 {
		t.Errorf("threads allocating with MALLOC_ARENA_MAX=8 made %d arenas, want several", n)
	}
}

func TestOneArenaSaysWhoSetTheLimit(t *testing.T) {
	_, set := os.LookupEnv("MALLOC_ARENA_MAX")
	if got := OneArena(); got == set {
		t.Errorf("OneArena() = %v with MALLOC_ARENA_MAX set: %v", got, set)
	}
}
