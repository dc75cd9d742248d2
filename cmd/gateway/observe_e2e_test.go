package main

// End-to-end checks of what the binary says about itself: the metrics and
// probe listener, and logs that stay one JSON object per line.

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/testenv"
)

// metricsAddr is the metrics listener the binary announced in its
// "gateway serving" line.
func (p *process) metricsAddr(t *testing.T) string {
	t.Helper()
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var entry struct {
			Msg     string `json:"msg"`
			Metrics string `json:"metrics"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "gateway serving" && entry.Metrics != "" {
			return entry.Metrics
		}
	}
	t.Fatalf("no metrics address in the serving line:\n%s", p.logs)
	return ""
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestTheBinaryServesMetricsAndProbes(t *testing.T) {
	t.Parallel()
	p := startBinary(t, "--embedded.kafka_addr=127.0.0.1:0", "--embedded.redis_addr=127.0.0.1:0", "--canary.enabled=true", "--canary.interval=200ms")
	base := "http://" + p.metricsAddr(t)
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %q, want 200 in embedded mode", code, body)
	}
	// The canary goes round the embedded broker end to end.
	testenv.Eventually(t, 60*time.Second, "a canary record to come back", func() bool {
		_, body := httpGet(t, base+"/metrics")
		return strings.Contains(body, "gateway_ready 1") && !strings.Contains(body, "gateway_canary_received_total 0") &&
			strings.Contains(body, "gateway_canary_received_total")
	})
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs)
	}
}

// TestLogsStayJSONWhenKafkaIsUnreachable: every client's complaints about
// a cluster that does not answer go through the gateway's logger, so a JSON
// log stays one JSON object per line (a stray librdkafka line on stderr
// breaks log pipelines); the gateway reports not ready meanwhile.
func TestLogsStayJSONWhenKafkaIsUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := startBinary(t, "--embedded.enabled=false", "--kafka.bootstrap_servers="+nothing)
	base := "http://" + p.metricsAddr(t)
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka") {
		t.Errorf("/readyz = %d %q, want 503 naming kafka", code, body)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	testenv.Eventually(t, 30*time.Second, "librdkafka to log the refused connections", func() bool {
		return strings.Contains(p.logs.String(), "Connection refused")
	})
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs)
	}
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if line != "" && !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
		}
	}
}
