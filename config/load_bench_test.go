package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkLoadSources loads a configuration of N sources, one user each,
// as a deployment of one feed a person writes it: what every start and
// every reload pays before anything else (issue #21's restart at 100,000
// feeds).
//
//	go test -run '^$' -bench LoadSources -benchtime 5x ./config/
func BenchmarkLoadSources(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("sources=%d", n), func(b *testing.B) {
			var y strings.Builder
			y.WriteString("graph:\n  tenant_id: t\n  client_id: c\n  client_secret: s\nsources:\n")
			for i := range n {
				fmt.Fprintf(&y, "  - name: f%d\n    url: https://calendar.example.com/f/%d.ics\n    users: [u%d@contoso.com]\n", i, i, i)
			}
			path := filepath.Join(b.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(y.String()), 0o600); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(y.Len()))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Load(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
