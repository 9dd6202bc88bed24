package selfservice

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
)

// session is what the session cookie carries, signed and encrypted.
type session struct {
	OID    string `json:"oid"`
	UPN    string `json:"upn"`
	Name   string `json:"name,omitempty"`
	CSRF   string `json:"csrf"`
	Issued int64  `json:"iat"` // unix seconds, by Config.Now
}

// pending is what the login cookie carries between the redirect to the
// authority and the callback: what was asked for, to check the answer.
type pending struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"` // PKCE code_verifier
	Issued   int64  `json:"iat"`
}

// newCodec is a securecookie codec (HMAC-SHA256 then AES-256-CTR, the
// cookie's name bound into the MAC) whose two keys are derived from the
// cookie key with HKDF-SHA256 (RFC 5869), one pair per purpose, so that no
// key serves two jobs. maxAge bounds the cookie's own timestamp.
func newCodec(key []byte, purpose string, maxAge time.Duration) (*securecookie.SecureCookie, error) {
	hashKey, err := hkdf.Key(sha256.New, key, nil, "calpresence selfservice "+purpose+" hmac", 32)
	if err != nil {
		return nil, fmt.Errorf("selfservice: derive cookie key: %w", err)
	}
	blockKey, err := hkdf.Key(sha256.New, key, nil, "calpresence selfservice "+purpose+" aes", 32)
	if err != nil {
		return nil, fmt.Errorf("selfservice: derive cookie key: %w", err)
	}
	sc := securecookie.New(hashKey, blockKey)
	sc.SetSerializer(securecookie.JSONEncoder{})
	sc.MaxAge(int(maxAge / time.Second))
	return sc, nil
}

// randomToken returns 32 random bytes, base64url-encoded (state, nonce,
// CSRF token).
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// cookieName prefixes name with __Host- when cookies are Secure: the
// browser then keeps it to this host, path /, set over TLS (RFC 6265bis
// "Cookie Name Prefixes").
func (s *Server) cookieName(name string) string {
	if s.secure {
		return "__Host-" + name
	}
	return name
}

func (s *Server) sessionCookie() string { return s.cookieName("calpresence_session") }

// loginCookie is named after the state it carries, so that sign-ins
// started in two tabs do not overwrite each other.
func (s *Server) loginCookie(state string) string {
	return s.cookieName("calpresence_login_" + state[:12])
}

// setCookie sets an HttpOnly, SameSite=Lax cookie (Secure when URL is
// https). Lax is what the callback needs: the authority sends the browser
// back with a top-level GET, which carries Lax cookies.
func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// startSession sets the session cookie for a person just signed in.
func (s *Server) startSession(w http.ResponseWriter, se session) error {
	se.CSRF = randomToken()
	se.Issued = s.now().Unix()
	v, err := s.session.Encode(s.sessionCookie(), se)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	s.setCookie(w, s.sessionCookie(), v, SessionLifetime)
	return nil
}

// readSession returns the request's session: a cookie that decodes
// (authentic, not tampered with) and is younger than SessionLifetime.
func (s *Server) readSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(s.sessionCookie())
	if err != nil {
		return session{}, false
	}
	var se session
	if err := s.session.Decode(c.Name, c.Value, &se); err != nil || se.OID == "" || se.CSRF == "" {
		return session{}, false
	}
	age := s.now().Sub(time.Unix(se.Issued, 0))
	if age < -time.Minute || age >= SessionLifetime {
		return session{}, false
	}
	return se, true
}

// post guards a state-changing action: POST only, the Origin header is
// this site's (a page elsewhere cannot make a signed-in browser act), a
// session, and the session's CSRF token in the form field csrf. Anything
// else is refused with 403 and a page that says why. Every POST action
// (sign-out now; pause, calls and feeds later) goes through it.
func (s *Server) post(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != s.origin {
			s.refuse(w, http.StatusForbidden, "Refused: this request came from another site",
				"A form on another site (or a request without an Origin header) tried to act on your behalf. Nothing was changed.")
			return
		}
		se, ok := s.readSession(r)
		if !ok {
			s.refuse(w, http.StatusForbidden, "Refused: you are not signed in",
				"Your session has ended or its cookie is not valid. Nothing was changed; sign in again.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			s.refuse(w, http.StatusBadRequest, "Refused: the form could not be read", "Nothing was changed.")
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(se.CSRF)) != 1 {
			s.refuse(w, http.StatusForbidden, "Refused: the form is stale or not from this page",
				"The form's CSRF token is missing or does not match your session. Nothing was changed; reload the page and try again.")
			return
		}
		h(w, r, se)
	}
}

// signOut ends the session. It does not redirect to / (which would sign
// the person straight back in through Entra's single sign-on).
func (s *Server) signOut(w http.ResponseWriter, r *http.Request, se session) {
	s.clearCookie(w, s.sessionCookie())
	s.logger.InfoContext(r.Context(), "selfservice: signed out", "oid", se.OID)
	s.render(w, http.StatusOK, "signedout", page{Title: "Signed out"})
}
