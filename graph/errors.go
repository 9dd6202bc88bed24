package graph

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
)

// classify turns the result of one Graph call into a *presence.Error (nil
// when the call succeeded). The verdict on a status is policy.Classify's;
// classify adds what the answer says and the verdicts on failures without
// one:
//
//   - an HTTP answer ≥ 400 (as the recorder saw it after retries): the
//     status and op decide the Kind (policy.Classify); code and message
//     come from the ODataError body, with or without a message, else from
//     the body text (an HTML error page is reduced to its text);
//     Retry-After (seconds or HTTP date) becomes RetryAfter;
//   - a token request that Entra answered: policy.Classify(OpToken) of
//     its status (refused: Unauthorized; throttled or down: Retry); no
//     answer from Entra: Retry;
//   - timeouts, resets, DNS and TLS failures, cancellation: Retry.
//
// It never panics on odd bodies.
func classify(op, user string, err error, o *outcome, now time.Time) *presence.Error {
	status, header, body, _ := o.snapshot()
	if err == nil && status < 400 {
		return nil
	}
	pe := &presence.Error{Op: op, User: user}
	if status >= 400 {
		pe.Status = status
		pe.Kind = policy.Classify(op, status)
		pe.Code, pe.Message = errorDetails(err, header, body)
		if pe.Message == "" && pe.Code == "" {
			pe.Message = http.StatusText(status)
		}
		if d, ok := policy.RetryAfter(header.Get("Retry-After"), now); ok {
			pe.RetryAfter = d
		}
		return pe
	}

	pe.Err = err
	var authErr *azidentity.AuthenticationFailedError
	var unavailable *azidentity.AuthenticationRequiredError
	var netErr net.Error
	var timeout *timeoutError
	switch {
	case errors.As(err, &authErr):
		pe.Code = "AuthenticationFailed"
		pe.Message = "token request failed"
		pe.Kind = presence.Unauthorized
		if authErr.RawResponse != nil {
			pe.Kind = policy.Classify(policy.OpToken, authErr.RawResponse.StatusCode)
		} else {
			pe.Kind = presence.Retry // no answer from Entra
		}
	case errors.As(err, &unavailable):
		pe.Code, pe.Message, pe.Kind = "AuthenticationRequired", "credential needs interaction", presence.Unauthorized
	case isCredentialUnavailable(err):
		pe.Code, pe.Message, pe.Kind = "CredentialUnavailable", "no credential available", presence.Unauthorized
	case errors.Is(err, context.Canceled):
		pe.Message, pe.Kind = "canceled", presence.Retry
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		pe.Message, pe.Kind = "timeout", presence.Retry
	case status > 0:
		// A 2xx/3xx answer kiota could not read (a proxy's garbled page).
		pe.Status, pe.Message, pe.Kind = status, "unreadable response", presence.Retry
	default:
		pe.Message, pe.Kind = "request failed", presence.Retry
	}
	return pe
}

// isCredentialUnavailable reports azidentity's "credential unavailable"
// (managed identity absent, no workload token file, empty default chain).
// The type is unexported; azidentity marks it NonRetriable.
func isCredentialUnavailable(err error) bool {
	var nr interface{ NonRetriable() }
	return errors.As(err, &nr)
}

// errorDetails extracts a Graph error code and message: from the parsed
// ODataError when kiota could read one, else from the body: Graph's
// {"error":{"code","message"}}, OAuth's {"error","error_description"}, or
// the text of anything else (HTML tags stripped).
func errorDetails(err error, header http.Header, body []byte) (code, message string) {
	var odata *odataerrors.ODataError
	if errors.As(err, &odata) {
		if me := odata.GetErrorEscaped(); me != nil {
			if c := me.GetCode(); c != nil {
				code = *c
			}
			if m := me.GetMessage(); m != nil {
				message = *m
			}
		}
		if code != "" || message != "" {
			return code, excerpt(message)
		}
	}
	if len(body) == 0 {
		return "", ""
	}
	var graphBody struct {
		Error json.RawMessage `json:"error"`
		Desc  string          `json:"error_description"`
	}
	if json.Unmarshal(body, &graphBody) == nil && len(graphBody.Error) > 0 {
		var main struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(graphBody.Error, &main) == nil {
			return main.Code, excerpt(main.Message)
		}
		var oauth string
		if json.Unmarshal(graphBody.Error, &oauth) == nil {
			return oauth, excerpt(graphBody.Desc)
		}
	}
	ct := strings.ToLower(header.Get("Content-Type"))
	text := string(body)
	if strings.Contains(ct, "html") || looksLikeHTML(text) {
		text = htmlText(text)
	}
	return "", excerpt(text)
}

var (
	reScript = regexp.MustCompile(`(?is)<(script|style)[^>]*>.*?</(script|style)>`)
	reTag    = regexp.MustCompile(`(?s)<[^>]*>`)
	reSpace  = regexp.MustCompile(`\s+`)
)

func looksLikeHTML(s string) bool {
	t := strings.ToLower(strings.TrimSpace(s))
	return strings.HasPrefix(t, "<!doctype html") || strings.HasPrefix(t, "<html")
}

// htmlText reduces an HTML page to its text; the <title> usually says it
// all ("502 Bad Gateway").
func htmlText(s string) string {
	s = reScript.ReplaceAllString(s, " ")
	s = reTag.ReplaceAllString(s, " ")
	return html.UnescapeString(s)
}

// excerpt collapses whitespace and cuts a message to 200 characters of
// valid UTF-8.
func excerpt(s string) string {
	s = strings.TrimSpace(reSpace.ReplaceAllString(s, " "))
	s = strings.ToValidUTF8(s, "\uFFFD")
	const maxLen = 200
	if len(s) <= maxLen {
		return s
	}
	cut := maxLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
