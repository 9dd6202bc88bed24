package server

import (
	"bytes"
	"context"
	"image/png"
	"log/slog"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/internal/timeline"
)

// box is an element's place on screen, in CSS pixels, as
// getBoundingClientRect gives it, with the times the element stands for.
type box struct {
	Start string  `json:"start"`
	End   string  `json:"end"`
	X     float64 `json:"x"`
	W     float64 `json:"w"`
}

// placesJS reads where Chromium drew the timeline: the drawing, each bar
// (with its data-start and data-end) and the now line.
const placesJS = `(() => {
	const r = (e) => e.getBoundingClientRect();
	const svg = r(document.querySelector("#timeline svg"));
	const now = document.querySelector("#timeline line.now");
	return {
		svg: {x: svg.x, w: svg.width},
		now: {start: now.dataset.at, x: r(now).x, w: r(now).width},
		bars: [...document.querySelectorAll("#timeline rect.bar")].map(b => ({start: b.dataset.start, end: b.dataset.end, x: r(b).x, w: r(b).width})),
	};
})()`

// TestTimelineInChromium loads the status page with known spans in
// headless Chromium, at a desktop's width and at a phone's, and checks
// that each bar is drawn where its times fall across the window (to
// within a pixel and a half, clipped at the window's edges), and the now
// line where now falls. The page's script ban (its CSP) does not stop the
// check: DevTools evaluates it outside the page's policy. It keeps
// timeline.png, the timeline at a desktop's width, and timeline-phone.png.
func TestTimelineInChromium(t *testing.T) {
	bin := chromium(t)
	st := sampleStatus()
	srv := httptest.NewServer(Handler(&fakeEngine{status: st}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler)))
	defer srv.Close()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	from, to := timeline.Window(st.Now)
	frac := func(at time.Time) float64 {
		if at.Before(from) {
			at = from
		}
		if at.After(to) {
			at = to
		}
		return float64(at.Sub(from)) / float64(to.Sub(from))
	}
	for _, vp := range []struct {
		name, shot string
		w, h       int64
		opts       []chromedp.EmulateViewportOption
	}{
		{"desktop", "timeline.png", 1280, 900, nil},
		{"phone", "timeline-phone.png", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateMobile}},
	} {
		t.Run(vp.name, func(t *testing.T) {
			if err := chromedp.Do(bctx,
				chromedp.EmulateViewport(vp.w, vp.h, vp.opts...),
				chromedp.Navigate(srv.URL+"/"),
				chromedp.WaitVisible(chromedp.CSS("#timeline svg")),
			); err != nil {
				t.Fatalf("chromium: load the status page: %v", err)
			}
			got, err := chromedp.Run(bctx, chromedp.Evaluate[struct {
				SVG  box   `json:"svg"`
				Now  box   `json:"now"`
				Bars []box `json:"bars"`
			}](placesJS))
			if err != nil {
				t.Fatalf("chromium: read the timeline: %v", err)
			}
			if got.SVG.W < 300 {
				t.Fatalf("the timeline is %.0f px wide; want it across the page", got.SVG.W)
			}
			at := func(x float64) float64 { return got.SVG.X + x*got.SVG.W }
			const tolerance = 1.5 // px
			wantBars := 0
			for _, p := range st.Timeline {
				wantBars += len(p.Spans)
			}
			if len(got.Bars) != wantBars {
				t.Errorf("%d bars drawn; want %d", len(got.Bars), wantBars)
			}
			for _, b := range got.Bars {
				start, err1 := time.Parse(time.RFC3339, b.Start)
				end, err2 := time.Parse(time.RFC3339, b.End)
				if err1 != nil || err2 != nil {
					t.Fatalf("bar data-start %q, data-end %q: not RFC 3339", b.Start, b.End)
				}
				x0, x1 := at(frac(start)), at(frac(end))
				if math.Abs(b.X-x0) > tolerance || math.Abs(b.X+b.W-x1) > tolerance {
					t.Errorf("bar %s–%s drawn from %.1f to %.1f px; want %.1f to %.1f", b.Start, b.End, b.X, b.X+b.W, x0, x1)
				}
			}
			if x := at(frac(st.Now)); got.Now.Start != st.Now.Format(time.RFC3339) || math.Abs(got.Now.X-x) > tolerance {
				t.Errorf("now line (%s) at %.1f px; want %s at %.1f", got.Now.Start, got.Now.X, st.Now.Format(time.RFC3339), x)
			}
			shot, err := chromedp.Run(bctx, chromedp.Screenshot(chromedp.CSS("#ahead")))
			if err != nil {
				t.Fatalf("chromium: screenshot: %v", err)
			}
			if _, err := png.Decode(bytes.NewReader(shot)); err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			path := filepath.Join(artifacts(t), vp.shot)
			if err := os.WriteFile(path, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", path)
		})
	}
}
