package gateway_test

// Tests of what the gateway says about itself that need no services: the
// metrics documentation and the alerting rules against the metrics the
// gateway actually registers.

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/metrics"
)

// registeredFamilies runs an embedded-mode gateway with every optional
// metric on (dedupe, canary) and returns what it registered.
func registeredFamilies(t *testing.T) []metrics.Family {
	t.Helper()
	h := startGateway(t, func(c *config.Config) {
		c.Embedded.Enabled = true
		c.Dedupe.Enabled = true
		c.Canary.Enabled = true
	})
	fams := h.gw.MetricFamilies()
	if len(fams) == 0 {
		t.Fatal("the gateway registered no metrics")
	}
	return fams
}

// docRow is `| `name` | type | `label`, `label` | meaning |`.
var docRow = regexp.MustCompile("^\\| `([a-z_]+)` \\| (counter|gauge|histogram) \\|([^|]*)\\|")

func TestEveryMetricIsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string][]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		documented[m[1]] = labels
	}
	registered := map[string]bool{}
	for _, f := range registeredFamilies(t) {
		registered[f.Name] = true
		if strings.HasPrefix(f.Name, "go_") || strings.HasPrefix(f.Name, "process_") {
			continue // the standard collectors, described as a group
		}
		labels, ok := documented[f.Name]
		switch {
		case !ok:
			t.Errorf("metric %s (labels %v) is not in docs/metrics.md", f.Name, f.Labels)
		case !slices.Equal(labels, f.Labels):
			t.Errorf("docs/metrics.md gives %s the labels %v; it has %v", f.Name, labels, f.Labels)
		}
	}
	for name := range documented {
		if !registered[name] {
			t.Errorf("docs/metrics.md documents %s, which the gateway does not register", name)
		}
	}
}

// ruleFile is the Prometheus rule file format.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRulesParseAndUseRegisteredMetrics(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../deploy/prometheus-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("deploy/prometheus-rules.yaml: %v", err)
	}
	known := map[string]bool{}
	for _, f := range registeredFamilies(t) {
		known[f.Name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[f.Name+suffix] = true // histogram series
		}
	}
	// The template functions Prometheus offers, enough to parse templates.
	funcs := template.FuncMap{}
	for _, name := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "title", "toUpper", "toLower"} {
		funcs[name] = func(any) string { return "" }
	}
	p := parser.NewParser(parser.Options{})
	alerts := map[string]bool{}
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or repeated", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" || alerts[name] {
				t.Errorf("group %s: alert name %q empty or repeated", g.Name, name)
			}
			alerts[name] = true
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: expr does not parse: %v\n%s", name, err, r.Expr)
				continue
			}
			var used []string
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					used = append(used, vs.Name)
				}
				return nil
			})
			if len(used) == 0 {
				t.Errorf("%s: expr selects no metric", name)
			}
			for _, m := range used {
				if !known[m] {
					t.Errorf("%s: uses %s, which the gateway does not register", name, m)
				}
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", name, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", name, s)
			}
			for _, key := range []string{"summary", "description"} {
				text := r.Annotations[key]
				if text == "" {
					t.Errorf("%s: no %s annotation", name, key)
					continue
				}
				if _, err := template.New(key).Funcs(funcs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + text); err != nil {
					t.Errorf("%s: %s annotation: %v", name, key, err)
				}
			}
		}
	}
	for _, want := range []string{"GatewayConsumerLagGrowing", "GatewayOldestUnackedRecordTooOld", "GatewayDeadLettering", "GatewayDedupeDegraded", "GatewayProducerErrors"} {
		if !alerts[want] {
			t.Errorf("alert %s is missing", want)
		}
	}
}
