package engine

import (
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sync/plan"
)

var (
	t0     = time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	conf   = presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall}
	inCall = presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInACall}
	minute = time.Minute
	alice  = "alice@contoso.com"
)

// occ makes an occurrence of uid from t0+start lasting dur.
func occ(uid string, start, dur time.Duration) *plan.Occurrence {
	return &plan.Occurrence{UID: uid, Start: t0.Add(start), End: t0.Add(start + dur)}
}

// busy is a match that makes user busy for o.
func busy(user string, o *plan.Occurrence) plan.Match {
	return plan.Match{User: user, Occ: o, Rule: &plan.Rule{Source: "zoom", Pair: conf}}
}
