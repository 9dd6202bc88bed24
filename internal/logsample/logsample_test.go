package logsample

import (
	"testing"
	"time"
)

func TestSampler(t *testing.T) {
	s := &Sampler{Every: time.Minute}
	t0 := time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	steps := []struct {
		at          time.Duration
		wantOK      bool
		wantSkipped int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{30 * time.Second, false, 0},
		{time.Minute, true, 2},
		{time.Minute + time.Second, false, 0},
		{3 * time.Minute, true, 1},
	}
	for _, st := range steps {
		skipped, ok := s.Allow(t0.Add(st.at))
		if ok != st.wantOK || skipped != st.wantSkipped {
			t.Errorf("Allow(+%v) = %d, %v; want %d, %v", st.at, skipped, ok, st.wantSkipped, st.wantOK)
		}
	}
	every := &Sampler{}
	for i := range 3 {
		if _, ok := every.Allow(t0); !ok {
			t.Errorf("Every 0: event %d not let through", i)
		}
	}
}
