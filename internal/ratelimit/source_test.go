package ratelimit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/testenv"
)

func realRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, testenv.UniqueName("limits-test") + ":"
}

const docV1 = "version: one\nrules:\n- {name: r, records: {per_second: 5, burst: 1}, action: reject}\n"
const docV2 = "version: two\nrules:\n- {name: r, records: {per_second: 5000, burst: 1000}, action: reject}\n"

func TestStoreKeepsVersionsAndRefusesInvalidDocuments(t *testing.T) {
	t.Parallel()
	rdb, prefix := realRedis(t)
	s := NewStore(rdb, prefix)
	ctx := t.Context()
	if _, ok, err := s.Get(ctx); err != nil || ok {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	v, err := s.Set(ctx, []byte(docV1), "alice", -1)
	if err != nil || v != 1 {
		t.Fatalf("first set: v%d %v", v, err)
	}
	if _, err := s.Set(ctx, []byte("rules:\n- {name: r, records: {per_second: 0}}"), "mallory", -1); err == nil ||
		!strings.Contains(err.Error(), "rules[0].records.per_second") {
		t.Fatalf("invalid document: %v", err)
	}
	if _, err := s.Set(ctx, []byte(docV2), "bob", 0); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("set based on version 0 while 1 is stored: %v", err)
	}
	if v, err = s.Set(ctx, []byte(docV2), "bob", 1); err != nil || v != 2 {
		t.Fatalf("set based on version 1: v%d %v", v, err)
	}
	st, ok, err := s.Get(ctx)
	if err != nil || !ok || st.Version != 2 || st.Document != docV2 || st.UpdatedBy != "bob" || time.Since(st.UpdatedAt) > time.Minute {
		t.Fatalf("get: %+v %v %v", st, ok, err)
	}
	h, err := s.History(ctx, 10)
	if err != nil || len(h) != 2 || h[0].Version != 2 || h[1].Version != 1 || h[1].Document != docV1 || h[1].UpdatedBy != "alice" {
		t.Fatalf("history: %+v %v", h, err)
	}
}

func TestARedisDocumentChangeIsAppliedAtOnceUnderLoad(t *testing.T) {
	t.Parallel()
	rdb, prefix := realRedis(t)
	s := NewStore(rdb, prefix)
	if _, err := s.Set(t.Context(), []byte(docV1), "test", -1); err != nil {
		t.Fatal(err)
	}
	l := New(nil, testenv.Logger(t))
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// A re-read interval far beyond the test: only the announcement can
	// bring the change in time.
	wg.Go(func() { WatchRedis(ctx, s, time.Hour, l, testenv.Logger(t)) })
	testenv.Eventually(t, 5*time.Second, "version 1 to be in force", func() bool { return l.Version() == RedisVersion(1) })

	// Load: callers keep calling while the document changes.
	var admitted, limited sync.Map
	load := func(phase string) {
		for range 50 {
			err := l.Admit(context.Background(), "app", "t", 1, 1)
			m := &admitted
			if err != nil {
				m = &limited
			}
			n, _ := m.LoadOrStore(phase, new(int))
			*n.(*int)++
			time.Sleep(time.Millisecond)
		}
	}
	load("v1")
	if _, err := s.Set(t.Context(), []byte(docV2), "test", 1); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	testenv.Eventually(t, 2*time.Second, "version 2 to be in force within 2 s", func() bool { return l.Version() == RedisVersion(2) })
	t.Logf("version 2 in force %v after the change", time.Since(changed).Round(time.Millisecond))
	load("v2")
	if n, ok := limited.Load("v1"); !ok || *n.(*int) < 40 {
		t.Fatalf("at 5/s, most calls of v1 should be limited: %v", n)
	}
	if _, ok := limited.Load("v2"); ok {
		t.Fatalf("at 5000/s, no call should be limited")
	}

	// A document written around gatewayctl that does not validate is
	// refused; version 2 stays in force.
	if err := rdb.HSet(t.Context(), s.doc, "version", 3, "document", "rules: [{name: x}]").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(t.Context(), s.channel, 3).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if l.Version() != RedisVersion(2) {
		t.Fatalf("an invalid stored document was applied: %s", l.Version())
	}
}

func TestAChangedLimitsFileIsAppliedAndAnInvalidOneRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "limits.yaml")
	write := func(doc string) {
		// As a ConfigMap update does: a new file swapped in.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(docV1)
	l := New(nil, testenv.Logger(t))
	defer l.Close()
	data, err := LoadFile(path, l)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.Version(), "one (sha256:") {
		t.Fatalf("version %q", l.Version())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { WatchFile(ctx, path, 50*time.Millisecond, data, l, testenv.Logger(t)) })

	write(docV2)
	testenv.Eventually(t, 2*time.Second, "the new file to be in force", func() bool { return strings.HasPrefix(l.Version(), "two ") })
	write("rules:\n- {name: r, records: {per_second: -5}}\n")
	time.Sleep(300 * time.Millisecond)
	if !strings.HasPrefix(l.Version(), "two ") {
		t.Fatalf("an invalid file was applied: %s", l.Version())
	}
	for range 100 {
		if err := l.Admit(context.Background(), "app", "t", 1, 1); err != nil {
			t.Fatalf("the last good limits (5000/s) should admit: %v", err)
		}
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"), l); err == nil || !strings.Contains(err.Error(), "limits.file") {
		t.Fatalf("a missing file at start: %v", err)
	}
}
