package policy

import (
	"time"

	"github.com/calpresence/calpresence/config"
)

// Rate is a number of calls allowed per window: Graph states its presence
// limits that way (10,000 writes per 30 s per app and tenant). The zero
// Rate is no limit.
type Rate struct {
	N      int
	Window time.Duration
}

// WriteRate is the presence-write rate of the configuration:
// graph.rate_limit per graph.rate_window. It is computed once, where the
// daemon is wired (app), and handed to the write Pacer and to the
// engine, whose Gate and burst lead follow it.
func WriteRate(g config.Graph) Rate {
	if g.RateLimit < 1 || g.RateWindow <= 0 {
		return Rate{}
	}
	return Rate{N: g.RateLimit, Window: g.RateWindow}
}

// ReadRate is Graph's budget for presence reads (getPresencesByUserId),
// per app and tenant, apart from the writes': 1,500 calls per 30 s.
var ReadRate = Rate{N: 1500, Window: 30 * time.Second}

// Limited reports whether r limits anything.
func (r Rate) Limited() bool { return r.N > 0 && r.Window > 0 }

// PerSecond is r as calls per second; 0 when r is no limit.
func (r Rate) PerSecond() float64 {
	if !r.Limited() {
		return 0
	}
	return float64(r.N) / r.Window.Seconds()
}
