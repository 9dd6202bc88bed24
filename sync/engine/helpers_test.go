package engine

import (
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources/ical"
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
func occ(uid string, start, dur time.Duration) *ical.Occurrence {
	return &ical.Occurrence{UID: uid, Start: t0.Add(start), End: t0.Add(start + dur), Status: "CONFIRMED"}
}

// busy is a match that makes user busy for o.
func busy(user string, o *ical.Occurrence) plan.Match {
	return plan.Match{User: user, Source: "zoom", Occ: o, Pair: conf}
}
