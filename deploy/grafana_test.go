package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	ID            any    `json:"id"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string         `json:"name"`
			Type       string         `json:"type"`
			Query      any            `json:"query"` // a string, or an object with a query
			Datasource map[string]any `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    *struct {
		X, Y, W, H int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// dashboardDatasource is the data source every query names: the
// dashboard's datasource variable, which the importer or the provisioned
// dashboard sets to a Prometheus.
var dashboardDatasource = "${datasource}"

var (
	// grafanaVarRE matches Grafana's variables in a query ($job,
	// ${instance}, ${job:regex}, $__rate_interval).
	grafanaVarRE    = regexp.MustCompile(`\$\{[A-Za-z0-9_]+(?::[A-Za-z]+)?\}|\$[A-Za-z0-9_]+`)
	labelValuesRE   = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	rangeVariableRE = regexp.MustCompile(`\[\$\{?__[a-z_]+\}?\]`)
)

// TestGrafanaDashboard checks the dashboard in grafana/calpresence.json:
// Grafana can import it (a title, a uid, a current schema, panels with
// unique ids placed on the grid, every query on the datasource variable),
// and every query, the variables' too, reads only metrics calpresence
// exports (or Prometheus's up) with labels they have, as TestAlerts checks
// the alert rules.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/calpresence.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/calpresence.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.UID) > 40 {
		t.Errorf("title %q, uid %q; want both, the uid at most 40 characters", d.Title, d.UID)
	}
	if d.ID != nil {
		t.Errorf("id = %v; want null (Grafana assigns it on import)", d.ID)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion = %d; want 36 or later (Grafana 9+)", d.SchemaVersion)
	}
	known := metricLabels(t)

	// The variables: the data source, then job and instance from a
	// metric every calpresence exports.
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			if v.Query != "prometheus" {
				t.Errorf("variable %s: query %v; want prometheus", v.Name, v.Query)
			}
		case "query":
			q, _ := v.Query.(string)
			if m, ok := v.Query.(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			if v.Datasource["uid"] != dashboardDatasource {
				t.Errorf("variable %s: datasource %v; want %s", v.Name, v.Datasource, dashboardDatasource)
			}
			m := labelValuesRE.FindStringSubmatch(q)
			if m == nil {
				t.Errorf("variable %s: query %q; want label_values(<selector>, <label>)", v.Name, q)
				continue
			}
			checkQuery(t, "variable "+v.Name, m[1], known)
			for _, s := range selectors(grafanaVarRE.ReplaceAllString(m[1], "x")) {
				if labels := known[s.metric]; !slices.Contains(labels, m[2]) && !slices.Contains(targetLabels, m[2]) {
					t.Errorf("variable %s: %s has no label %q", v.Name, s.metric, m[2])
				}
			}
		}
	}
	for _, name := range []string{"datasource", "job", "instance"} {
		if !vars[name] {
			t.Errorf("no variable %s", name)
		}
	}

	// The panels, the collapsed rows' included.
	ids := map[int]string{}
	var queries int
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.ID <= 0 {
				t.Errorf("%s: id %d; want a positive id", where, p.ID)
			} else if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: id %d is also %q's", where, p.ID, other)
			}
			ids[p.ID] = p.Title
			if p.Title == "" || p.Type == "" {
				t.Errorf("%s: want a title and a type", where)
			}
			if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v; want a place on the 24-column grid", where, g)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			if p.Datasource["uid"] != dashboardDatasource {
				t.Errorf("%s: datasource %v; want %s", where, p.Datasource, dashboardDatasource)
			}
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("%s: no unit", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: refId %q missing or repeated", where, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && tg.Datasource["uid"] != dashboardDatasource {
					t.Errorf("%s: query %s datasource %v; want %s", where, tg.RefID, tg.Datasource, dashboardDatasource)
				}
				if !strings.Contains(tg.Expr, `job=~"$job"`) || !strings.Contains(tg.Expr, `instance=~"$instance"`) {
					t.Errorf("%s: query %s does not filter on $job and $instance: %s", where, tg.RefID, tg.Expr)
				}
				checkQuery(t, where, tg.Expr, known)
				queries++
			}
		}
	}
	walk(d.Panels)
	if queries == 0 {
		t.Fatal("the dashboard has no query")
	}
}

// checkQuery checks that a PromQL expression of the dashboard reads only
// metrics calpresence exports, or Prometheus's up, with labels they have.
func checkQuery(t *testing.T, where, expr string, known map[string][]string) {
	t.Helper()
	expr = rangeVariableRE.ReplaceAllString(expr, "[5m]")
	expr = grafanaVarRE.ReplaceAllString(expr, "x")
	sels := selectors(expr)
	if len(sels) == 0 {
		t.Errorf("%s: no metric found in %q", where, expr)
	}
	for _, s := range sels {
		labels, ok := known[s.metric]
		if s.metric == "up" {
			ok, labels = true, nil
		}
		if !ok {
			t.Errorf("%s reads %q, which calpresence does not export", where, s.metric)
			continue
		}
		for _, l := range s.labels {
			if !slices.Contains(labels, l) && !slices.Contains(targetLabels, l) {
				t.Errorf("%s: %s has no label %q (labels %v)", where, s.metric, l, labels)
			}
		}
	}
}

// TestGrafanaProvisioning checks grafana/kustomization.yaml: it generates
// one ConfigMap from the dashboard file, labelled for Grafana's dashboard
// sidecar, under a name that stays the same when the file changes.
func TestGrafanaProvisioning(t *testing.T) {
	k := readDocs[struct {
		Kind      string `yaml:"kind"`
		Namespace string `yaml:"namespace"`
		Generator []struct {
			Name    string   `yaml:"name"`
			Files   []string `yaml:"files"`
			Options struct {
				DisableNameSuffixHash bool              `yaml:"disableNameSuffixHash"`
				Labels                map[string]string `yaml:"labels"`
			} `yaml:"options"`
		} `yaml:"configMapGenerator"`
	}](t, "grafana/kustomization.yaml")[0]
	if k.Kind != "Kustomization" || k.Namespace == "" || len(k.Generator) != 1 {
		t.Fatalf("kind %q, namespace %q, %d configMapGenerator entries; want a Kustomization with a namespace and one", k.Kind, k.Namespace, len(k.Generator))
	}
	g := k.Generator[0]
	if !slices.Equal(g.Files, []string{"calpresence.json"}) {
		t.Errorf("configMapGenerator files = %q; want [calpresence.json], the dashboard", g.Files)
	}
	if g.Options.Labels["grafana_dashboard"] != "1" {
		t.Errorf("ConfigMap labels = %v; want grafana_dashboard: \"1\", which the sidecar looks for", g.Options.Labels)
	}
	if !g.Options.DisableNameSuffixHash {
		t.Error("disableNameSuffixHash is not set: each change would leave the old ConfigMap, and the sidecar would load both")
	}
}
