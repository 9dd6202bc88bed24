package config

import (
	"slices"
	"testing"
	"time"
)

func TestNeedsRestart(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Graph.TenantID, c.Graph.ClientID, c.Graph.ClientSecret = "t", "c", "s"
		c.Sources = []Source{{Name: "a", URL: "https://example.test/a.ics"}}
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"sources and presence apply", func(c *Config) {
			c.Sources = append(c.Sources, Source{Name: "b", URL: "https://example.test/b.ics"})
			c.Presence.Grace = time.Minute
			c.Schedule.Horizon = time.Hour
			c.Server.AdminTokenFile = "/run/token"
			c.Server.Hostnames = []string{"calpresence.internal"}
		}, nil},
		{"secret and listener", func(c *Config) {
			c.Graph.ClientSecret = "other"
			c.Server.Listen = ":9090"
		}, []string{"graph.client_secret", "server.listen"}},
		{"state and fetching", func(c *Config) {
			c.State.Path = "/elsewhere.db"
			c.Schedule.CAFile = "ca.pem"
			c.Schedule.FetchConcurrency = 3
		}, []string{"schedule.ca_file", "schedule.fetch_concurrency", "state.path"}},
		{"webhooks on", func(c *Config) { c.Webhooks = &Webhooks{Listen: ":8081"} }, []string{"webhooks"}},
		{"self-service: the listener and feeds at start, private feeds live", func(c *Config) {
			c.Selfservice.URL = "https://presence.contoso.com"
			c.Selfservice.Feeds = true
			c.Selfservice.PrivateFeeds = true
		}, []string{"selfservice.feeds", "selfservice.url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := base()
			tt.edit(cur)
			if got := NeedsRestart(base(), cur); !slices.Equal(got, tt.want) {
				t.Errorf("NeedsRestart = %q; want %q", got, tt.want)
			}
		})
	}
	t.Run("max_unscheduled applies", func(t *testing.T) {
		a, b := base(), base()
		a.Webhooks = &Webhooks{Listen: ":8081", MaxUnscheduled: time.Hour}
		b.Webhooks = &Webhooks{Listen: ":8081", MaxUnscheduled: 2 * time.Hour}
		if got := NeedsRestart(a, b); len(got) != 0 {
			t.Errorf("NeedsRestart = %q; want none", got)
		}
	})
}
