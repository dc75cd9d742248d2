// Package gateway wires the gateway together: embedded services (when
// enabled), the producer, and the gRPC server with health and reflection;
// and it runs the shutdown in order (see DESIGN.md).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/admin"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/consume"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/embedded"
	"github.com/kafkagate/gateway/internal/grpcapi"
	"github.com/kafkagate/gateway/internal/produce"
	"github.com/kafkagate/gateway/internal/ratelimit"
)

// Gateway is a configured gateway with its listeners bound. Create it with
// New, then call Run once.
type Gateway struct {
	cfg    config.Config
	logger *slog.Logger

	embedded    *embedded.Services // nil unless embedded mode
	producer    *produce.Producer
	consumers   *consume.Manager
	admin       *admin.Service        // nil when admin.enabled is false
	redis       redis.UniversalClient // nil unless Redis is configured
	idempotency *dedupe.Store         // producer idempotency keys; nil without Redis
	owner       string                // this process among those sharing the Redis
	limits      *ratelimit.Limiter
	limitsFile  []byte           // the limits file's content applied at start
	limitsStore *ratelimit.Store // the limits document in Redis; nil unless limits.redis
	server      *grpc.Server
	health      *health.Server
	listeners   []net.Listener
	// healthOnly serves grpc.health.v1 alone on server.health_listen.
	healthOnly     *grpc.Server
	healthListener net.Listener
	tls            *tlsFiles      // nil without server.tls
	conns          *connLimit     // the API listeners' connections
	budget         *requestBudget // request bytes held at once
	draining       chan struct{}
	observability
}

// New validates nothing (call cfg.Validate first) and builds the gateway:
// it starts the embedded services when enabled, creates the producer and
// binds the listeners, so clients can connect as soon as New returns.
func New(cfg config.Config, logger *slog.Logger) (_ *Gateway, err error) {
	g := &Gateway{cfg: cfg, logger: logger, draining: make(chan struct{}),
		conns:  &connLimit{max: int64(cfg.Server.MaxConnections)},
		budget: &requestBudget{max: int64(cfg.Server.MaxInflightRequestBytes), perCall: int64(cfg.Server.MaxRecvBytes)}}
	defer func() {
		if err != nil {
			g.closeResources()
		}
	}()

	if cfg.Embedded.Enabled {
		g.embedded, err = embedded.Start(cfg.Embedded.Config, logger)
		if err != nil {
			return nil, err
		}
		g.cfg.Kafka.BootstrapServers = g.embedded.KafkaBootstrap()
		// Embedded mode is for trying things: topics appear on first use.
		g.cfg.Producer.AutoCreateTopics = true
	}

	// Bind before the producer exists, so a failed bind leaves no client
	// to close.
	if err := g.listen(); err != nil {
		return nil, err
	}
	if err := g.observe(); err != nil {
		return nil, err
	}
	g.producer, err = produce.New(g.cfg.Kafka, g.cfg.Producer, logger.With("component", "producer"))
	if err != nil {
		return nil, err
	}

	dd, err := g.dedupe()
	if err != nil {
		return nil, err
	}
	if g.idempotency != nil {
		g.producer.EnableIdempotency(g.idempotency, g.cfg.Dedupe.ProduceWindow)
	}
	g.consumers, err = consume.New(g.cfg.Kafka, g.cfg.Consumer, g.producer, g.cfg.Producer.MessageIDHeader, dd, logger.With("component", "consumer"))
	if err != nil {
		return nil, err
	}

	if err := g.startLimits(); err != nil {
		return nil, err
	}
	guard := grpcapi.Guard{Limits: g.limits, Identity: cfg.Identity}

	// Metrics and request logging first: the outermost interceptors, so
	// they see the calls the server's bounds refuse too.
	opts := append(g.serverOptions(), serverOptions(cfg.Server, g.budget, logger.With("component", "grpc"))...)
	if cfg.Server.TLS.Enabled() {
		if g.tls, err = loadTLS(cfg.Server.TLS, logger.With("component", "tls")); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(g.tls.credentials()))
	}
	g.server = grpc.NewServer(opts...)
	gatewayv1.RegisterProducerServiceServer(g.server,
		grpcapi.NewProducerServer(g.producer, guard, logger.With("component", "grpc"), cfg.Server.MaxStreamInflight, g.draining))
	gatewayv1.RegisterConsumerServiceServer(g.server, grpcapi.NewConsumerServer(g.consumers, guard, logger.With("component", "grpc")))
	if cfg.Admin.Enabled {
		if err := g.registerAdmin(); err != nil {
			return nil, err
		}
	}
	g.health = health.NewServer()
	healthpb.RegisterHealthServer(g.server, g.health)
	if g.healthListener != nil {
		g.healthOnly = grpc.NewServer(grpc.MaxRecvMsgSize(4<<10), grpc.MaxConcurrentStreams(16))
		healthpb.RegisterHealthServer(g.healthOnly, g.health)
	}
	if cfg.Server.PlaintextOnNetwork() {
		logger.Warn("serving the whole API in plaintext on a network address (server.insecure_plaintext_api_on_network): anyone who reaches it can produce, consume, ack and reset offsets",
			"listen", cfg.Server.Listen)
	}
	if cfg.Server.Reflection {
		reflection.Register(g.server)
	}
	g.instrument()
	return g, nil
}

// registerAdmin creates the admin service and registers it (when
// admin.enabled; otherwise its calls are UNIMPLEMENTED).
func (g *Gateway) registerAdmin() error {
	var err error
	g.admin, err = admin.New(admin.Options{
		Kafka:                g.cfg.Kafka,
		Consumers:            g.consumers,
		Producer:             g.producer,
		MessageIDHeader:      g.cfg.Producer.MessageIDHeader,
		MaxRecordsPerRequest: g.cfg.Producer.MaxRecordsPerRequest,
		RequestTimeout:       g.cfg.Admin.RequestTimeout,
		Logger:               g.logger.With("component", "admin"),
	})
	if err != nil {
		return err
	}
	gatewayv1.RegisterAdminServiceServer(g.server, grpcapi.NewAdminServer(g.admin, g.cfg.Admin, grpcapi.Guard{Limits: g.limits, Identity: g.cfg.Identity}, g.draining, g.logger.With("component", "grpc")))
	return nil
}

func (g *Gateway) listen() error {
	if addr := g.cfg.Server.HealthListen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("server.health_listen: %w", err)
		}
		g.healthListener = limitListener{ln, &connLimit{max: healthMaxConnections}}
	}
	if addr := g.cfg.Server.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("server.listen: %w", err)
		}
		g.listeners = append(g.listeners, limitListener{ln, g.conns})
	}
	if path := g.cfg.Server.UnixSocket; path != "" {
		// A socket left by a killed gateway would block the bind.
		if err := removeStaleSocket(path); err != nil {
			return fmt.Errorf("server.unix_socket: %w", err)
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			return fmt.Errorf("server.unix_socket: %w", err)
		}
		g.listeners = append(g.listeners, limitListener{ln, g.conns})
		mode, _ := g.cfg.Server.SocketMode() // validated
		if err := os.Chmod(path, os.FileMode(mode)); err != nil {
			return fmt.Errorf("server.unix_socket_mode: %w", err)
		}
	}
	return nil
}

// removeStaleSocket removes the file at path when it is a socket nobody
// listens on (left by a gateway that was killed), and refuses anything
// else: another kind of file (never the gateway's to delete), or a socket
// some process listens on (another gateway, say).
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != os.ModeSocket:
		kind := "a " + fi.Mode().Type().String() + " file"
		switch {
		case fi.Mode().IsRegular():
			kind = "a regular file"
		case fi.IsDir():
			kind = "a directory"
		case fi.Mode()&os.ModeSymlink != 0:
			kind = "a symbolic link"
		}
		return fmt.Errorf("%s exists and is %s, not a socket: refusing to remove it", path, kind)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%s is in use: a process listens on it (another gateway?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether the socket is in use, so it is left alone: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// dedupe connects the dedupe store when dedupe is on; in embedded mode it
// uses the embedded Redis-protocol server.
//
// Producer idempotency keys use the same store whenever Redis is
// configured (dedupe.redis.addrs, or embedded mode), dedupe on or not.
//
// It fails when the server does not fit the client (a Redis Cluster node
// behind a single address without dedupe.redis.cluster, or the reverse); a
// Redis that does not answer yet is checked again by readiness.
func (g *Gateway) dedupe() (*consume.Dedupe, error) {
	c := g.cfg.Dedupe
	if g.embedded != nil && len(c.Redis.Addrs) == 0 {
		c.Redis.Addrs = []string{g.embedded.RedisAddr()}
		// The embedded server runs each script in a fresh interpreter
		// (about 0.5 ms): give batches room.
		c.Redis.ReadTimeout = max(c.Redis.ReadTimeout, 10*time.Second)
	}
	if len(c.Redis.Addrs) == 0 {
		return nil, nil
	}
	rdb, err := c.Redis.NewClient("dedupe.redis")
	if err != nil {
		return nil, err
	}
	g.redis = rdb
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	switch err := dedupe.CheckMode(ctx, g.redis); {
	case errors.Is(err, dedupe.ErrMisconfigured):
		return nil, err
	case err != nil:
		g.logger.Warn("redis does not answer yet; its cluster mode is checked by readiness", "err", err)
	}
	g.owner = dedupe.NewOwner(g.cfg.Consumer.InstanceID)
	store := dedupe.NewStore(g.redis, c.KeyPrefix, c.DoneTTL, g.owner)
	g.idempotency = store
	// Preloading saves the first batches a NOSCRIPT round trip; a Redis
	// that is down now is handled like any later outage.
	if err := store.LoadScripts(ctx); err != nil {
		g.logger.Warn("load dedupe scripts into redis", "err", err)
	}
	if !c.Enabled {
		return nil, nil
	}
	return &consume.Dedupe{
		Claims:    store,
		Deliver:   c.OnRedisFailure == dedupe.FailureDeliver,
		HoldRetry: c.HoldRetry,
		IDHeader:  c.IDHeader,
	}, nil
}

// startLimits creates the limiter and loads the limits document in force
// at start: a limits file must be there and valid; a Redis document that
// cannot be read yet is applied once it can (the watcher logs it).
// Fleet rules share their buckets through Redis whenever it is configured.
func (g *Gateway) startLimits() error {
	var fleet *ratelimit.FleetStore
	if g.redis != nil {
		fleet = ratelimit.NewFleetStore(g.redis, g.cfg.Dedupe.KeyPrefix, g.owner, g.logger.With("component", "limits"))
	}
	g.limits = ratelimit.New(fleet, g.logger.With("component", "limits"))
	switch c := g.cfg.Limits; {
	case c.File != "":
		data, err := ratelimit.LoadFile(c.File, g.limits)
		if err != nil {
			return err
		}
		g.limitsFile = data
	case c.Redis:
		g.limitsStore = ratelimit.NewStore(g.redis, g.cfg.Dedupe.KeyPrefix)
	}
	return nil
}

// watchLimits keeps the limits document current until ctx ends.
func (g *Gateway) watchLimits(ctx context.Context) {
	logger := g.logger.With("component", "limits")
	switch c := g.cfg.Limits; {
	case c.File != "":
		ratelimit.WatchFile(ctx, c.File, c.PollInterval, g.limitsFile, g.limits, logger)
	case g.limitsStore != nil:
		ratelimit.WatchRedis(ctx, g.limitsStore, c.RedisPollInterval, g.limits, logger)
	}
}

// Limits returns the limiter in force (for tests and the admin API).
func (g *Gateway) Limits() *ratelimit.Limiter { return g.limits }

// Addrs returns the bound listener addresses: TCP first, then the Unix
// socket, as configured.
func (g *Gateway) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(g.listeners))
	for i, ln := range g.listeners {
		addrs[i] = ln.Addr()
	}
	return addrs
}

// HealthAddr returns the address of the health-only listener, or "".
func (g *Gateway) HealthAddr() string {
	if g.healthListener == nil {
		return ""
	}
	return g.healthListener.Addr().String()
}

// KafkaBootstrap returns the bootstrap servers the gateway uses (the
// embedded broker's in embedded mode).
func (g *Gateway) KafkaBootstrap() string { return g.cfg.Kafka.BootstrapServers }

// RedisAddr returns the embedded Redis address, or "" outside embedded mode.
func (g *Gateway) RedisAddr() string {
	if g.embedded == nil {
		return ""
	}
	return g.embedded.RedisAddr()
}

// Run serves until ctx is done or a component fails, then shuts down:
//
//  1. health reports NOT_SERVING, and stays so for server.shutdown_grace;
//  2. consumer groups stop delivering, wait for in-flight acks (at most
//     consumer.drain_timeout), commit the acked prefix, end their streams
//     and leave;
//  3. the server stops accepting connections and produce streams stop
//     reading new batches; in-flight calls finish, for at most
//     server.drain_timeout;
//  4. the producer flushes (producer.flush_timeout) and fails whatever is
//     still queued, which answers every remaining call;
//  5. the server stops; the embedded services close.
//
// It returns the error that ended serving, if any.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.closeResources()

	prodCtx, stopProducer := context.WithCancel(context.Background())
	defer stopProducer()
	var wg sync.WaitGroup
	failed := make(chan error, 3+len(g.listeners))
	prodDone := make(chan struct{})
	wg.Go(func() {
		defer close(prodDone)
		if err := g.producer.Run(prodCtx); err != nil {
			failed <- err
		}
	})
	consCtx, stopConsumers := context.WithCancel(context.Background())
	defer stopConsumers()
	consDone := make(chan struct{})
	wg.Go(func() {
		defer close(consDone)
		if err := g.consumers.Run(consCtx); err != nil {
			failed <- err
		}
	})
	limitsCtx, stopLimits := context.WithCancel(context.Background())
	defer stopLimits()
	wg.Go(func() { g.watchLimits(limitsCtx) })
	if g.tls != nil {
		every := g.cfg.Server.TLS.ReloadInterval
		if every == 0 {
			every = 10 * time.Second
		}
		wg.Go(func() { g.tls.watch(limitsCtx, every) })
	}
	for _, ln := range g.listeners {
		wg.Go(func() {
			if err := g.server.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				failed <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		})
	}
	if g.healthOnly != nil {
		wg.Go(func() {
			if err := g.healthOnly.Serve(g.healthListener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				failed <- fmt.Errorf("serve %s: %w", g.healthListener.Addr(), err)
			}
		})
	}
	if g.http != nil {
		wg.Go(func() {
			if err := g.http.Serve(); err != nil {
				failed <- err
			}
		})
	}
	// Health follows the readiness checks (their first round ran in New).
	readyCtx, stopReadiness := context.WithCancel(context.Background())
	defer stopReadiness()
	readinessDone := make(chan struct{})
	wg.Go(func() {
		defer close(readinessDone)
		g.readiness.run(readyCtx)
	})
	canaryCtx, stopCanary := context.WithCancel(context.Background())
	defer stopCanary()
	canaryDone := make(chan struct{})
	if g.canary != nil {
		wg.Go(func() {
			defer close(canaryDone)
			_ = g.canary.Run(canaryCtx)
		})
	} else {
		close(canaryDone)
	}
	addrs := make([]string, len(g.listeners))
	for i, ln := range g.listeners {
		addrs[i] = ln.Addr().String()
	}
	g.logger.Info("gateway serving", "addrs", addrs, "metrics", g.MetricsAddr(), "kafka", g.cfg.Kafka.BootstrapServers, "embedded", g.embedded != nil,
		"ready", g.readiness.err() == nil)

	var runErr error
	healthTick := time.NewTicker(time.Second)
	defer healthTick.Stop()
serve:
	for {
		select {
		case <-ctx.Done():
			g.logger.Info("shutting down")
			break serve
		case runErr = <-failed:
			g.logger.Error("shutting down after failure", "err", runErr)
			break serve
		case <-healthTick.C:
			g.reportHealth()
		}
	}

	// 1. Lame duck; the canary stops writing.
	g.readiness.stop()
	stopReadiness()
	<-readinessDone // its checks use the producer's client
	g.health.Shutdown()
	stopCanary()
	<-canaryDone
	if grace := g.cfg.Server.ShutdownGrace; grace > 0 {
		time.Sleep(grace)
	}
	// 2. Consumers: stop delivering, take in-flight acks (the server still
	// accepts Ack calls), commit, end the Subscribe streams, leave the groups.
	stopConsumers()
	<-consDone
	// 3. Drain the remaining calls.
	close(g.draining)
	stopped := make(chan struct{})
	go func() { g.server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(g.cfg.Server.DrainTimeout):
		g.logger.Warn("calls still in flight after the drain timeout", "timeout", g.cfg.Server.DrainTimeout)
	}
	// 4. Flush the producer (after the consumers: dead letters use it); its
	// shutdown answers every waiting call.
	stopProducer()
	<-prodDone
	// 5. Stop whatever is left.
	g.server.Stop()
	<-stopped
	stopLimits()
	if g.healthOnly != nil {
		g.healthOnly.Stop()
	}
	if g.http != nil {
		g.http.Shutdown()
	}
	wg.Wait()
	g.limits.Close()
	g.logger.Info("gateway stopped")
	return runErr
}

// closeResources releases what New created and Run does not close itself.
func (g *Gateway) closeResources() {
	for _, ln := range g.listeners {
		ln.Close() // already closed by the server when it served
	}
	if g.healthListener != nil {
		g.healthListener.Close()
	}
	if g.admin != nil {
		g.admin.Close()
	}
	if g.http != nil {
		g.http.Shutdown() // a no-op when Run has shut it down
	}
	if g.redis != nil {
		g.redis.Close()
	}
	if g.embedded != nil {
		g.embedded.Close()
	}
}

// serverOptions bound what one client can make the gateway hold: the size
// of a request message, the open streams (per connection and in all),
// the bytes in flight per call and per connection, and the pings it must
// answer; idle or dead connections are probed and closed.
// streamWorkers is the size of the server's pool of call goroutines: as
// many as the unary callers one busy app keeps in flight.
const streamWorkers = 64

func serverOptions(c config.ServerConfig, budget *requestBudget, logger *slog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		// Calls run on a pool of goroutines whose stacks have grown
		// already, instead of a new goroutine per call growing its stack
		// again (a tenth of a unary call's CPU); past the pool, and for
		// long-lived streams holding workers, grpc-go starts goroutines as
		// without it.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.InTapHandle(budget.tap),
		grpc.ChainUnaryInterceptor(budget.unary),
		grpc.ChainStreamInterceptor(budget.stream),
		grpc.MaxRecvMsgSize(c.MaxRecvBytes),
		grpc.MaxConcurrentStreams(uint32(c.MaxConcurrentStreams)),
		grpc.InitialWindowSize(int32(c.StreamWindowBytes)),
		grpc.InitialConnWindowSize(int32(c.ConnWindowBytes)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: c.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: c.KeepaliveTime, Timeout: c.KeepaliveTimeout}),
		grpc.ChainStreamInterceptor(grpcapi.LimitStreams(c.MaxStreams, logger)),
	}
}
