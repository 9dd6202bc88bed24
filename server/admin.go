package server

import (
	"crypto/subtle"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// refusal is why an admin request was turned away, and with what status.
type refusal struct {
	code   int
	reason string
}

// authorize decides whether r may use an admin action (docs/operations.md). The actions change presence for many people, so the rules
// are strict, and the same for every admin path:
//
//  1. Nothing a browser page can forge. A page on another site can make the
//     browser POST to 127.0.0.1 without a CORS preflight ("simple"
//     requests: no-cors fetch, a form): such a request carries an Origin
//     naming the other site, and Sec-Fetch-Site cross-site or same-site,
//     and its Content-Type can only be text/plain, a form or multipart.
//     So a present Origin other than our own, a Sec-Fetch-Site other than
//     same-origin or none, and any Content-Type but application/json are
//     refused (403, 403, 415). The CLI sends no Origin and JSON.
//  2. With an admin token configured, the bearer token, from every
//     caller, loopback included: behind a service-mesh sidecar (Istio,
//     Linkerd) every inbound request comes from 127.0.0.1, so the peer
//     address says nothing about who is asking (401 without it).
//  3. Without a token, only a loopback peer that names a loopback host
//     (127.0.0.1, [::1], localhost) in Host (403). The Host rule stops DNS
//     rebinding: a page whose own name was made to resolve to 127.0.0.1
//     is same-origin with us, but names itself in Host.
//
// The pages' Host rule (host.go) is a different one, on purpose. With a
// token, Host is not checked at all: a page on another site does not know
// the token, so a request that bears it was not forged, whatever name it
// was sent to (a service-mesh sidecar forwards the Service's name). Without one, the names
// in server.hostnames do not count as loopback: such a name reaches us
// through a proxy or a sidecar on behalf of a remote caller, whom rule 3
// exists to keep out. So server.hostnames widens what the pages answer,
// never who may act.
//
// It returns nil when r may proceed.
func authorize(r *http.Request, token string) *refusal {
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
		return &refusal{http.StatusForbidden, "cross-origin request (Origin " + o + ")"}
	}
	switch s := r.Header.Get("Sec-Fetch-Site"); s {
	case "", "same-origin", "none":
	default:
		return &refusal{http.StatusForbidden, "request made by a browser for another site (Sec-Fetch-Site " + s + ")"}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &refusal{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	}
	if token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
			return &refusal{http.StatusUnauthorized, "missing or wrong admin token"}
		}
		return nil
	}
	if !loopbackPeer(r.RemoteAddr) {
		return &refusal{http.StatusForbidden, "not a loopback caller, and no admin token is configured"}
	}
	if !loopbackHost(r.Host) {
		return &refusal{http.StatusForbidden, "Host " + r.Host + " is not a loopback name, and no admin token is configured"}
	}
	return nil
}

// refuse answers a refused admin request and logs it.
func refuse(w http.ResponseWriter, r *http.Request, why *refusal, log *slog.Logger) {
	log.Warn("admin request refused", "remote_addr", r.RemoteAddr, "path", r.URL.Path, "reason", why.reason)
	if why.code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="calpresence"`)
	}
	writeJSON(w, why.code, ActionResponse{Actions: []ActionReport{}, Error: "refused: " + why.reason})
}

// sameOrigin reports whether the Origin header value origin names the
// host the request was sent to (host, from the Host header). Default
// ports are ignored on both sides; "null" (a sandboxed page, a file) is
// never our origin.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	def := ":80"
	if u.Scheme == "https" {
		def = ":443"
	}
	return strings.EqualFold(strings.TrimSuffix(u.Host, def), strings.TrimSuffix(host, def))
}

// loopbackPeer reports whether remoteAddr (ip:port) is a loopback address.
func loopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
