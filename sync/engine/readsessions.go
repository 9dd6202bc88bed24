package engine

import (
	"context"
	"errors"

	"github.com/calpresence/calpresence/state"
)

// readSessions reads the recorded sessions for a pass. A record that does
// not decode is skipped, not fatal (state.BadRecordsError): one damaged
// record must not stop reconciling for everyone. With report set, the
// skipped keys are logged.
//
// What a skipped record costs: the session it held is unknown to this
// pass. If its user is in a span now, the pass sets them again and the
// write replaces the damaged record; if not, whatever Graph still shows
// ends by itself when the lease runs out (at most max_lease).
func (e *Engine) readSessions(ctx context.Context, report bool) (map[string]state.Session, error) {
	sessions, err := e.store.Sessions(ctx)
	var bad *state.BadRecordsError
	if errors.As(err, &bad) {
		if report {
			e.log.Warn("skipped session records that do not decode (see calpresence state check)",
				"keys", bad.Keys(), "err", err)
		}
		return sessions, nil
	}
	return sessions, err
}
