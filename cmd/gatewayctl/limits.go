package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

// The limits commands work on the limits document in Redis, which every
// gateway with limits.redis applies at once when it changes: they talk to
// Redis, not to a gateway, so a platform team changes the whole fleet's
// limits from one place. check needs neither.
var limitsCmd = &command{
	name: "limits",
	sub:  []*command{limitsSetCmd, limitsGetCmd, limitsListCmd, limitsCheckCmd},
}

// redisFlags are the flags of the limits commands that reach Redis: the
// same server and key prefix as the gateways' dedupe.redis and
// dedupe.key_prefix.
type redisFlags struct {
	addr, username, password, prefix string
	db                               int
	cluster, tls                     bool
	caFile                           string
}

func (r *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.addr, "redis", envOr("GATEWAYCTL_REDIS", "127.0.0.1:6379"), "Redis host:port, as the gateways' dedupe.redis.addrs (env GATEWAYCTL_REDIS)")
	fs.StringVar(&r.username, "redis-username", os.Getenv("GATEWAYCTL_REDIS_USERNAME"), "Redis ACL user (env GATEWAYCTL_REDIS_USERNAME)")
	r.password = os.Getenv("GATEWAYCTL_REDIS_PASSWORD") // not a flag: it would show in the process list
	fs.IntVar(&r.db, "redis-db", 0, "Redis database number")
	fs.BoolVar(&r.cluster, "redis-cluster", false, "Redis is a Cluster behind this one address, as the gateways' dedupe.redis.cluster")
	fs.BoolVar(&r.tls, "redis-tls", os.Getenv("GATEWAYCTL_REDIS_TLS") == "true", "connect to Redis over TLS, as the gateways' dedupe.redis.tls.enabled (env GATEWAYCTL_REDIS_TLS=true)")
	fs.StringVar(&r.caFile, "redis-ca-file", os.Getenv("GATEWAYCTL_REDIS_CA_FILE"), "PEM CA of Redis's certificate; empty: the system's (env GATEWAYCTL_REDIS_CA_FILE)")
	fs.StringVar(&r.prefix, "key-prefix", envOr("GATEWAYCTL_KEY_PREFIX", "gateway:"), "key prefix, as the gateways' dedupe.key_prefix (env GATEWAYCTL_KEY_PREFIX)")
}

// withStore runs fn with the limits store in Redis and a context bounded
// by --timeout.
func (r *redisFlags) withStore(ctx context.Context, e *env, fn func(ctx context.Context, s *ratelimit.Store) error) error {
	cfg := dedupe.DefaultConfig().Redis
	cfg.Addrs, cfg.Username, cfg.Password, cfg.DB, cfg.Cluster = []string{r.addr}, r.username, r.password, r.db, r.cluster
	cfg.TLS = dedupe.RedisTLS{Enabled: r.tls, CAFile: r.caFile}
	rdb, err := cfg.NewClient("--redis")
	if err != nil {
		return err
	}
	defer rdb.Close()
	cctx, cancel := e.callCtx(ctx, true)
	defer cancel()
	return fn(cctx, ratelimit.NewStore(rdb, r.prefix))
}

// readDocument reads a limits document from a file, or stdin for "-".
func readDocument(e *env, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(e.stdin)
	}
	return os.ReadFile(name)
}

var limitsSetCmd = &command{
	name:    "set",
	args:    "FILE|-",
	summary: "validate a limits document and store it as the next version; every gateway with limits.redis applies it at once",
	help: `The document is refused as a whole, naming the field, if it does not validate;
nothing is stored then. With --if-version, it is stored only if the version in
Redis is still that one (so two people editing at once cannot overwrite each
other). deploy/limits.yaml documents the format.`,
	setup: func(fs *flag.FlagSet) runFunc {
		var rf redisFlags
		rf.register(fs)
		ifVersion := fs.Int64("if-version", -1, "store only if this is the version in Redis (-1: any)")
		by := fs.String("by", "", "who makes the change, kept in the history (default: the OS user)")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usageErr("name one limits document file, or - for stdin")
			}
			data, err := readDocument(e, args[0])
			if err != nil {
				return err
			}
			if *by == "" {
				if u, err := user.Current(); err == nil {
					*by = u.Username
				}
			}
			return rf.withStore(ctx, e, func(ctx context.Context, s *ratelimit.Store) error {
				v, err := s.Set(ctx, data, *by, *ifVersion)
				if err != nil {
					return err
				}
				if e.json() {
					return e.printJSONLine(map[string]any{"version": v, "in_force_as": ratelimit.RedisVersion(v)})
				}
				fmt.Fprintf(e.stdout, "stored limits version %d; gateways report it in force as %q\n", v, ratelimit.RedisVersion(v))
				return nil
			})
		}
	},
}

var limitsGetCmd = &command{
	name:    "get",
	summary: "print the limits document in Redis (or an earlier version)",
	setup: func(fs *flag.FlagSet) runFunc {
		var rf redisFlags
		rf.register(fs)
		version := fs.Int64("version", 0, "an earlier version, from the history (0: the current one)")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usageErr("unexpected arguments %q", args)
			}
			return rf.withStore(ctx, e, func(ctx context.Context, s *ratelimit.Store) error {
				st, err := storedVersion(ctx, s, *version)
				if err != nil {
					return err
				}
				if e.json() {
					return e.printJSONLine(st)
				}
				fmt.Fprintf(e.stderr, "# version %d, stored %s by %s\n", st.Version, st.UpdatedAt.Format(time.RFC3339), st.UpdatedBy)
				_, err = io.WriteString(e.stdout, st.Document)
				return err
			})
		}
	},
}

// storedVersion returns the current document, or version v from the
// history (v ≠ 0).
func storedVersion(ctx context.Context, s *ratelimit.Store, v int64) (ratelimit.Stored, error) {
	st, ok, err := s.Get(ctx)
	if err != nil {
		return st, err
	}
	if !ok {
		return st, errors.New("no limits document is stored (gateways with limits.redis apply no limits)")
	}
	if v == 0 || v == st.Version {
		return st, nil
	}
	h, err := s.History(ctx, 1000)
	if err != nil {
		return st, err
	}
	for _, old := range h {
		if old.Version == v {
			return old, nil
		}
	}
	return st, fmt.Errorf("version %d is not in the history (the current version is %d; the history keeps the last %d)", v, st.Version, len(h))
}

var limitsListCmd = &command{
	name:    "list",
	summary: "list the stored versions of the limits document, newest first",
	setup: func(fs *flag.FlagSet) runFunc {
		var rf redisFlags
		rf.register(fs)
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usageErr("unexpected arguments %q", args)
			}
			return rf.withStore(ctx, e, func(ctx context.Context, s *ratelimit.Store) error {
				h, err := s.History(ctx, 1000)
				if err != nil {
					return err
				}
				if e.json() {
					for _, st := range h {
						if err := e.printJSONLine(st); err != nil {
							return err
						}
					}
					return nil
				}
				t := e.table("VERSION", "STORED", "BY", "LABEL", "RULES")
				for _, st := range h {
					label, rules := "-", "invalid"
					if d, err := ratelimit.ParseDocument([]byte(st.Document)); err == nil {
						rules = fmt.Sprint(len(d.Rules))
						if d.Version != "" {
							label = d.Version
						}
					}
					t.row(st.Version, st.UpdatedAt.Format(time.RFC3339), st.UpdatedBy, label, rules)
				}
				t.flush()
				return nil
			})
		}
	},
}

var limitsCheckCmd = &command{
	name:    "check",
	args:    "FILE|-",
	summary: "validate a limits document without storing it (for a ConfigMap, or before set)",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return usageErr("name one limits document file, or - for stdin")
			}
			data, err := readDocument(e, args[0])
			if err != nil {
				return err
			}
			d, err := ratelimit.ParseDocument(data)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSONLine(map[string]any{"valid": true, "rules": len(d.Rules), "version": ratelimit.FileVersion(d, data)})
			}
			fmt.Fprintf(e.stdout, "valid: %d rules; a gateway reading it from a file reports it in force as %q\n", len(d.Rules), ratelimit.FileVersion(d, data))
			return nil
		}
	},
}
