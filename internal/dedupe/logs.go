package dedupe

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// RouteRedisLogs sends go-redis's own log lines (a failed dial, a pool
// event), which it would print to stderr, to logger at debug level: what
// matters of them reaches the gateway's log as state transitions (dedupe
// degraded, a readiness check failing). go-redis has one logger per
// process, so only main calls this.
func RouteRedisLogs(logger *slog.Logger) { redis.SetLogger(redisLogger{logger}) }

type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.logger.Enabled(ctx, slog.LevelDebug) {
		l.logger.DebugContext(ctx, fmt.Sprintf(format, v...))
	}
}
