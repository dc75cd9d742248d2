package rediskeys

import (
	"fmt"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Every key under the prefix goes, over several SCAN pages; no other key
// does.
func TestDeleteRemovesThePrefixAndNothingElse(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	for i := range 25_000 {
		if err := mr.Set(fmt.Sprintf("run-1:k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"run-10:k", "other:k", "run-1"} {
		if err := mr.Set(k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	n, err := Delete(t.Context(), rdb, "run-1:*")
	if err != nil || n != 25_000 {
		t.Fatalf("Delete = %d, %v; want 25000 deleted", n, err)
	}
	if got := mr.Keys(); len(got) != 3 {
		t.Errorf("keys left: %v, want run-10:k, other:k and run-1", got)
	}
}
