package graph

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Application permissions (app roles) of Microsoft Graph that calpresence
// uses, as they appear in the roles claim of an app-only access token.
const (
	// RolePresenceReadWrite lets the application set, clear and read
	// anyone's presence.
	RolePresenceReadWrite = "Presence.ReadWrite.All"
	// RoleUserRead lets it look people up by address (GET /users/{id}, and
	// the filter on mail and proxyAddresses).
	RoleUserRead = "User.Read.All"
)

// ErrOpaqueToken means the access token is not a JWT whose claims can be
// read, so the application roles it carries are unknown. Entra issues
// app-only tokens for Graph as JWTs today, but Microsoft documents them as
// opaque to everyone but Graph: their format may change, or they may be
// encrypted. This says so instead of guessing.
var ErrOpaqueToken = errors.New("graph: the access token is not a JWT whose claims can be read")

// TokenRoles returns the application roles (the application permissions
// an administrator granted and consented to) in the roles claim of the
// access token the client uses for Graph: the one the credential caches,
// or a new one. A token that grants nothing has no roles claim: TokenRoles
// then returns none and no error. A token that cannot be read as a JWT is
// ErrOpaqueToken.
//
// The claims are decoded, not verified: the token was just issued to this
// process by the authority over TLS, and the roles serve a diagnosis
// (calpresence doctor), never a decision about access; Graph checks the
// token itself. In dry run no token is asked for and it returns an error.
func (c *Client) TokenRoles(ctx context.Context) ([]string, error) {
	if c.dryRun {
		return nil, errors.New("graph: dry run: no token is asked for")
	}
	// The same request as Authenticate and kiota's authentication
	// provider make (EnableCAE), so the credential's cached token answers.
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.ep.Scope}, EnableCAE: true})
	if err != nil {
		return nil, &tokenError{authority: c.ep.Authority, err: err}
	}
	return rolesOf(tok.Token)
}

// tokenError is a token request that failed, said in one line: azidentity's
// errors span a dozen (the request, the whole response, a link), and the
// line that matters is Entra's AADSTS code and description.
type tokenError struct {
	authority string
	err       error
}

// aadsts finds Entra's error description in azidentity's error text.
var aadsts = regexp.MustCompile(`"error_description":\s*"(AADSTS\d+:(?:[^"\\]|\\.)*)"`)

func (e *tokenError) Error() string {
	text := e.err.Error()
	first, _, _ := strings.Cut(text, "\n")
	msg := strings.TrimSpace(first)
	if m := aadsts.FindStringSubmatch(text); m != nil {
		desc := m[1]
		if s, err := strconv.Unquote(`"` + desc + `"`); err == nil {
			desc = s
		}
		msg += " " + desc
	}
	return fmt.Sprintf("graph: token from %s: %s", e.authority, msg)
}

func (e *tokenError) Unwrap() error { return e.err }

// rolesOf reads the roles claim of a JWT (RFC 7519) in compact JWS form:
// three base64url parts, the second the claims. An encrypted token (JWE,
// five parts) or anything else is ErrOpaqueToken.
func rolesOf(token string) ([]string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w (%d dot-separated parts, a signed JWT has 3)", ErrOpaqueToken, len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("%w (claims are not base64url)", ErrOpaqueToken)
	}
	var claims struct {
		Roles json.RawMessage `json:"roles"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("%w (claims are not a JSON object)", ErrOpaqueToken)
	}
	if len(claims.Roles) == 0 || string(claims.Roles) == "null" {
		return []string{}, nil
	}
	var roles []string
	if err := json.Unmarshal(claims.Roles, &roles); err != nil {
		return nil, fmt.Errorf("%w (roles is not a list of strings)", ErrOpaqueToken)
	}
	slices.Sort(roles)
	return slices.Compact(roles), nil
}
