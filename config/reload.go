package config

import (
	"reflect"
	"slices"
	"strings"
)

// restartKeys are the keys (and key prefixes, ending in ".") that the
// daemon reads only at start: the state it opened, the Graph client it
// built, the listeners it bound, and how it fetches feeds. A reload that
// changes one of them applies the rest and reports these as needing a
// restart (NeedsRestart).
var restartKeys = []string{
	"graph.",
	"state.",
	"server.listen",
	"server.shutdown_timeout",
	"webhooks",
	"schedule.fetch_timeout",
	"schedule.max_feed_bytes",
	"schedule.ca_file",
	"schedule.fetch_concurrency",
	"schedule.identity_refresh",
	"selfservice",
}

// liveKeys are exceptions within restartKeys: read at every use.
var liveKeys = []string{"webhooks.max_unscheduled", "graph.readback_interval", "selfservice.private_feeds"}

// NeedsRestart returns the keys whose values differ between old and cur
// that a running daemon reads only at start, sorted, e.g.
// "graph.client_secret", "server.listen". Values are never part of it:
// the keys of secrets are safe to print.
func NeedsRestart(old, cur *Config) []string {
	var out []string
	for _, k := range diffKeys("", reflect.ValueOf(*old), reflect.ValueOf(*cur)) {
		if restartKey(k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func restartKey(k string) bool {
	if slices.Contains(liveKeys, k) {
		return false
	}
	for _, p := range restartKeys {
		if k == strings.TrimSuffix(p, ".") || strings.HasPrefix(k, p) || (!strings.HasSuffix(p, ".") && strings.HasPrefix(k, p+".")) {
			return true
		}
	}
	return false
}

// diffKeys returns the YAML keys under path whose values differ between a
// and b, descending into structs and pointers to structs.
func diffKeys(path string, a, b reflect.Value) []string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return []string{path}
			}
			return nil
		}
		return diffKeys(path, a.Elem(), b.Elem())
	case reflect.Struct:
		var out []string
		t := a.Type()
		for i := range t.NumField() {
			name := tagName(t.Field(i))
			if name == "" || name == "-" {
				continue
			}
			out = append(out, diffKeys(join(path, name), a.Field(i), b.Field(i))...)
		}
		return out
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return []string{path}
	}
	return nil
}
