package dedupe

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/testenv"
)

// forEachRedis runs fn as parallel subtests against the real Redis
// ("redis", skipped without it) and an embedded-mode miniredis
// ("miniredis"), each with its own client.
func forEachRedis(t *testing.T, fn func(t *testing.T, rdb redis.UniversalClient)) {
	t.Helper()
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		fn(t, realClient(t))
	})
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		fn(t, miniClient(t))
	})
}

// realClient returns a client of the real test Redis, closed at cleanup.
func realClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{testenv.Redis(t)}
	rdb := newClient(t, cfg)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// miniClient starts miniredis the way embedded mode runs it (TTLs follow
// the wall clock) and returns a client of it, closed at cleanup.
func miniClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	m := miniredis.RunT(t)
	m.ClockTTL(true)
	cfg := DefaultConfig().Redis
	cfg.Addrs = []string{m.Addr()}
	// miniredis builds a fresh Lua interpreter for every script call
	// (about 0.5 ms, several times that under -race): a batch of 1,000
	// takes longer than the default read timeout.
	cfg.ReadTimeout = 10 * time.Second
	rdb := newClient(t, cfg)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// testPrefix returns a key prefix unique to this test; its keys are
// deleted at cleanup.
func testPrefix(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	prefix := testenv.UniqueName("dedupetest") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 1000 {
				rdb.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			rdb.Unlink(ctx, keys...)
		}
	})
	return prefix
}

// testCtx returns a context ending with the test, bounded to 30 s.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// warmUp loads the scripts and opens a pipeline connection, so that
// counted round trips are the batch's only (a new connection's handshake
// goes through the hooks too).
func warmUp(t testing.TB, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, []Key{{Group: "warm-up", Topic: "warm-up", MessageID: "warm-up"}}); err != nil {
		t.Fatal(err)
	}
}

// quietLogger drops go-redis's log lines (dial failures the tests cause on
// purpose).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietLogger{}) }

// countHook counts the commands and pipelines a client sends.
type countHook struct {
	processes atomic.Int64
	pipelines atomic.Int64
	piped     atomic.Int64 // commands sent in pipelines
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.processes.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipelines.Add(1)
		h.piped.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func (h *countHook) reset() {
	h.processes.Store(0)
	h.pipelines.Store(0)
	h.piped.Store(0)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// claim1 claims one message and returns its outcome.
func claim1(t testing.TB, s *Store, c Claim) Outcome {
	t.Helper()
	out, err := s.Claim(testCtx(t), []Claim{c})
	if err != nil {
		t.Fatalf("claim %+v: %v", c, err)
	}
	return out[0]
}

// confirm1 confirms one delivery and returns the answer.
func confirm1(t testing.TB, s *Store, k Key) bool {
	t.Helper()
	out, err := s.Confirm(testCtx(t), []Key{k})
	if err != nil {
		t.Fatalf("confirm %+v: %v", k, err)
	}
	return out[0]
}

// release1 releases one delivery.
func release1(t testing.TB, s *Store, k Key) {
	t.Helper()
	if err := s.Release(testCtx(t), []Key{k}); err != nil {
		t.Fatalf("release %+v: %v", k, err)
	}
}

// newClient builds c's client, failing the test on a configuration error.
func newClient(tb testing.TB, c RedisConfig) redis.UniversalClient {
	tb.Helper()
	rdb, err := c.NewClient("dedupe.redis")
	if err != nil {
		tb.Fatal(err)
	}
	return rdb
}
