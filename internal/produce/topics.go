package produce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	// topicTTL is how long a topic's partition count is trusted.
	topicTTL = 30 * time.Second
	// missingTTL is how long "no such topic" is remembered, so a flood of
	// calls for a missing topic costs one metadata request a second.
	missingTTL = time.Second
)

// topicCache remembers topics' partition counts.
type topicCache struct {
	lookup func(ctx context.Context, topic string) (int32, error)
	now    func() time.Time
	// createWait, when not 0, is how long get waits at most for an unknown
	// topic to appear (auto-create on: a broker answers "unknown topic"
	// for a second or two while it creates one).
	createWait time.Duration

	mu      sync.Mutex
	entries map[string]topicEntry
}

type topicEntry struct {
	partitions int32
	err        error // ErrUnknownTopic, remembered for missingTTL
	expires    time.Time
}

func newTopicCache(lookup func(context.Context, string) (int32, error), now func() time.Time) *topicCache {
	return &topicCache{lookup: lookup, now: now, entries: make(map[string]topicEntry)}
}

// get returns topic's partition count (0 when not known yet), or an error.
func (c *topicCache) get(ctx context.Context, topic string) (int32, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[topic]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.partitions, e.err
	}

	n, err := c.lookup(ctx, topic)
	if errors.Is(err, ErrUnknownTopic) && c.createWait > 0 {
		n, err = c.waitCreated(ctx, topic, now.Add(c.createWait))
	}
	switch {
	case err == nil && n > 0:
		e = topicEntry{partitions: n, expires: now.Add(topicTTL)}
	case errors.Is(err, ErrUnknownTopic):
		e = topicEntry{err: err, expires: now.Add(missingTTL)}
	default: // not known yet, or the cluster did not answer: ask again next time
		return n, err
	}
	c.mu.Lock()
	c.entries[topic] = e
	if len(c.entries) > maxTopicEntries {
		c.evictLocked(now)
	}
	c.mu.Unlock()
	return e.partitions, e.err
}

// maxTopicEntries bounds the cache: topic names come from callers, and a
// caller naming ever new (missing) topics would otherwise grow it forever.
const maxTopicEntries = 4096

// evictLocked drops the expired entries, and when the cache is still full,
// every "no such topic" entry, then arbitrary ones: the cache is only a
// cache.
func (c *topicCache) evictLocked(now time.Time) {
	for t, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, t)
		}
	}
	for t, e := range c.entries {
		if len(c.entries) <= maxTopicEntries/2 {
			return
		}
		if e.err != nil {
			delete(c.entries, t)
		}
	}
	for t := range c.entries {
		if len(c.entries) <= maxTopicEntries/2 {
			return
		}
		delete(c.entries, t)
	}
}

// size is the number of cached entries, for tests.
func (c *topicCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// waitCreated asks for topic's metadata again, with backoff (50 ms doubling
// to 500 ms), until the broker knows the topic, ctx ends, or until passes;
// nothing is cached meanwhile. It fails with ctx's error, or with
// ErrUnknownTopic when the topic is still unknown at until.
func (c *topicCache) waitCreated(ctx context.Context, topic string, until time.Time) (int32, error) {
	backoff := 50 * time.Millisecond
	for {
		left := until.Sub(c.now())
		if left <= 0 {
			return 0, fmt.Errorf("topic %q: still unknown after %v with auto-create on: %w", topic, c.createWait, ErrUnknownTopic)
		}
		t := time.NewTimer(min(backoff, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("wait for topic %q to be created: %w", topic, ctx.Err())
		case <-t.C:
		}
		n, err := c.lookup(ctx, topic)
		if !errors.Is(err, ErrUnknownTopic) {
			return n, err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
