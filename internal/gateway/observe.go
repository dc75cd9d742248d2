package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/canary"
	"github.com/kafkagate/gateway/internal/dedupe"
	"github.com/kafkagate/gateway/internal/grpcapi"
	"github.com/kafkagate/gateway/internal/metrics"
)

// observability is what the gateway exports about itself: the metrics
// registry and its HTTP listener (with the health probes), the readiness
// checks, and the canary. Every field is nil when its feature is off.
type observability struct {
	registry     *metrics.Registry
	http         *metrics.Server
	kafkaStats   *metrics.KafkaStats
	grpc         *metrics.GRPC
	limitMetrics *metrics.Limits
	readiness    *readiness
	canary       *canary.Canary
}

// observe sets up metrics before the Kafka clients exist: the registry, the
// HTTP listener, and librdkafka statistics in the producer's and the
// consumers' properties.
func (g *Gateway) observe() error {
	g.readiness = newReadiness(g.logger.With("component", "readiness"))
	c := g.cfg.Metrics
	if !c.Enabled {
		return nil
	}
	g.registry = metrics.NewRegistry()
	srv, err := metrics.Listen(c, g.registry, g.readiness.err, g.logger.With("component", "metrics"))
	if err != nil {
		return err
	}
	g.http = srv
	g.readiness.metrics = metrics.RegisterReadiness(g.registry)
	g.grpc = metrics.RegisterGRPC(g.registry)
	g.limitMetrics = metrics.RegisterLimits(g.registry)
	if c.KafkaStatisticsInterval > 0 {
		g.kafkaStats = metrics.RegisterKafkaStats(g.registry, c.KafkaStatisticsInterval)
		ms := strconv.FormatInt(c.KafkaStatisticsInterval.Milliseconds(), 10)
		g.cfg.Producer.Properties = withDefault(g.cfg.Producer.Properties, "statistics.interval.ms", ms)
		g.cfg.Consumer.Properties = withDefault(g.cfg.Consumer.Properties, "statistics.interval.ms", ms)
	}
	return nil
}

// withDefault returns a copy of props with key set to value unless props
// sets it already.
func withDefault(props map[string]string, key, value string) map[string]string {
	out := maps.Clone(props)
	if out == nil {
		out = map[string]string{}
	}
	if _, ok := out[key]; !ok {
		out[key] = value
	}
	return out
}

// serverOptions are the gRPC server's interceptors: metrics per method
// and code, and request logging at debug level.
func (g *Gateway) serverOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if g.grpc != nil {
		opts = append(opts, g.grpc.ServerOptions()...)
	}
	return append(opts, grpcapi.RequestLogging(g.logger.With("component", "grpc"))...)
}

// instrument attaches the metrics to the producer, the consumers and the
// server, sets up the readiness checks and runs their first round, and
// creates the canary, once all of them exist.
func (g *Gateway) instrument() {
	g.readiness.add("kafka", g.producer.CheckCluster)
	// Redis is needed by dedupe, and by central limits read from it.
	if (g.cfg.Dedupe.Enabled || g.cfg.Limits.Redis) && g.redis != nil {
		// A check of the server's cluster mode answers like a PING, and
		// reports a misconfiguration found after start-up by its name.
		g.readiness.add("redis", func(ctx context.Context) error { return dedupe.CheckMode(ctx, g.redis) })
	}
	g.limitMetrics.SetSource(func() (map[string]metrics.LimitCounts, int64) {
		by, denied := g.limits.Counts()
		out := make(map[string]metrics.LimitCounts, len(by))
		for r, c := range by {
			out[r] = metrics.LimitCounts(c)
		}
		return out, denied
	}, g.limits.Version)
	var canaryObs canary.Observer
	if g.registry != nil {
		g.producer.SetObserver(metrics.NewProducer(g.registry, g.producer.QueueLen))
		metrics.RegisterConsumer(g.registry, g.consumers.Groups)
		metrics.RegisterBounds(g.registry, func() metrics.Bounds {
			return metrics.Bounds{
				Refused: map[string]int64{
					"connections":     g.conns.refused.Load(),
					"request_bytes":   g.budget.refused.Load(),
					"consumer_groups": g.consumers.GroupsRefused(),
				},
				Connections:  g.conns.open.Load(),
				RequestBytes: g.budget.used.Load(),
			}
		})
		g.grpc.Init(g.server)
		if g.cfg.Canary.Enabled {
			canaryObs = metrics.RegisterCanary(g.registry)
		}
	}
	if g.kafkaStats != nil {
		g.producer.SetStatsHandler(g.kafkaStats.Producer)
		g.consumers.SetStatsHandler(g.kafkaStats.Consumer)
	}
	if c := g.cfg.Canary; c.Enabled {
		g.canary = canary.New(c, c.GroupName(g.cfg.Consumer.InstanceID), g.cfg.Kafka, g.producer, g.consumers,
			canaryObs, g.logger.With("component", "canary"))
	}
	// The first round of checks, so that health is known as soon as New
	// returns (at most checkTimeout when a dependency does not answer).
	g.readiness.checkNow(context.Background())
	g.reportHealth()
}

// MetricsAddr returns the bound address of the metrics and health listener,
// or "" when metrics are off.
func (g *Gateway) MetricsAddr() string {
	if g.http == nil {
		return ""
	}
	return g.http.Addr().String()
}

// LimitMetrics returns the rate-limit metrics, or nil when metrics are off
// (its methods accept a nil receiver).
func (g *Gateway) LimitMetrics() *metrics.Limits { return g.limitMetrics }

// reportHealth sets the gRPC health of each service from the latest
// readiness checks: the producer and admin services need Kafka; the
// consumer service needs Kafka, Redis when dedupe is on, and dedupe not
// degraded; the overall "" entry needs every check.
func (g *Gateway) reportHealth() {
	status := func(ok bool) healthpb.HealthCheckResponse_ServingStatus {
		if ok {
			return healthpb.HealthCheckResponse_SERVING
		}
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	kafka := g.readiness.up("kafka")
	ready := g.readiness.err() == nil
	g.health.SetServingStatus("", status(ready))
	g.health.SetServingStatus(gatewayv1.ProducerService_ServiceDesc.ServiceName, status(kafka))
	g.health.SetServingStatus(gatewayv1.ConsumerService_ServiceDesc.ServiceName,
		status(kafka && g.readiness.up("redis") && !g.consumers.Degraded()))
	if g.admin != nil {
		g.health.SetServingStatus(gatewayv1.AdminService_ServiceDesc.ServiceName, status(kafka))
	}
}

// readiness runs the readiness checks and keeps their latest results, for
// /readyz, gRPC health and the metrics.
type readiness struct {
	logger  *slog.Logger
	metrics *metrics.Readiness // nil: metrics off
	checks  []readinessCheck

	mu       sync.Mutex
	results  map[string]error // of the last round; nil before the first
	stopping bool
}

type readinessCheck struct {
	name  string
	check func(context.Context) error
}

// checkTimeout bounds one check; checkInterval separates two rounds.
const (
	checkTimeout  = 2 * time.Second
	checkInterval = time.Second
)

func newReadiness(logger *slog.Logger) *readiness { return &readiness{logger: logger} }

// add registers a check; call it before run.
func (r *readiness) add(name string, check func(context.Context) error) {
	r.checks = append(r.checks, readinessCheck{name, check})
}

// run checks every interval until ctx ends; the first round ran in New.
func (r *readiness) run(ctx context.Context) {
	tick := time.NewTicker(checkInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.checkNow(ctx)
		}
	}
}

// checkNow runs every check once, concurrently, and logs the checks whose
// result changed (a failing check also on the first round).
func (r *readiness) checkNow(ctx context.Context) {
	results := make(map[string]error, len(r.checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range r.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			err := c.check(cctx)
			cancel()
			mu.Lock()
			results[c.name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: the checks were cut short
	}
	r.mu.Lock()
	prev := r.results
	r.results = results
	r.mu.Unlock()
	up := make(map[string]bool, len(results))
	for _, c := range r.checks {
		err := results[c.name]
		up[c.name] = err == nil
		before, seen := prev[c.name]
		switch {
		case err != nil && (prev == nil || before == nil):
			r.logger.Warn("readiness check failing; the gateway reports not ready", "check", c.name, "err", err)
		case err == nil && seen && before != nil:
			r.logger.Info("readiness check passing again", "check", c.name)
		}
	}
	if r.metrics != nil {
		r.metrics.Set(r.err() == nil, up)
	}
}

// stop makes the gateway not ready for good: it is shutting down.
func (r *readiness) stop() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	if r.metrics != nil {
		r.metrics.Set(false, nil)
	}
}

// err is nil when the gateway is ready, else the reason.
func (r *readiness) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopping:
		return errors.New("shutting down")
	case r.results == nil:
		return errors.New("starting")
	}
	var failing []string
	for _, c := range r.checks {
		if err := r.results[c.name]; err != nil {
			failing = append(failing, fmt.Sprintf("%s: %v", c.name, err))
		}
	}
	if len(failing) > 0 {
		return errors.New(strings.Join(failing, "; "))
	}
	return nil
}

// up reports whether the named check passed in the last round; a check
// that is not configured counts as passing.
func (r *readiness) up(name string) bool {
	if !slices.ContainsFunc(r.checks, func(c readinessCheck) bool { return c.name == name }) {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.results != nil && r.results[name] == nil
}
