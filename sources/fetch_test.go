package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	feedBody = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
	token    = "s3cr3t-t0ken"
)

// secretURL returns base + path with a token in the query and in userinfo.
func secretURL(base, path string) string {
	return strings.Replace(base, "://", "://feeduser:"+token+"@", 1) + path + "?token=" + token
}

func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("err = nil; want an error")
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("error leaks the token: %v", err)
	}
}

func TestFetch200(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", "Mon, 01 Mar 2027 10:00:00 GMT")
		w.Header().Set("Content-Type", "text/calendar")
		fmt.Fprint(w, feedBody)
	}))
	defer srv.Close()

	res, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: srv.URL + "/feed.ics"})
	if err != nil {
		t.Fatal(err)
	}
	want := FetchResult{
		Body:       []byte(feedBody),
		Validators: Validators{ETag: `"v1"`, LastModified: "Mon, 01 Mar 2027 10:00:00 GMT"},
		Hash:       sha256.Sum256([]byte(feedBody)),
		Status:     200,
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Fetch() mismatch (-want +got):\n%s", diff)
	}
}

func TestFetchGzip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Errorf("Accept-Encoding = %q; want gzip", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		fmt.Fprint(gz, feedBody)
		gz.Close()
	}))
	defer srv.Close()

	res, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Body) != feedBody {
		t.Errorf("Body = %q; want %q", res.Body, feedBody)
	}
}

func TestFetchConditional(t *testing.T) {
	const etag, lastMod = `"abc"`, "Tue, 02 Mar 2027 10:00:00 GMT"
	tests := []struct {
		name string
		prev Validators
		// header the server checks, and the value it wants
		header, value string
	}{
		{"etag", Validators{ETag: etag}, "If-None-Match", etag},
		{"last-modified", Validators{LastModified: lastMod}, "If-Modified-Since", lastMod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get(tt.header); got != tt.value {
					t.Errorf("%s = %q; want %q", tt.header, got, tt.value)
					fmt.Fprint(w, feedBody)
					return
				}
				w.Header().Set("ETag", `"new"`)
				w.WriteHeader(http.StatusNotModified)
			}))
			defer srv.Close()

			prevHash := sha256.Sum256([]byte("old"))
			res, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: srv.URL, Prev: tt.prev, PrevHash: prevHash})
			if err != nil {
				t.Fatal(err)
			}
			wantV := tt.prev
			wantV.ETag = `"new"` // a 304's validators replace the old ones
			want := FetchResult{NotModified: true, Validators: wantV, Hash: prevHash, Status: 304}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Fetch() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFetchUnconditional304(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotModified)
	}))
	defer srv.Close()
	_, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "304") {
		t.Errorf("Fetch() error = %v; want an error about 304", err)
	}
}

func TestFetchSameHashNotModified(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, feedBody) // no validators: the server always sends the body
	}))
	defer srv.Close()

	f := NewFetcher(0, 0)
	first, err := f.Fetch(context.Background(), FetchRequest{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if first.NotModified {
		t.Fatal("first fetch NotModified = true; want false")
	}
	second, err := f.Fetch(context.Background(), FetchRequest{URL: srv.URL, PrevHash: first.Hash})
	if err != nil {
		t.Fatal(err)
	}
	want := FetchResult{NotModified: true, Hash: first.Hash, Status: 200}
	if diff := cmp.Diff(want, second); diff != "" {
		t.Errorf("second Fetch() mismatch (-want +got):\n%s", diff)
	}
}

func TestFetchStatusErrors(t *testing.T) {
	for _, code := range []int{404, 500} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "nope "+r.URL.RawQuery, code)
			}))
			defer srv.Close()

			raw := secretURL(srv.URL, "/feed.ics")
			res, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: raw})
			assertNoSecret(t, err)
			if !strings.Contains(err.Error(), strconv.Itoa(code)) {
				t.Errorf("error %q does not name status %d", err, code)
			}
			if !strings.Contains(err.Error(), RedactURL(raw)) {
				t.Errorf("error %q does not name the redacted URL %q", err, RedactURL(raw))
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code {
				t.Errorf("errors.As(%v, *StatusError) = %v; want code %d", err, se, code)
			}
			if res.Status != code {
				t.Errorf("Status = %d; want %d", res.Status, code)
			}
		})
	}
}

func TestFetchTransportErrorRedacted(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens any more: the client returns a *url.Error

	_, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: secretURL(base, "/feed.ics")})
	assertNoSecret(t, err)
	if !strings.HasPrefix(err.Error(), "fetch http://<redacted>@127.0.0.1") {
		t.Errorf("error = %q; want it to start with the redacted URL", err)
	}
}

func TestFetchTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Headers and part of the body arrive at once; the rest never does,
		// so only a timeout covering the body read ends the fetch.
		w.Header().Set("Content-Length", strconv.Itoa(2*len(feedBody)))
		fmt.Fprint(w, feedBody)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	f := NewFetcher(200*time.Millisecond, 0)
	start := time.Now()
	_, err := f.Fetch(context.Background(), FetchRequest{URL: secretURL(srv.URL, "/slow.ics")})
	assertNoSecret(t, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch() error = %v; want context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Errorf("Fetch() error = %q; want it to say it timed out", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Fetch() took %v; want about 200ms", d)
	}
}

func TestFetchParentCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, feedBody)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewFetcher(0, 0).Fetch(ctx, FetchRequest{URL: srv.URL})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch() error = %v; want context.Canceled", err)
	}
}

func TestFetchOversize(t *testing.T) {
	const limit = 1000
	big := bytes.Repeat([]byte("x"), limit+1)
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"content-length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(10*limit))
			w.(http.Flusher).Flush()
			<-r.Context().Done() // never sends the body: the check must not wait for it
		}},
		{"streamed", func(w http.ResponseWriter, r *http.Request) {
			// Flushing early forces chunked encoding: no Content-Length.
			w.Write(big[:10])
			w.(http.Flusher).Flush()
			w.Write(big[10:])
		}},
		{"gzip", func(w http.ResponseWriter, r *http.Request) {
			// Small on the wire, over the limit once decompressed.
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			gz.Write(bytes.Repeat(big, 10))
			gz.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			_, err := NewFetcher(5*time.Second, limit).Fetch(context.Background(), FetchRequest{URL: secretURL(srv.URL, "/big.ics")})
			assertNoSecret(t, err)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("Fetch() error = %v; want ErrTooLarge", err)
			}
		})
	}

	t.Run("exactly-at-limit", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(big[:limit])
		}))
		defer srv.Close()
		res, err := NewFetcher(0, limit).Fetch(context.Background(), FetchRequest{URL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Body) != limit {
			t.Errorf("len(Body) = %d; want %d", len(res.Body), limit)
		}
	})
}

func TestFetchHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := map[string]string{
			"Authorization": r.Header.Get("Authorization"),
			"X-Api-Key":     r.Header.Get("X-Api-Key"),
			"User-Agent":    r.Header.Get("User-Agent"),
			"Accept":        r.Header.Get("Accept"),
		}
		want := map[string]string{
			"Authorization": "Bearer feedtoken",
			"X-Api-Key":     "k",
			"User-Agent":    DefaultUserAgent,
			"Accept":        "text/calendar, text/plain;q=0.9, */*;q=0.8",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("request headers mismatch (-want +got):\n%s", diff)
		}
		fmt.Fprint(w, feedBody)
	}))
	defer srv.Close()

	_, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{
		URL:     srv.URL,
		Headers: map[string]string{"Authorization": "Bearer feedtoken", "x-api-key": "k"},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFetchUserAgentOverride(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("User-Agent"); got != "custom/1" {
			t.Errorf("User-Agent = %q; want %q", got, "custom/1")
		}
	}))
	defer srv.Close()
	if _, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: srv.URL, Headers: map[string]string{"User-Agent": "custom/1"}}); err != nil {
		t.Fatal(err)
	}
}

func TestFetchRedirect(t *testing.T) {
	var otherAuth, otherKey atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherAuth.Store(r.Header.Get("Authorization"))
		otherKey.Store(r.Header.Get("X-Api-Key"))
		fmt.Fprint(w, "other:"+feedBody)
	}))
	defer other.Close()

	var sameAuth atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/feed.ics", http.StatusFound)
	})
	mux.HandleFunc("/feed.ics", func(w http.ResponseWriter, r *http.Request) {
		sameAuth.Store(r.Header.Get("Authorization"))
		fmt.Fprint(w, feedBody)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/feed.ics", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/loop/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/loop/"))
		http.Redirect(w, r, fmt.Sprintf("/loop/%d?token=%s", n+1, token), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	headers := map[string]string{"Authorization": "Bearer feedtoken", "X-Api-Key": "k"}
	f := NewFetcher(0, 0)

	t.Run("same-host", func(t *testing.T) {
		res, err := f.Fetch(context.Background(), FetchRequest{URL: srv.URL + "/moved", Headers: headers})
		if err != nil {
			t.Fatal(err)
		}
		if string(res.Body) != feedBody {
			t.Errorf("Body = %q; want %q", res.Body, feedBody)
		}
		if got := sameAuth.Load(); got != "Bearer feedtoken" {
			t.Errorf("Authorization after same-host redirect = %q; want it kept", got)
		}
	})

	t.Run("other-host", func(t *testing.T) {
		res, err := f.Fetch(context.Background(), FetchRequest{URL: srv.URL + "/elsewhere", Headers: headers})
		if err != nil {
			t.Fatal(err)
		}
		if string(res.Body) != "other:"+feedBody {
			t.Errorf("Body = %q; want the other server's", res.Body)
		}
		if got := otherAuth.Load(); got != "" {
			t.Errorf("Authorization at the other host = %q; want none", got)
		}
		if got := otherKey.Load(); got != "" {
			t.Errorf("X-Api-Key at the other host = %q; want none", got)
		}
	})

	t.Run("too-many", func(t *testing.T) {
		_, err := f.Fetch(context.Background(), FetchRequest{URL: srv.URL + "/loop/0"})
		assertNoSecret(t, err) // the *url.Error names the last redirect target, with its token
		if !strings.Contains(err.Error(), "stopped after 5 redirects") {
			t.Errorf("Fetch() error = %q; want it to stop after 5 redirects", err)
		}
	})
}

func TestFetchFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "feed one.ics")
	if err := os.WriteFile(path, []byte(feedBody), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	f := NewFetcher(0, 0)
	want := FetchResult{Body: []byte(feedBody), Hash: sha256.Sum256([]byte(feedBody))}

	for _, raw := range []string{
		"file://" + filepath.ToSlash(strings.ReplaceAll(path, " ", "%20")),
		"file://localhost" + filepath.ToSlash(strings.ReplaceAll(path, " ", "%20")),
		"file:" + filepath.ToSlash(strings.ReplaceAll(rel, " ", "%20")),
	} {
		t.Run(raw, func(t *testing.T) {
			res, err := f.Fetch(context.Background(), FetchRequest{URL: raw})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Fetch(%q) mismatch (-want +got):\n%s", raw, diff)
			}
			res, err = f.Fetch(context.Background(), FetchRequest{URL: raw, PrevHash: want.Hash})
			if err != nil {
				t.Fatal(err)
			}
			if !res.NotModified || res.Body != nil {
				t.Errorf("Fetch(%q) with PrevHash = %+v; want NotModified and no body", raw, res)
			}
		})
	}

	t.Run("missing", func(t *testing.T) {
		_, err := f.Fetch(context.Background(), FetchRequest{URL: "file://" + dir + "/missing.ics"})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Fetch(missing) error = %v; want os.ErrNotExist", err)
		}
	})

	t.Run("remote-host", func(t *testing.T) {
		_, err := f.Fetch(context.Background(), FetchRequest{URL: "file://examples/x.ics"})
		if err == nil || !strings.Contains(err.Error(), `host "examples"`) {
			t.Errorf("Fetch(file://examples/x.ics) error = %v; want a host error", err)
		}
	})

	t.Run("oversize", func(t *testing.T) {
		_, err := NewFetcher(0, 10).Fetch(context.Background(), FetchRequest{URL: "file://" + path})
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("Fetch() error = %v; want ErrTooLarge", err)
		}
	})
}

func TestFetchBadURL(t *testing.T) {
	for _, raw := range []string{
		"ftp://user:" + token + "@host/feed.ics",
		"https://host/%zz?token=" + token,
		"webcal://host/feed.ics?token=" + token,
	} {
		_, err := NewFetcher(0, 0).Fetch(context.Background(), FetchRequest{URL: raw})
		assertNoSecret(t, err)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"https://example.com/feed.ics", "https://example.com/feed.ics"},
		{"https://example.zoom.us/feed.ics?token=" + token, "https://example.zoom.us/feed.ics?<redacted>"},
		{"https://user:" + token + "@example.com/feed.ics", "https://<redacted>@example.com/feed.ics"},
		{"https://" + token + "@example.com/feed.ics", "https://<redacted>@example.com/feed.ics"},
		{"https://example.com:8443/a/b.ics#" + token, "https://example.com:8443/a/b.ics#<redacted>"},
		{"http://u:p@h/x?a=1#f", "http://<redacted>@h/x?<redacted>#<redacted>"},
		{"HTTPS://Example.com/feed.ics?x", "https://Example.com/feed.ics?<redacted>"},
		{
			"https://calendar.google.com/calendar/ical/alice%40contoso.com/private-0a1b2c3d4e5f60718293a4b5c6d7e8f9/basic.ics",
			"https://calendar.google.com/calendar/ical/alice%40contoso.com/private-<redacted>/basic.ics",
		},
		{
			"https://outlook.office365.com/owa/calendar/3f2b9c1e@contoso.com/7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6789/calendar.ics",
			"https://outlook.office365.com/owa/calendar/3f2b9c1e@contoso.com/<redacted>/calendar.ics",
		},
		{"https://example.com/team-calendar-2027/internationalization.ics", "https://example.com/team-calendar-2027/internationalization.ics"},
		{"file:///etc/calpresence/feed.ics", "file:///etc/calpresence/feed.ics"},
		{"file:///tmp/TestPlanShowsEvents1234567890/001/feed.ics", "file:///tmp/TestPlanShowsEvents1234567890/001/feed.ics"},
		{"file:examples/zoom.ics", "file:examples/zoom.ics"},
		{"https:user:" + token + "@host", "https:<redacted>@host"},
		// Input url.Parse refuses keeps at most a plain scheme and host.
		{"https://user:" + token + "@host.example/%zz?token=" + token, "https://host.example/<redacted>"},
		{"https://host.example:abc/?token=" + token, "https://host.example:abc/<redacted>"},
		{"https://ho st/?token=" + token, "https://<redacted>"},
		{"http://[::1/feed?token=" + token, "http://[::1/<redacted>"},
		{":" + token, "<redacted>"},
		{"\x7f" + token, "<redacted>"},
	}
	for _, tt := range tests {
		got := RedactURL(tt.in)
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q; want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, token) {
			t.Errorf("RedactURL(%q) = %q leaks the token", tt.in, got)
		}
	}
}
