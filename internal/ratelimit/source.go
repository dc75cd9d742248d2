package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is where a gateway reads its limits document: a file, or Redis,
// or neither (no limits). It is the limits section of the gateway's config.
type Config struct {
	// File is a limits document (YAML), for example mounted from a
	// Kubernetes ConfigMap. It is read every PollInterval and applied when
	// its content changes.
	File         string        `yaml:"file"`
	PollInterval time.Duration `yaml:"poll_interval"`
	// Redis reads the limits document from Redis (the connection and key
	// prefix of the dedupe section), as gatewayctl limits set writes it:
	// applied as soon as a change is announced, and re-read every
	// RedisPollInterval in case an announcement was missed.
	Redis             bool          `yaml:"redis"`
	RedisPollInterval time.Duration `yaml:"redis_poll_interval"`
}

// DefaultConfig returns the defaults: no limits.
func DefaultConfig() Config {
	return Config{PollInterval: time.Second, RedisPollInterval: 10 * time.Second}
}

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.File != "" && c.Redis:
		return errors.New("limits: file and redis are exclusive: the limits document has one source")
	case c.PollInterval < 10*time.Millisecond:
		return errors.New("limits.poll_interval: must be at least 10ms")
	case c.RedisPollInterval < 10*time.Millisecond:
		return errors.New("limits.redis_poll_interval: must be at least 10ms")
	}
	return nil
}

// FileVersion labels the document read from a file: its own version when
// it has one, and a digest of the content.
func FileVersion(doc Document, data []byte) string {
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:6])
	if doc.Version != "" {
		return doc.Version + " (" + digest + ")"
	}
	return digest
}

// LoadFile reads, validates and applies the limits file; for the start of
// the gateway, where a missing or invalid file is an error.
func LoadFile(path string, lim *Limiter) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("limits.file: %w", err)
	}
	doc, err := ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("limits.file %s: %w", path, err)
	}
	lim.Apply(doc, FileVersion(doc, data))
	return data, nil
}

// WatchFile re-reads the file every interval until ctx ends and applies
// each new content. A content that does not parse or validate is refused
// as a whole, logged once, and the document in force stays. last is the
// content applied at start.
func WatchFile(ctx context.Context, path string, interval time.Duration, last []byte, lim *Limiter, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var refused string // content last refused, so each is logged once
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err != nil {
			if msg := err.Error(); msg != refused {
				logger.Error("limits file unreadable; the limits in force stay", "file", path, "version", lim.Version(), "err", err)
				refused = msg
			}
			continue
		}
		if string(data) == string(last) || string(data) == refused {
			continue
		}
		doc, err := ParseDocument(data)
		if err != nil {
			logger.Error("limits file refused; the limits in force stay", "file", path, "version", lim.Version(), "err", err)
			refused = string(data)
			continue
		}
		lim.Apply(doc, FileVersion(doc, data))
		last, refused = data, ""
	}
}

// Store is the limits document in Redis, with its history:
//
//	<prefix>limits:{doc}        hash: version, document, updated_at, updated_by
//	<prefix>limits:{doc}:history list of the last versions, newest first (JSON)
//
// and each change announced on the channel <prefix>limits:changed.
type Store struct {
	rdb                   redis.UniversalClient
	doc, history, channel string
}

// NewStore returns the store under keyPrefix.
func NewStore(rdb redis.UniversalClient, keyPrefix string) *Store {
	return &Store{
		rdb:     rdb,
		doc:     keyPrefix + "limits:{doc}",
		history: keyPrefix + "limits:{doc}:history",
		channel: keyPrefix + "limits:changed",
	}
}

// Stored is one version of the document.
type Stored struct {
	Version   int64     `json:"version"`
	Document  string    `json:"document"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// ErrVersionConflict is returned by Set when the stored version is not the
// one the caller based its change on.
var ErrVersionConflict = errors.New("the limits document changed meanwhile")

// historyLen is how many versions the history keeps.
const historyLen = 20

// setScript stores a new version. KEYS[1] the document hash, KEYS[2] the
// history; ARGV: document, updated_at, updated_by, the expected version
// (-1: any), the channel, the history length. Returns {new version, 1},
// or {current version, 0} when it is not the expected one.
var setScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local want = tonumber(ARGV[4])
if want >= 0 and v ~= want then
  return {v, 0}
end
v = v + 1
redis.call('HSET', KEYS[1], 'version', v, 'document', ARGV[1], 'updated_at', ARGV[2], 'updated_by', ARGV[3])
redis.call('LPUSH', KEYS[2], cjson.encode({version = v, document = ARGV[1], updated_at = ARGV[2], updated_by = ARGV[3]}))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
redis.call('PUBLISH', ARGV[5], v)
return {v, 1}
`)

// Set validates data and stores it as the next version, announcing it;
// with ifVersion ≥ 0 only when the stored version is ifVersion (else
// ErrVersionConflict). A document that does not validate is refused and
// nothing is stored.
func (s *Store) Set(ctx context.Context, data []byte, by string, ifVersion int64) (int64, error) {
	if _, err := ParseDocument(data); err != nil {
		return 0, err
	}
	at := time.Now().UTC().Format(time.RFC3339Nano)
	vals, err := setScript.Run(ctx, s.rdb, []string{s.doc, s.history}, string(data), at, by, ifVersion, s.channel, historyLen).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("store limits: %w", err)
	}
	if len(vals) != 2 {
		return 0, fmt.Errorf("store limits: unexpected reply %v", vals)
	}
	if vals[1] == 0 {
		return vals[0], fmt.Errorf("%w: version %d is stored, the change was based on %d", ErrVersionConflict, vals[0], ifVersion)
	}
	return vals[0], nil
}

// Get returns the stored document; ok is false when none is stored.
func (s *Store) Get(ctx context.Context) (st Stored, ok bool, err error) {
	m, err := s.rdb.HGetAll(ctx, s.doc).Result()
	if err != nil {
		return Stored{}, false, fmt.Errorf("read limits: %w", err)
	}
	if len(m) == 0 {
		return Stored{}, false, nil
	}
	st.Version, err = strconv.ParseInt(m["version"], 10, 64)
	if err != nil {
		return Stored{}, false, fmt.Errorf("read limits: bad version %q", m["version"])
	}
	st.Document, st.UpdatedBy = m["document"], m["updated_by"]
	st.UpdatedAt, _ = time.Parse(time.RFC3339Nano, m["updated_at"])
	return st, true, nil
}

// History returns up to n of the last versions, newest first.
func (s *Store) History(ctx context.Context, n int) ([]Stored, error) {
	raw, err := s.rdb.LRange(ctx, s.history, 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read limits history: %w", err)
	}
	out := make([]Stored, 0, len(raw))
	for _, r := range raw {
		var e struct {
			Version   int64  `json:"version"`
			Document  string `json:"document"`
			UpdatedAt string `json:"updated_at"`
			UpdatedBy string `json:"updated_by"`
		}
		if err := json.Unmarshal([]byte(r), &e); err != nil {
			return nil, fmt.Errorf("read limits history: %w", err)
		}
		at, _ := time.Parse(time.RFC3339Nano, e.UpdatedAt)
		out = append(out, Stored{Version: e.Version, Document: e.Document, UpdatedAt: at, UpdatedBy: e.UpdatedBy})
	}
	return out, nil
}

// RedisVersion labels a stored version in force.
func RedisVersion(v int64) string { return "redis:" + strconv.FormatInt(v, 10) }

// WatchRedis applies the stored document whenever a change is announced,
// and re-reads it every interval (announcements are not stored, so one
// sent while this gateway was disconnected would be missed), until ctx
// ends. A stored document that does not validate (written around
// gatewayctl) is refused, logged once, and the document in force stays.
func WatchRedis(ctx context.Context, s *Store, interval time.Duration, lim *Limiter, logger *slog.Logger) {
	sub := s.rdb.Subscribe(ctx, s.channel)
	defer sub.Close()
	announced := sub.Channel()
	t := time.NewTicker(interval)
	defer t.Stop()
	var applied, refused int64
	failing := false
	for {
		ctx1, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, ok, err := s.Get(ctx1)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				logger.Warn("limits: redis unavailable; the limits in force stay", "version", lim.Version(), "err", err)
				failing = true
			}
		case !ok || st.Version == applied || st.Version == refused:
			failing = false
		default:
			failing = false
			doc, err := ParseDocument([]byte(st.Document))
			if err != nil {
				logger.Error("limits: stored document refused; the limits in force stay", "stored_version", st.Version, "version", lim.Version(), "err", err)
				refused = st.Version
				break
			}
			lim.Apply(doc, RedisVersion(st.Version))
			applied = st.Version
		}
		select {
		case <-ctx.Done():
			return
		case <-announced:
		case <-t.C:
		}
	}
}
