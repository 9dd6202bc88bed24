package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path; see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse builds a Config from the YAML in data; path names the file in
// errors and anchors relative *_file paths.
//
// The steps, in order: defaults (Default); ${VAR} expansion from the
// environment on scalar values; a strict decode in which an unknown or
// duplicate key, a value of the wrong type or a bad duration is an error with
// its line; reading graph.client_secret_file and state.dsn_file; Validate.
// Every problem found is reported at once in a *ValidationError.
//
// A key given as null (or with nothing after the colon) counts as absent and
// keeps its default. Relative paths in *_file keys are resolved against the
// directory of path, the way Prometheus does, so a config and its secrets can
// move together; state.path stays relative to the working directory.
func Parse(data []byte, path string) (*Config, error) {
	return parse(data, path, os.LookupEnv)
}

// lookupFunc looks up an environment variable (os.LookupEnv in production).
type lookupFunc func(name string) (string, bool)

func parse(data []byte, path string, lookup lookupFunc) (*Config, error) {
	c := Default()
	c.Path = path

	root, syntaxErr := parseNode(data)
	if syntaxErr != nil {
		return nil, &ValidationError{File: path, Problems: []Problem{*syntaxErr}}
	}
	d := &decoder{lookup: lookup}
	if root != nil {
		// Aliases may repeat parts of the document, but not without bound:
		// nested aliases (a "billion laughs" document) must not make Load
		// run away.
		size := treeSize(root)
		d.maxNodes = 100*size + 10_000
		// About a path per key and element: sized once, not rehashed as
		// 100,000 sources' paths go in.
		d.lines = make(map[string]int, size/2)
		d.value(root, reflect.ValueOf(c).Elem(), "")
	}
	if len(d.problems) > 0 {
		return nil, newValidationError(path, d.problems)
	}
	if d.lines == nil {
		d.lines = map[string]int{}
	}

	// A source without poll_interval (or with 0) polls as often as the
	// schedule says.
	for i := range c.Sources {
		if c.Sources[i].PollInterval == 0 {
			c.Sources[i].PollInterval = c.Schedule.PollInterval
		}
	}
	resolveFiles(c, filepath.Dir(path))

	var problems []Problem
	if p := readSecretFile(c); p != nil {
		p.Line = lineFor(d.lines, p.Path)
		problems = append(problems, *p)
	}
	for _, p := range c.loadState(func(path string) bool { _, ok := d.lines[path]; return ok }) {
		p.Line = lineFor(d.lines, p.Path)
		problems = append(problems, p)
	}
	for _, p := range c.loadWebhooks() {
		p.Line = lineFor(d.lines, p.Path)
		problems = append(problems, p)
	}
	problems = append(problems, c.validate(d.lines)...)
	if len(problems) > 0 {
		return nil, newValidationError(path, problems)
	}
	return c, nil
}

// parseNode parses exactly one YAML document. A nil node means an empty file.
func parseNode(data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxProblem(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(err)
	default:
		return nil, &Problem{Line: next.Line, Msg: "only one YAML document is allowed"}
	}
	return &doc, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns "yaml: line 3: mapping values are not allowed in this
// context" into a Problem on line 3.
func syntaxProblem(err error) *Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Problem{Line: line, Msg: m[2]}
	}
	return &Problem{Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// treeSize counts the nodes of n without following aliases.
func treeSize(n *yaml.Node) int {
	size := 1
	for _, c := range n.Content {
		size += treeSize(c)
	}
	return size
}

// decoder decodes a yaml.Node tree into the config types by reflection.
//
// yaml.Node.Decode has no KnownFields option, and re-encoding an expanded tree
// to feed a strict yaml.Decoder would renumber the lines. Doing the walk here
// gives strict keys, ${VAR} expansion on scalar values only (so a token with
// "#" or ": " cannot change the document's structure) and errors that carry
// the YAML path and the line in the original file.
type decoder struct {
	lookup   lookupFunc
	problems []Problem
	// lines maps each YAML path that was present ("sources[1].url") to the
	// line of its key or element, for Validate's messages.
	lines map[string]int
	// nodes counts the nodes decoded, aliases expanded, up to maxNodes.
	nodes, maxNodes int
	// active holds the aliased nodes being decoded, to catch an anchor
	// that contains an alias to itself.
	active map[*yaml.Node]bool
}

// count charges one node against maxNodes and reports whether decoding may
// go on.
func (d *decoder) count(n *yaml.Node, path string) bool {
	if d.maxNodes == 0 {
		return true
	}
	d.nodes++
	if d.nodes == d.maxNodes+1 {
		d.errorf(n, path, "document too deeply aliased")
	}
	return d.nodes <= d.maxNodes
}

// enter marks alias target n as being decoded; it reports false (and a
// problem) if it already is.
func (d *decoder) enter(n *yaml.Node, at *yaml.Node, path string) bool {
	if d.active == nil {
		d.active = map[*yaml.Node]bool{}
	}
	if d.active[n] {
		d.errorf(at, path, "alias *%s refers to itself", n.Anchor)
		return false
	}
	d.active[n] = true
	return true
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeFor[time.Duration]()

// isNull reports whether n is an explicit or implicit null ("key:", "~").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if !d.count(n, path) {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 || isNull(n.Content[0]) {
			return
		}
		d.value(n.Content[0], v, path)
		return
	case yaml.AliasNode:
		if n.Alias == nil || !d.enter(n.Alias, n, path) {
			return
		}
		d.value(n.Alias, v, path)
		delete(d.active, n.Alias)
		return
	}

	if isNull(n) {
		// A null list element or map value ("users: [~]") is the zero
		// value, not the text "~".
		v.SetZero()
		return
	}
	if v.Kind() == reflect.Pointer {
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), path)
		v.Set(p)
		return
	}

	switch v.Kind() {
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "must be a list, not %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = e.Line
			d.value(e, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		d.mapValue(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

// pairs returns the key/value pairs of mapping n with YAML merge keys ("<<:
// *defaults") applied: merged pairs come first, so the mapping's own keys
// win. It reports duplicate keys among the mapping's own pairs.
func (d *decoder) pairs(n *yaml.Node, path string) [][2]*yaml.Node {
	var merged, own [][2]*yaml.Node
	own = make([][2]*yaml.Node, 0, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.count(k, path) {
			return nil
		}
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!!merge") {
			for _, m := range mergeSources(val) {
				if !d.enter(m, k, path) {
					continue
				}
				merged = append(merged, d.pairs(m, path)...)
				delete(d.active, m)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be strings")
			continue
		}
		if first, ok := seen[k.Value]; ok {
			d.errorf(k, path, "duplicate key %q (first at line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		own = append(own, [2]*yaml.Node{k, val})
	}
	return append(merged, own...)
}

// mergeSources returns the mappings named by the value of a "<<" key: one
// mapping or alias, or a list of them.
func mergeSources(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case n == nil:
		return nil
	case n.Kind == yaml.MappingNode:
		return []*yaml.Node{n}
	case n.Kind == yaml.SequenceNode:
		var out []*yaml.Node
		for _, e := range n.Content {
			out = append(out, mergeSources(e)...)
		}
		return out
	}
	return nil
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping, not %s", kindName(n))
		return
	}
	t := v.Type()
	for _, kv := range d.pairs(n, path) {
		k, val := kv[0], kv[1]
		i, ok := fieldIndex(t, k.Value)
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest(k.Value, yamlNames(t)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(k, path, "%s", msg)
			continue
		}
		p := join(path, k.Value)
		if isNull(val) {
			continue // absent: keep the default
		}
		d.lines[p] = k.Line
		d.value(val, v.Field(i), p)
	}
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping, not %s", kindName(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, kv := range d.pairs(n, path) {
		k, val := kv[0], kv[1]
		p := join(path, k.Value)
		d.lines[p] = k.Line
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, e, p)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}

// scalar decodes a leaf after expanding ${VAR} in it. Messages quote the text
// as written, never the expanded value, which may be a secret.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "must be a single value, not %s", kindName(n))
		return
	}
	s, err := expand(n.Value, d.lookup)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return
	}
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.errorf(n, path, "invalid duration %q (use Go durations such as 90s, 5m, 1h30m)", n.Value)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			d.errorf(n, path, "must be true or false (got %q)", n.Value)
		}
	case v.CanInt():
		// Decimal only ("010" is ten, not YAML 1.1's eight); "_" may
		// group digits ("10_485_760").
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil || v.OverflowInt(i) {
			d.errorf(n, path, "must be an integer (got %q)", n.Value)
			return
		}
		v.SetInt(i)
	default:
		// Only reachable if a field of an unsupported type is added.
		d.errorf(n, path, "cannot decode into %s", v.Type())
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "this"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldIndex finds the field of struct t whose yaml tag is name.
func fieldIndex(t reflect.Type, name string) (int, bool) {
	fields, ok := fieldIndexes.Load(t)
	if !ok {
		m := make(map[string]int, t.NumField())
		for i := range t.NumField() {
			if n := tagName(t.Field(i)); n != "" {
				m[n] = i
			}
		}
		fields, _ = fieldIndexes.LoadOrStore(t, m)
	}
	i, ok := fields.(map[string]int)[name]
	return i, ok
}

// fieldIndexes holds, by struct type, the index of each field by its YAML
// name: a configuration of 100,000 sources looks fields up a million times.
var fieldIndexes sync.Map

func yamlNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if n := tagName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

func tagName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// suggest returns the candidate closest to s, if it is close enough to be a
// likely typo.
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// expand replaces ${NAME} in s with the value of the environment variable
// NAME (NAME is [A-Za-z_][A-Za-z0-9_]*). A variable that is set but empty
// expands to "". A "$" not followed by "{" stays as it is ("$5", "a$b").
// Before a "{", "$$" is an escape for a literal "$": "$${X}" is the text
// "${X}", and "$$${X}" is "$" followed by the value of X.
func expand(s string, lookup lookupFunc) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		n := 1 // length of this run of "$"
		for i+n < len(s) && s[i+n] == '$' {
			n++
		}
		if i+n == len(s) || s[i+n] != '{' {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		b.WriteString(strings.Repeat("$", n/2))
		i += n
		if n%2 == 0 {
			continue // escaped: the "{" and what follows are text
		}
		// s[i] is the "{" of a reference.
		end := strings.IndexByte(s[i:], '}')
		if end < 0 || !validVarName(s[i+1:i+end]) {
			ref := s[i:]
			if end >= 0 {
				ref = s[i : i+end+1]
			}
			return "", fmt.Errorf("invalid variable reference \"$%s\" (want ${NAME}; write $${ for a literal ${)", ref)
		}
		name := s[i+1 : i+end]
		val, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(val)
		i += end + 1
	}
	return b.String(), nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case i > 0 && '0' <= r && r <= '9':
		default:
			return false
		}
	}
	return true
}

// resolveFiles makes the relative *_file paths relative to dir, the
// directory of the configuration file.
func resolveFiles(c *Config, dir string) {
	for _, p := range append([]*string{
		&c.Graph.ClientSecretFile,
		&c.Graph.CertificateFile,
		&c.Graph.TokenFile,
		&c.Graph.CAFile,
		&c.Schedule.CAFile,
		&c.Server.AdminTokenFile,
		&c.State.DSNFile,
		&c.Selfservice.CookieKeyFile,
	}, c.webhookFiles()...) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	// A relative feed (file:feeds/x.ics, which RFC 8089 does not define)
	// is read from the configuration file's folder too.
	for i := range c.Sources {
		u := &c.Sources[i].URL
		if rel, ok := strings.CutPrefix(*u, "file:"); ok && rel != "" && !strings.HasPrefix(rel, "/") {
			abs, err := filepath.Abs(filepath.Join(dir, filepath.FromSlash(rel)))
			if err == nil {
				*u = (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
			}
		}
	}
}

// readSecretFile reads graph.client_secret_file into ClientSecret, trimming
// surrounding white space (a trailing newline is almost always there), and
// clears ClientSecretFile so the loaded Config validates as it stands. It
// leaves both alone when client_secret is set too, for Validate to report.
func readSecretFile(c *Config) *Problem {
	g := &c.Graph
	if g.ClientSecretFile == "" || g.ClientSecret != "" || g.Auth != AuthClientSecret {
		return nil
	}
	data, err := os.ReadFile(g.ClientSecretFile)
	if err != nil {
		return &Problem{Path: "graph.client_secret_file", Msg: err.Error()}
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return &Problem{Path: "graph.client_secret_file", Msg: fmt.Sprintf("%s is empty", g.ClientSecretFile)}
	}
	g.ClientSecret = Secret(secret)
	g.ClientSecretFile = ""
	return nil
}
