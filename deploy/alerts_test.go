package deploy

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/leader"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/sync/engine"
)

// recorder is a prometheus.Registerer that keeps what is registered, so
// that the metrics' names and labels can be read from their descriptions
// (a vector shows up in a Gather only once a label set is used).
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var descRE = regexp.MustCompile(`^Desc\{fqName: "([a-zA-Z_:][a-zA-Z0-9_:]*)", .*variableLabels: \{([^}]*)\}\}$`)

// register registers calpresence's metrics on reg as the daemon does: the
// engine's (engine.NewMetrics), the webhook receiver's (signals.NewMetrics)
// and, with several replicas, the leader election's (leader.New with a
// Registerer; it does not connect). The configuration reload's two metrics
// are created inside app.New, which opens the state and the feeds:
// registerAppMetrics builds them as it does, for the runbook that explains
// them (the dashboard and the alerts do not read them).
func register(t *testing.T, reg prometheus.Registerer) {
	t.Helper()
	engine.NewMetrics(reg)
	signals.NewMetrics(reg)
	if _, err := leader.New("postgres://calpresence@db.invalid:5432/calpresence", leader.Options{ID: "test", Registerer: reg}); err != nil {
		t.Fatalf("leader.New: %v", err)
	}
	registerAppMetrics(reg)
}

// metricLabels maps each metric the daemon registers, as PromQL sees it (a
// histogram as _bucket, _sum and _count), to its label names.
func metricLabels(t *testing.T) map[string][]string {
	t.Helper()
	rec := &recorder{}
	register(t, rec)
	ch := make(chan *prometheus.Desc, 100)
	for _, c := range rec.cs {
		c.Describe(ch)
	}
	close(ch)
	out := map[string][]string{}
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the metric's name from %s (has client_golang's Desc.String changed?)", d)
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		out[m[1]] = labels
	}

	// A histogram with labels is not gathered until it has a series: its
	// type is its collector's.
	for _, c := range rec.cs {
		if _, ok := c.(*prometheus.HistogramVec); !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if m := descRE.FindStringSubmatch(d.String()); m != nil {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					out[m[1]+suffix] = append(slices.Clone(out[m[1]]), "le")
				}
			}
		}
	}

	// Cross-check against what a registry gathers: the metrics without
	// labels appear there at once, with their types.
	reg := prometheus.NewRegistry()
	register(t, reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Fatal("a fresh registry gathers nothing from engine.NewMetrics and leader.New")
	}
	for _, mf := range mfs {
		if _, ok := out[mf.GetName()]; !ok {
			t.Fatalf("gathered %s, which the descriptions do not name", mf.GetName())
		}
		if mf.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				out[mf.GetName()+suffix] = append(slices.Clone(out[mf.GetName()]), "le")
			}
		}
	}
	return out
}

// selector is one metric named in a PromQL expression, with the label
// names of its matchers.
type selector struct {
	metric string
	labels []string
}

var (
	strRE      = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	rangeRE    = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords   = []string{"and", "or", "unless", "bool", "offset", "inf", "nan"}
)

// selectors finds the metrics a PromQL expression reads. It is not a
// PromQL parser: it knows strings, ranges, grouping clauses, matchers and
// function calls, which is all the rules here use.
func selectors(expr string) []selector {
	expr = strRE.ReplaceAllString(expr, `""`)
	expr = rangeRE.ReplaceAllString(expr, " ")
	expr = groupingRE.ReplaceAllString(expr, " ")
	var out []selector
	expr = selectorRE.ReplaceAllStringFunc(expr, func(s string) string {
		m := selectorRE.FindStringSubmatch(s)
		sel := selector{metric: m[1]}
		for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			sel.labels = append(sel.labels, lm[1])
		}
		out = append(out, sel)
		return " "
	})
	for _, m := range identRE.FindAllStringSubmatch(expr, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || slices.Contains(keywords, strings.ToLower(name)) {
			continue // a function call or a keyword
		}
		out = append(out, selector{metric: name})
	}
	return out
}

func TestSelectors(t *testing.T) {
	got := selectors(`sum by (instance, op) (increase(calpresence_graph_requests_total{code!~"2..|404", op="set"}[15m])) / on (instance) foo_bar > 0 and bool up{job="x"}`)
	want := []selector{
		{"calpresence_graph_requests_total", []string{"code", "op"}},
		{"up", []string{"job"}},
		{"foo_bar", nil},
	}
	if !slices.EqualFunc(got, want, func(a, b selector) bool { return a.metric == b.metric && slices.Equal(a.labels, b.labels) }) {
		t.Errorf("selectors(...) = %v; want %v", got, want)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// targetLabels are labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance"}

// TestAlerts checks the example alert rules: every metric they read is
// one calpresence exports (or Prometheus's own up), with labels it has,
// and every alert is explained in the runbook.
func TestAlerts(t *testing.T) {
	known := metricLabels(t)
	rf := readDocs[ruleFile](t, "prometheus/alerts.yaml")[0]
	runbook, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("prometheus/alerts.yaml: no rule groups")
	}
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: a rule without alert or expr: %+v", g.Name, r)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for: %v", r.Alert, err)
				}
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) || r.Annotations["summary"] == "" {
				t.Errorf("alert %s: severity %q, summary %q; want critical|warning|info and a summary", r.Alert, r.Labels["severity"], r.Annotations["summary"])
			}
			if !strings.Contains(string(runbook), "`"+r.Alert+"`") {
				t.Errorf("alert %s is not explained in docs/operations.md", r.Alert)
			}
			sels := selectors(r.Expr)
			if len(sels) == 0 {
				t.Errorf("alert %s: no metric found in %q", r.Alert, r.Expr)
			}
			for _, s := range sels {
				labels, ok := known[s.metric]
				if s.metric == "up" {
					ok, labels = true, nil
				}
				if !ok {
					t.Errorf("alert %s reads %q, which calpresence does not export", r.Alert, s.metric)
					continue
				}
				for _, l := range s.labels {
					if !slices.Contains(labels, l) && !slices.Contains(targetLabels, l) {
						t.Errorf("alert %s: %s has no label %q (labels %v)", r.Alert, s.metric, l, labels)
					}
				}
			}
		}
	}
}

// TestRunbookMetrics checks that docs/operations.md explains every metric
// calpresence exports and names none it does not.
func TestRunbookMetrics(t *testing.T) {
	known := metricLabels(t)
	runbook, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bcalpresence_[a-z_]+[a-z]`).FindAllString(string(runbook), -1) {
		if m == "calpresence_migrations" {
			continue // the table of schema versions in PostgreSQL, not a metric
		}
		named[m] = true
		if _, ok := known[m]; !ok {
			t.Errorf("docs/operations.md names %s, which calpresence does not export", m)
		}
	}
	for m := range known {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		if _, isSeries := known[base]; isSeries && base != m {
			continue // a histogram's series; the histogram itself is checked
		}
		if !named[m] {
			t.Errorf("docs/operations.md does not explain %s", m)
		}
	}
}

// TestPromtool checks the rules with Prometheus's own tool: promtool check
// rules, and the unit tests in prometheus/alerts_test.yaml. .ci/run
// installs it (Debian's prometheus package); without it the test skips
// outside CI and fails in CI.
func TestPromtool(t *testing.T) {
	promtool := testutil.Tool(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yaml"},
		{"test", "rules", "prometheus/alerts_test.yaml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
