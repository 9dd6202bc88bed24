package graphtest_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/presence"
)

type readAnswer struct {
	Value []struct {
		ID            string `json:"id"`
		Availability  string `json:"availability"`
		Activity      string `json:"activity"`
		StatusMessage *struct {
			Message struct {
				Content     string `json:"content"`
				ContentType string `json:"contentType"`
			} `json:"message"`
		} `json:"statusMessage"`
	} `json:"value"`
}

func (c *client) read(ids ...string) (int, readAnswer, string) {
	b, _ := json.Marshal(map[string][]string{"ids": ids})
	status, body, err := c.do("POST", "/communications/getPresencesByUserId", string(b), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	var a readAnswer
	if status == 200 {
		if err := json.Unmarshal(body, &a); err != nil {
			c.t.Fatalf("read answer %s: %v", body, err)
		}
	}
	return status, a, string(body)
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	}
	return out
}

// TestReadPresencesLimit: getPresencesByUserId takes 650 ids, and answers
// 651 with 400 and Graph's error body.
func TestReadPresencesLimit(t *testing.T) {
	c := newClient(t)
	status, a, body := c.read(ids(650)...)
	if status != 200 || len(a.Value) != 650 {
		t.Fatalf("read of 650 = %d with %d presences; want 200 with 650 (%.200s)", status, len(a.Value), body)
	}
	status, _, body = c.read(ids(651)...)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if status != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != "BadRequest" || !strings.Contains(e.Error.Message, "650") {
		t.Errorf("read of 651 = %d %s; want 400 BadRequest naming 650", status, body)
	}
	if status, _, _ := c.read(); status != 400 {
		t.Errorf("read of no ids = %d; want 400", status)
	}
	calls := c.srv.CallsOp(graphtest.OpReadPresences)
	if len(calls) != 3 || len(calls[1].IDs) != 651 {
		t.Errorf("recorded reads = %d (second with %d ids); want 3, the second with 651", len(calls), len(calls[1].IDs))
	}
}

// TestAggregation: what Teams shows is the person's own status over every
// session, the strongest session otherwise, their client's Available when
// Graph lost the app's session, and Offline with no session at all.
func TestAggregation(t *testing.T) {
	c := newClient(t)
	ok := setBody(c.srv.ClientID(), "Busy", "InAConferenceCall", "PT1H")
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if status, body := c.set(u, ok); status != 200 {
			t.Fatalf("set %s = %d %s", u, status, body)
		}
	}
	c.srv.SetPreferred("bob", "Available", "Available")
	c.srv.LoseSession("carol")
	c.srv.SetSignedIn("dave", false)
	c.srv.LoseSession("dave")
	c.srv.SetSignedIn("erin", false)
	c.srv.SetPreferred("erin", "DoNotDisturb", "DoNotDisturb") // no session: no effect

	want := map[string]string{
		"alice": "Busy/InAConferenceCall",
		"bob":   "Available/Available",
		"carol": "Available/Available",
		"dave":  "Offline/Offline",
		"erin":  "Offline/Offline",
		"frank": "Available/Available", // signed in, no app session
	}
	status, a, body := c.read("alice", "bob", "carol", "dave", "erin", "frank")
	if status != 200 || len(a.Value) != len(want) {
		t.Fatalf("read = %d %s", status, body)
	}
	for _, p := range a.Value {
		if got := p.Availability + "/" + p.Activity; got != want[p.ID] {
			t.Errorf("%s shows %s; want %s", p.ID, got, want[p.ID])
		}
		if s := c.srv.Shown(p.ID); s.Availability+"/"+s.Activity != want[p.ID] {
			t.Errorf("Shown(%s) = %+v; want %s", p.ID, s, want[p.ID])
		}
	}
	if _, live := c.srv.Session("carol"); live {
		t.Error("carol's session alive after LoseSession")
	}
	if got := c.clear("carol"); got != 404 {
		t.Errorf("clear of a lost session = %d; want 404", got)
	}
	c.srv.ClearPreferred("bob")
	if s := c.srv.Shown("bob"); s.Availability != presence.Busy {
		t.Errorf("bob after ClearPreferred shows %+v; want Busy", s)
	}
}

// TestStatusMessage: setStatusMessage sets the one message a person has
// (an empty one removes it), it expires, and reads show its text only.
func TestStatusMessage(t *testing.T) {
	c := newClient(t)
	post := func(body string) int {
		status, _, err := c.do("POST", "/users/alice/presence/setStatusMessage", body, nil)
		if err != nil {
			t.Fatal(err)
		}
		return status
	}
	exp := c.srv.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	body := `{"statusMessage":{"message":{"content":"In a meeting","contentType":"text"},` +
		`"expiryDateTime":{"dateTime":"` + exp.Format("2006-01-02T15:04:05.0000000") + `","timeZone":"UTC"}}}`
	if s := post(body); s != 200 {
		t.Fatalf("setStatusMessage = %d", s)
	}
	m, ok := c.srv.StatusMessage("alice")
	if !ok || m.Content != "In a meeting" || !m.Expires.Equal(exp) {
		t.Errorf("StatusMessage = %+v, %v; want In a meeting until %s", m, ok, exp)
	}
	_, a, _ := c.read("alice")
	if a.Value[0].StatusMessage == nil || a.Value[0].StatusMessage.Message.Content != "In a meeting" {
		t.Errorf("read shows message %+v; want In a meeting", a.Value[0].StatusMessage)
	}
	for _, bad := range []string{
		`{"statusMessage":{"message":{"content":"x","contentType":"html"}}}`,
		`{"statusMessage":{"message":{"content":"x"},"expiryDateTime":{"dateTime":"2026-01-01T10:00:00Z","timeZone":"UTC"}}}`,
		`{"statusMessage":{}}`,
		`{"message":"x"}`,
	} {
		if s := post(bad); s != 400 {
			t.Errorf("setStatusMessage(%s) = %d; want 400", bad, s)
		}
	}
	c.srv.Advance(31 * time.Minute)
	if _, ok := c.srv.StatusMessage("alice"); ok {
		t.Error("message shown after its expiry")
	}
	c.srv.SetStatusMessage("alice", graphtest.StatusMessage{Content: "Back at 3"})
	if s := post(`{"statusMessage":{"message":{"content":"","contentType":"text"}}}`); s != 200 {
		t.Fatalf("clearing setStatusMessage = %d", s)
	}
	if m, ok := c.srv.StatusMessage("alice"); ok {
		t.Errorf("message after an empty one = %+v; want none", m)
	}
}

// TestReadRateLimit: reads have their own budget; exhausting it throttles
// reads only, and exhausting the writes' leaves reads alone.
func TestReadRateLimit(t *testing.T) {
	c := newClient(t)
	ok := setBody(c.srv.ClientID(), "Busy", "InACall", "PT1H")
	c.srv.SetReadRateLimit(1, time.Minute)
	c.srv.SetRateLimit(1, time.Minute)
	if s, _, _ := c.read("alice"); s != 200 {
		t.Fatalf("first read = %d", s)
	}
	status, _, err := c.do("POST", "/communications/getPresencesByUserId", `{"ids":["alice"]}`, nil)
	if err != nil || status != 429 {
		t.Fatalf("second read = %d, %v; want 429", status, err)
	}
	last := c.srv.CallsOp(graphtest.OpReadPresences)[1]
	if last.Fault != "rate_limit" || last.Status != 429 {
		t.Errorf("throttled read recorded as %q %d", last.Fault, last.Status)
	}
	if s, body := c.set("alice", ok); s != 200 {
		t.Errorf("write while reads are throttled = %d %s; want 200", s, body)
	}
	if s, _ := c.set("bob", ok); s != 429 {
		t.Errorf("second write = %d; want 429", s)
	}
	c.srv.Advance(time.Minute)
	c.srv.SetRateLimit(1, time.Hour)
	c.set("carol", ok)
	if s, _ := c.set("carol", ok); s != 429 {
		t.Fatalf("writes not throttled")
	}
	if s, _, _ := c.read("alice"); s != 200 {
		t.Errorf("read while writes are throttled = %d; want 200", s)
	}
}
