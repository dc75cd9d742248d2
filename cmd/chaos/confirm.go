package main

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/rediskeys"
)

// stateConfirmer reads the gateway's own state to settle acks of unknown
// fate (see confirmer): the done markers in Redis with dedupe, the groups'
// committed offsets without.
type stateConfirmer struct {
	rdb    *redis.Client // with dedupe
	prefix string        // the gateways' dedupe.key_prefix
	topic  string

	// Without dedupe: committed offsets, read at most once a second.
	bootstrap  string
	partitions int
	groups     []string
	mu         sync.Mutex
	read       time.Time
	committed  map[string]map[int32]int64
}

func (h *harness) confirmer(runID string, dedupeOn bool, partitions int, groups []string) *stateConfirmer {
	c := &stateConfirmer{prefix: "chaos-" + runID + ":", topic: h.topic, bootstrap: h.bootstrap, partitions: partitions, groups: groups}
	if dedupeOn {
		c.rdb = redis.NewClient(&redis.Options{Addr: h.redisAddr})
	}
	return c
}

// dropKeys deletes what the run's gateways left in Redis under their key
// prefix (the gateways are stopped by then), and says so through logf.
func (c *stateConfirmer) dropKeys(logf func(string, ...any)) {
	if c.rdb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := rediskeys.Delete(ctx, c.rdb, c.prefix+"*")
	if err != nil {
		logf("redis keys of the run not all deleted (%d were): %v", n, err)
		return
	}
	logf("deleted the run's %d redis keys", n)
}

func (c *stateConfirmer) close() {
	if c.rdb != nil {
		c.rdb.Close()
	}
}

// confirmed is the confirmer of the run.
func (c *stateConfirmer) confirmed(group string, s *source) bool {
	if c.rdb != nil {
		// The gateway's key layout (package dedupe): group and topic names
		// of the harness hold no ':' or '%' to escape.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		v, err := c.rdb.Get(ctx, c.prefix+"dedupe:"+group+":"+c.topic+":"+s.tr.messageID).Result()
		return err == nil && dedupe.IsDone(v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.read) > time.Second {
		if m, err := committedOffsets(c.bootstrap, c.topic, c.partitions, c.groups); err == nil {
			c.committed, c.read = m, time.Now()
		}
	}
	return c.committed[group][s.tr.partition] > s.tr.offset
}
