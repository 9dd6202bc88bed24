package engine

import (
	"log/slog"
	"slices"
)

// maxDroppedLogged bounds the warnings logged for one read of a feed: a
// feed whose every event is broken logs a sample and a count, not
// thousands of lines.
const maxDroppedLogged = 20

// reportDropped makes visible the calendar data a read of a source lost
// (ical.Result.Dropped: events skipped, rules or ends ignored): it sets
// the source's gauge, and logs each loss at Warn when it differs from what
// the previous read lost, so an unchanged feed does not repeat itself. It
// returns what to remember for the next read.
func reportDropped(log *slog.Logger, series *sourceSeries, source string, prev, dropped []string) []string {
	series.set(gaugeDropped, float64(len(dropped)))
	if slices.Equal(prev, dropped) {
		return prev
	}
	for i, d := range dropped {
		if i == maxDroppedLogged {
			log.Warn("calendar data dropped", "source", source, "more", len(dropped)-i)
			break
		}
		log.Warn("calendar data dropped", "source", source, "warning", d)
	}
	return dropped
}
