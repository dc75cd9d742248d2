package produce

import (
	"context"
	"errors"
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
	c.mu.Unlock()
	return e.partitions, e.err
}
