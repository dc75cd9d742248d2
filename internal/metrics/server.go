package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /metrics, /healthz and /readyz.
//
//   - /healthz answers 200 while the process serves HTTP at all (liveness:
//     a restart would not help anything else);
//   - /readyz answers 200 when ready() returns nil, else 503 with the
//     reason (readiness: Kubernetes routes traffic, and sidecar-aware apps
//     wait, until it passes);
//   - with Config.Pprof, /debug/pprof/ serves the Go runtime's profiles
//     (net/http/pprof): CPU, heap, goroutines and the rest.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger
}

// Listen binds c.Listen and prepares the handlers; Serve serves them.
func Listen(c Config, r *Registry, ready func() error, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          r.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if c.Pprof {
		// Registered on this mux only: importing net/http/pprof also adds
		// them to http.DefaultServeMux, which the gateway never serves.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return &Server{
		ln:     ln,
		logger: logger,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
	}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown; it returns nil then.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// Shutdown stops the server, letting a scrape in progress finish (at most
// 2 s); it also closes a listener that never served.
func (s *Server) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	s.ln.Close()
}

// Readiness exports what readiness found: overall and per check.
type Readiness struct {
	ready *prometheus.GaugeVec // no labels; a Vec so it can start absent
	check *prometheus.GaugeVec
}

// RegisterReadiness registers the readiness metrics.
func RegisterReadiness(r *Registry) *Readiness {
	rd := &Readiness{
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_ready",
			Help: "1 while the gateway is ready (what /readyz and the overall gRPC health report), else 0.",
		}, nil),
		check: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_readiness_check_up",
			Help: "1 while the readiness check passes (kafka: cluster metadata answered; redis: PING answered), else 0.",
		}, []string{"check"}),
	}
	r.MustRegister(rd.ready, rd.check)
	return rd
}

// Set records one round of checks.
func (rd *Readiness) Set(ready bool, checks map[string]bool) {
	rd.ready.WithLabelValues().Set(b2f(ready))
	for name, up := range checks {
		rd.check.WithLabelValues(name).Set(b2f(up))
	}
}
