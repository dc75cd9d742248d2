// Package rediskeys deletes the keys a benchmark or a test run left in
// Redis under its own prefix, without blocking the server: SCAN in pages
// and UNLINK (the memory is freed in the background).
package rediskeys

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Delete deletes the keys matching pattern and returns how many it
// deleted, also when it stops at an error.
func Delete(ctx context.Context, rdb redis.Cmdable, pattern string) (int64, error) {
	var n int64
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 10_000).Result()
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			d, err := rdb.Unlink(ctx, keys...).Result()
			n += d
			if err != nil {
				return n, err
			}
		}
		cursor = next
		if cursor == 0 {
			return n, nil
		}
	}
}
