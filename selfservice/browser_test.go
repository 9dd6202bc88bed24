package selfservice_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/selfservice"
)

// artifacts is where the screenshot goes: $CALPRESENCE_ARTIFACTS (CI keeps
// it), else a temporary folder.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CALPRESENCE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// spki is the base64 SHA-256 of the certificate's public key, what
// Chromium's --ignore-certificate-errors-spki-list takes: the browser
// trusts the fake authority's self-signed certificate and no other.
func spki(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestSignInInChromium drives Debian's Chromium, headless, through the
// sign-in as a person does it: it opens /, is sent to the (fake) authority,
// which signs Alice in and sends her back; the page names her. She then
// signs out with the page's own form (so the browser's Origin and the CSRF
// field are what the server checks). A phone-sized screenshot is kept.
func TestSignInInChromium(t *testing.T) {
	bin := testutil.Tool(t, "chromium", "chromium")
	fp := &feedPeople{people: newPeople(map[string]selfservice.View{aliceOID: aliceView}), feeds: map[string][]selfservice.Feed{}}
	e := newEnvWith(t, "", fp, func(_ *graphtest.Server, c *selfservice.Config) { c.Feeds = true })
	e.people = fp.people

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
		chromedp.Flag("ignore-certificate-errors-spki-list", spki(t, e.fake.CAPEM())),
		chromedp.UserDataDir(t.TempDir()),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	if err := chromedp.Do(bctx,
		// A phone: 390 CSS pixels wide, in portrait, with touch.
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(e.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#upn")),
	); err != nil {
		t.Fatalf("chromium: sign in: %v", err)
	}
	run := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(bctx, a)
		if err != nil {
			t.Fatalf("chromium: %s: %v", what, err)
		}
		return v
	}
	upn := run("read the UPN", chromedp.Text(chromedp.CSS("#upn")))
	oid := run("read the object id", chromedp.Text(chromedp.CSS("#oid")))
	location := run("read the location", chromedp.Location())
	if upn != aliceUPN || !strings.Contains(oid, aliceOID) {
		t.Errorf("the page shows %q, %q; want %q and %q", upn, oid, aliceUPN, aliceOID)
	}
	if location != e.srv.URL+"/" {
		t.Errorf("the browser ended at %s; want %s/", location, e.srv.URL)
	}
	if n := len(e.fake.CallsOp(graphtest.OpAuthorize)); n != 1 {
		t.Errorf("the browser visited the authority %d times; want 1", n)
	}
	// The timeline fits the phone and draws Alice's coming span where
	// its times fall in the window (the hour before the page was made to
	// 36 hours on).
	type box struct{ X, W float64 }
	places, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]box](`(() => {
		const r = (e) => { const b = e.getBoundingClientRect(); return {X: b.x, W: b.width}; };
		return {svg: r(document.querySelector("#timeline svg")), bar: r(document.querySelector("#timeline rect.bar"))};
	})()`))
	if err != nil {
		t.Fatalf("chromium: read the timeline: %v", err)
	}
	from := e.now.Now().Add(-time.Hour)
	frac := func(at time.Time) float64 { return float64(at.Sub(from)) / float64(37*time.Hour) }
	svg, bar := places["svg"], places["bar"]
	x0, x1 := svg.X+frac(soon)*svg.W, svg.X+frac(soon.Add(90*time.Minute))*svg.W
	if svg.W < 300 || svg.X+svg.W > 390 || math.Abs(bar.X-x0) > 1.5 || math.Abs(bar.X+bar.W-x1) > 1.5 {
		t.Errorf("timeline %.1f px from %.1f, bar from %.1f to %.1f px; want the phone's width, the bar from %.1f to %.1f", svg.W, svg.X, bar.X, bar.X+bar.W, x0, x1)
	}

	shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}

	path := filepath.Join(artifacts(t), "selfservice-signin.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != 390 {
		t.Errorf("screenshot is %dx%d; want 390 wide (a phone)", b.Dx(), b.Dy())
	}
	t.Logf("screenshot: %s", path)

	// Pause for an hour, resume, then "I'm on a call" for 30 minutes: each
	// form posts (CSRF token and Origin as the browser sends them) and the
	// page comes back saying so.
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS("#pause-hour")),
		chromedp.WaitVisible(chromedp.CSS("#resume")),
	); err != nil {
		t.Fatalf("chromium: pause for an hour: %v", err)
	}
	if paused := run("read the pause", chromedp.Text(chromedp.CSS("#paused"))); !strings.HasPrefix(paused, "Paused until ") {
		t.Errorf("after Pause for an hour the page says %q; want Paused until …", paused)
	}
	if v := e.people.view(aliceOID); !v.Paused || v.PausedUntil.IsZero() {
		t.Errorf("after Pause for an hour: paused %v until %v; want paused for an hour", v.Paused, v.PausedUntil)
	}
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS("#resume")),
		chromedp.WaitVisible(chromedp.CSS("#pause")),
		chromedp.SetValue(chromedp.CSS("select[name=minutes]"), "30"),
		chromedp.Click(chromedp.CSS("#call")),
		chromedp.WaitVisible(chromedp.CSS("#on-call")),
	); err != nil {
		t.Fatalf("chromium: resume, then I'm on a call: %v", err)
	}
	if v := e.people.view(aliceOID); v.Paused || time.Until(v.OnCallUntil) < 29*time.Minute || time.Until(v.OnCallUntil) > 31*time.Minute {
		t.Errorf("after Resume and a 30-minute call: paused %v, call until %v; want not paused, a call 30 minutes on", v.Paused, v.OnCallUntil)
	}
	// Her own feed: typed into the form, added, listed without its secret.
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#feed-url"), "https://calendar.example/ical/alice/basic.ics?token=s3cr3t"),
		chromedp.Click(chromedp.CSS("#add-feed")),
		chromedp.WaitVisible(chromedp.CSS("#feeds .url")),
	); err != nil {
		t.Fatalf("chromium: add a feed: %v", err)
	}
	if shown := run("read the feed", chromedp.Text(chromedp.CSS("#feeds .url"))); shown != "https://calendar.example/ical/alice/basic.ics?<redacted>" {
		t.Errorf("after Add feed the page lists %q; want the feed redacted", shown)
	}
	fp.mu.Lock()
	if got := fp.feeds[aliceOID]; len(got) != 1 {
		t.Errorf("after Add feed alice has feeds %+v; want one", got)
	}
	fp.mu.Unlock()
	shot, err = chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}
	actions := filepath.Join(artifacts(t), "selfservice-actions.png")
	if err := os.WriteFile(actions, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", actions)

	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#signed-out")),
	); err != nil {
		t.Fatalf("chromium: sign out: %v", err)
	}
	title := run("read the heading", chromedp.Text(chromedp.CSS("#signed-out")))
	if title != "Signed out" {
		t.Errorf("after the sign-out button the page says %q; want Signed out", title)
	}
}
