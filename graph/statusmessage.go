package graph

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
)

// Operation names of the status message calls in *presence.Error.Op.
const (
	OpSetStatusMessage   = policy.OpSetStatusMessage
	OpClearStatusMessage = policy.OpClearStatusMessage // setStatusMessage with an empty message
)

// SetStatusMessage sets userID's Teams status message to message, until
// expires (zero: no expiry): POST /users/{id}/presence/setStatusMessage
// with statusMessage {message {content, contentType "text"}, expiryDateTime
// {dateTime, timeZone "UTC"}}. Graph keeps one message per person, whoever
// wrote it, so this replaces the person's own message too: the caller
// decides whether the message shown is ours to replace. It is a presence
// write, paced with setPresence (WithPacer). An empty message or an expiry
// not in the future fails as Permanent without a call.
func (c *Client) SetStatusMessage(ctx context.Context, userID, message string, expires time.Time) error {
	if strings.TrimSpace(message) == "" {
		return &presence.Error{Op: OpSetStatusMessage, User: userID, Kind: presence.Permanent,
			Message: "empty status message (use ClearStatusMessage)"}
	}
	if !expires.IsZero() && !expires.After(c.now()) {
		return &presence.Error{Op: OpSetStatusMessage, User: userID, Kind: presence.Permanent,
			Message: fmt.Sprintf("expiry %s is not in the future", expires.UTC().Format(time.RFC3339))}
	}
	if c.dryRun {
		c.logger.InfoContext(ctx, "graph: dry run: set status message", "user", userID,
			"message", message, "expires", expires)
		return nil
	}
	return c.statusMessage(ctx, OpSetStatusMessage, userID, message, expires)
}

// ClearStatusMessage removes userID's Teams status message, whoever wrote
// it: setStatusMessage with an empty message and no expiry. Graph has no
// clear operation for the message; an empty one is how Teams clears it.
// It is a presence write, paced with setPresence (WithPacer).
func (c *Client) ClearStatusMessage(ctx context.Context, userID string) error {
	if c.dryRun {
		c.logger.InfoContext(ctx, "graph: dry run: clear status message", "user", userID)
		return nil
	}
	return c.statusMessage(ctx, OpClearStatusMessage, userID, "", time.Time{})
}

// graphDateTime is the layout of dateTimeTimeZone.dateTime: no zone
// (that is timeZone's), seven fractional digits as Graph writes them.
const graphDateTime = "2006-01-02T15:04:05.0000000"

func (c *Client) statusMessage(ctx context.Context, op, userID, message string, expires time.Time) error {
	return c.do(ctx, op, userID, func(ctx context.Context) error {
		text := models.TEXT_BODYTYPE
		item := models.NewItemBody()
		item.SetContent(&message)
		item.SetContentType(&text)
		sm := models.NewPresenceStatusMessage()
		sm.SetMessage(item)
		if !expires.IsZero() {
			dt, tz := expires.UTC().Format(graphDateTime), "UTC"
			exp := models.NewDateTimeTimeZone()
			exp.SetDateTime(&dt)
			exp.SetTimeZone(&tz)
			sm.SetExpiryDateTime(exp)
		}
		body := users.NewItemPresenceSetStatusMessagePostRequestBody()
		body.SetStatusMessage(sm)
		return c.users().ByUserId(userID).Presence().SetStatusMessage().Post(ctx, body, nil)
	})
}
