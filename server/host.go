package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/calpresence/calpresence/internal/logsample"
)

// The status page, /readyz and /metrics name people and their meetings.
// A page on another site can make its own name resolve to 127.0.0.1 (DNS
// rebinding): the browser then holds it same-origin with us and lets it
// read our answers. Such a request names the other site in Host, so the
// pages answer only a Host that is
//
//   - a loopback name: localhost, 127.0.0.0/8, [::1];
//   - an IP literal of any address: the kubelet's probes name the pod IP,
//     Prometheus the address it scrapes, and no rebinding page can be
//     served from an address that is ours;
//   - a name listed in server.hostnames (the Service's name, an internal
//     DNS name), which only the operator chooses.
//
// Anything else, a request without Host (HTTP/1.0) included, is answered
// 421 Misdirected Request, saying which key to set.

// hostName returns the host a Host header value names, as compared: the
// port, the brackets of an IPv6 literal and one trailing dot removed,
// lower-cased. "" for an empty Host.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// loopbackHost reports whether the Host header names this machine by a
// loopback address or "localhost".
func loopbackHost(host string) bool { return loopbackName(hostName(host)) }

// loopbackName reports whether name (as hostName returns it) is
// "localhost" or a loopback address.
func loopbackName(name string) bool {
	if name == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(name)
	return err == nil && ip.Unmap().IsLoopback() // [::ffff:127.0.0.1] too
}

// pageHost reports whether the pages answer the Host header value host:
// a loopback name, an IP literal, or one of hostnames (server.hostnames).
func pageHost(host string, hostnames []string) bool {
	name := hostName(host)
	if name == "" {
		return false
	}
	if _, err := netip.ParseAddr(name); err == nil || name == "localhost" {
		return true // every IP literal, loopback ones included
	}
	for _, h := range hostnames {
		if strings.EqualFold(strings.TrimSuffix(h, "."), name) {
			return true
		}
	}
	return false
}

// logRefusalsEvery is how often a refused page request is logged at most:
// a browser polling a rebinding page would otherwise fill the log.
const logRefusalsEvery = time.Minute

// hostGuard answers the pages only for the Host names pageHost accepts.
type hostGuard struct {
	hostnames func() []string // server.hostnames, asked at every request (a reload changes it)
	log       *slog.Logger

	refusals logsample.Sampler // Every: logRefusalsEvery
}

// wrap serves next only for a Host the pages answer, else 421.
func (g *hostGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pageHost(r.Host, g.hostnames()) {
			next.ServeHTTP(w, r)
			return
		}
		g.logRefusal(r)
		host := r.Host
		if len(host) > 100 {
			host = host[:100] + "..."
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusMisdirectedRequest)
		fmt.Fprintf(w, "misdirected request: Host %q is not a name this server answers; list it in server.hostnames to serve the pages under it\n", host)
	})
}

// logRefusal logs a refused request, at most once per logRefusalsEvery,
// with the number of refusals not logged since the line before.
func (g *hostGuard) logRefusal(r *http.Request) {
	unlogged, ok := g.refusals.Allow(time.Now())
	if !ok {
		return
	}
	g.log.Warn("page request refused: Host not answered (list it in server.hostnames to serve it)",
		"host", r.Host, "remote_addr", r.RemoteAddr, "path", r.URL.Path, "refused_unlogged", unlogged)
}
