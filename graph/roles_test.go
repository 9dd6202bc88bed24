package graph

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/config"
)

// TestTokenRoles reads the roles claim of the token the fake issues: a JWT
// with SetAppRoles, an opaque string without, which is said plainly.
func TestTokenRoles(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.SetAppRoles("User.Read.All", "Presence.ReadWrite.All")
	got, err := e.c.TokenRoles(ctxT(t))
	if err != nil {
		t.Fatalf("TokenRoles = %v", err)
	}
	if want := []string{"Presence.ReadWrite.All", "User.Read.All"}; !cmp.Equal(got, want) {
		t.Errorf("TokenRoles = %q; want %q", got, want)
	}

	opaque := newEnv(t, nil)
	if got, err := opaque.c.TokenRoles(ctxT(t)); !errors.Is(err, ErrOpaqueToken) {
		t.Errorf("TokenRoles of an opaque token = %q, %v; want ErrOpaqueToken", got, err)
	}

	bad := newEnv(t, func(c *config.Graph) { c.ClientSecret = "wrong" })
	_, err = bad.c.TokenRoles(ctxT(t))
	if err == nil || errors.Is(err, ErrOpaqueToken) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "AADSTS7000215: Invalid client secret provided.") {
		t.Errorf("TokenRoles with a wrong secret = %v; want the authority's refusal in one line, with its AADSTS code", err)
	}
}

func TestRolesOf(t *testing.T) {
	jwt := func(claims string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"typ":"JWT","alg":"RS256","nonce":"x"}`)) + "." + enc([]byte(claims)) + ".c2ln"
	}
	for _, tt := range []struct {
		name, token string
		want        []string
		opaque      bool
	}{
		{"roles", jwt(`{"aud":"https://graph.microsoft.com","roles":["User.Read.All","Presence.ReadWrite.All","User.Read.All"],"ver":"1.0"}`),
			[]string{"Presence.ReadWrite.All", "User.Read.All"}, false},
		// A token that grants nothing carries no roles claim at all.
		{"no roles claim", jwt(`{"aud":"https://graph.microsoft.com","ver":"1.0"}`), []string{}, false},
		{"null roles", jwt(`{"roles":null}`), []string{}, false},
		{"opaque", "graphtest.1.abcdef", nil, true},
		{"encrypted (JWE)", "a.b.c.d.e", nil, true},
		{"claims not base64", "a.!!!.c", nil, true},
		{"claims not JSON", "a." + base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".c", nil, true},
		{"roles not strings", jwt(`{"roles":"Presence.ReadWrite.All"}`), nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rolesOf(tt.token)
			if tt.opaque {
				if !errors.Is(err, ErrOpaqueToken) {
					t.Errorf("rolesOf(%q) = %q, %v; want ErrOpaqueToken", tt.token, got, err)
				}
				return
			}
			if err != nil || !cmp.Equal(got, tt.want) {
				t.Errorf("rolesOf(%q) = %q, %v; want %q", tt.token, got, err, tt.want)
			}
		})
	}
}
