package server

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/internal/testutil"
)

// TestPagesAnswerOnlyKnownHosts runs the pages' Host rule over Host values
// × paths: loopback names, IP literals and server.hostnames are answered;
// any other name (a rebinding page's own) gets 421; /healthz answers all.
func TestPagesAnswerOnlyKnownHosts(t *testing.T) {
	hostnames := []string{"Calpresence.Internal", "calpresence.ops.svc.cluster.local."}
	hosts := []struct {
		host string
		want int // for /, /readyz and /metrics; /healthz is always 200
	}{
		{"localhost", 200},
		{"LOCALHOST.", 200},
		{"localhost:8080", 200},
		{"127.0.0.1", 200},
		{"127.0.0.1:8080", 200},
		{"127.1.2.3:8080", 200}, // all of 127.0.0.0/8 is loopback
		{"[::1]:8080", 200},
		{"[::1]", 200},
		{"10.1.2.3", 200},      // the pod IP: kubelet probes
		{"10.1.2.3:8080", 200}, // Prometheus scraping the pod
		{"[fe80::1]", 200},
		{"[2001:db8::5]:8080", 200},
		{"calpresence.internal", 200},
		{"calpresence.internal:8080", 200},
		{"CALPRESENCE.internal.:8080", 200},
		{"calpresence.ops.svc.cluster.local:8080", 200},
		{"calpresence.ops.svc.cluster.local.", 200},
		{"evil.example", 421},
		{"evil.example:8080", 421},
		{"127.0.0.1.nip.io", 421},
		{"127.0.0.1.nip.io:8080", 421},
		{"localhost.evil.example", 421},
		{"calpresence.internal.evil.example", 421},
		{"sub.calpresence.internal", 421}, // no wildcards
		{"calpresence.ops.svc", 421},      // only the names listed
		{"2130706433:8080", 421},          // 127.0.0.1 as one number is a name to us
		{"", 421},                         // HTTP/1.0 without Host
	}
	paths := []string{"/", "/readyz", "/metrics", "/healthz"}
	var logs testutil.LogBuffer
	h := HandlerSettings(&fakeEngine{ready: true, status: sampleStatus()}, prometheus.NewRegistry(),
		func() Settings { return Settings{Hostnames: hostnames} }, slog.New(slog.NewTextHandler(&logs, nil)))
	for _, tt := range hosts {
		for _, path := range paths {
			t.Run(tt.host+path, func(t *testing.T) {
				want := tt.want
				if path == "/healthz" {
					want = 200
				}
				req := httptest.NewRequest("GET", path, nil)
				req.Host, req.RemoteAddr = tt.host, "10.0.0.9:5000"
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				body := rec.Body.String()
				if rec.Code != want {
					t.Fatalf("GET %s with Host %q = %d %.200s; want %d", path, tt.host, rec.Code, body, want)
				}
				if want != 421 {
					return
				}
				if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("Content-Type = %q; want text/plain", ct)
				}
				wantBody := `misdirected request: Host "` + tt.host + `" is not a name this server answers; list it in server.hostnames to serve the pages under it` + "\n"
				if body != wantBody {
					t.Errorf("body = %q; want %q", body, wantBody)
				}
			})
		}
	}
	// The refusals were logged, but not each of them.
	if got := logs.Lines("page request refused", "server.hostnames"); len(got) != 1 {
		t.Errorf("log has %d refusal lines; want 1 (sampled):\n%s", len(got), logs.String())
	}
}

// TestMisdirectedBodyIsShort: a long Host is cut in the answer.
func TestMisdirectedBodyIsShort(t *testing.T) {
	h := Handler(&fakeEngine{}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = strings.Repeat("a", 5000) + ".example"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 421 || rec.Body.Len() > 300 {
		t.Errorf("GET / with a 5000-byte Host = %d, %d bytes; want 421 with a short body", rec.Code, rec.Body.Len())
	}
}

// TestRefusalsLoggedOncePerMinute: a page polling us through a rebinding
// name makes one log line a minute, which counts the ones not logged.
func TestRefusalsLoggedOncePerMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs testutil.LogBuffer
		h := Handler(&fakeEngine{}, prometheus.NewRegistry(), "", slog.New(slog.NewTextHandler(&logs, nil)))
		get := func() {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Host, req.RemoteAddr = "evil.example:8080", "127.0.0.1:5000"
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		for range 5 {
			get()
			time.Sleep(time.Second)
		}
		if got := logs.Lines("page request refused", "host=evil.example:8080", "remote_addr=127.0.0.1:5000", "path=/metrics", "refused_unlogged=0"); len(got) != 1 {
			t.Fatalf("after 5 refusals in 5s the log is\n%s\nwant one line with the host, caller and path", logs.String())
		}
		time.Sleep(time.Minute)
		get()
		if got := logs.Lines("page request refused"); len(got) != 2 || !strings.Contains(got[1], "refused_unlogged=4") {
			t.Errorf("a minute later the log is\n%s\nwant a second line counting the 4 not logged", logs.String())
		}
	})
}

// TestPagesHostOnTheWire: through a real listener, an HTTP/1.0 request
// without Host gets 421 from the pages and 200 from /healthz, and a
// request sent to 127.0.0.1 under another name (what a rebinding page's
// fetch is) gets 421.
func TestPagesHostOnTheWire(t *testing.T) {
	srv := httptest.NewServer(Handler(&fakeEngine{ready: true}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, tt := range []struct {
		request string
		want    int
	}{
		{"GET /readyz HTTP/1.0\r\n\r\n", 421},
		{"GET /healthz HTTP/1.0\r\n\r\n", 200},
		{"GET /readyz HTTP/1.1\r\nHost: evil.example:" + addr[strings.LastIndex(addr, ":")+1:] + "\r\nConnection: close\r\n\r\n", 421},
		{"GET /readyz HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n", 200},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(tt.request)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.request, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%q = %d; want %d", tt.request, resp.StatusCode, tt.want)
		}
	}
}

// TestAdminIgnoresHostnames: server.hostnames widens what the pages
// answer, never who may act. Without a token, a listed name is not a
// loopback name (a sidecar forwards it for a remote caller); with one, the
// token decides, whatever the name.
func TestAdminIgnoresHostnames(t *testing.T) {
	for _, tt := range []struct {
		token string
		req   adminReq
		want  int
	}{
		{"", adminReq{remote: "127.0.0.1:5000", host: "calpresence.internal:8080", headers: jsonCT}, 403},
		{"", adminReq{remote: "127.0.0.1:5000", host: "127.0.0.1:8080", headers: jsonCT}, 200},
		{"tok3n", adminReq{remote: "10.0.0.9:5000", host: "calpresence.internal:8080", headers: with(jsonCT, "Authorization", "Bearer tok3n")}, 200},
		{"tok3n", adminReq{remote: "10.0.0.9:5000", host: "evil.example:8080", headers: with(jsonCT, "Authorization", "Bearer tok3n")}, 200},
		{"tok3n", adminReq{remote: "10.0.0.9:5000", host: "calpresence.internal:8080", headers: jsonCT}, 401},
	} {
		h := HandlerSettings(&fakeEngine{ready: true}, prometheus.NewRegistry(),
			func() Settings { return Settings{Token: tt.token, Hostnames: []string{"calpresence.internal"}} }, slog.New(slog.DiscardHandler))
		req := tt.req
		req.path = "/-/resync"
		if code, body := send(t, h, req); code != tt.want {
			t.Errorf("token %q, Host %s: POST /-/resync = %d %s; want %d", tt.token, req.host, code, body, tt.want)
		}
	}
}
