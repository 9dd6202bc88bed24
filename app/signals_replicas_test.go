package app

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state/pg"
)

// Live meeting signals with several replicas (docs/webhooks.md, "Nothing
// acknowledged is lost"; docs/deploy.md): every replica listens, the
// signal is stored in the shared inbox before the vendor's 2xx, and only
// the leader's engine applies it. The deliveries are the vendors' payloads
// kept with package signals (signals/testdata/README.md names their
// sources), with times of now, signed as the vendors sign them.

const (
	testZoomSecret  = "zoom-webhook-secret-0xC0FFEE"
	testWebexSecret = "webex-webhook-secret-0xBEEF"
	// testWebexNumber is the meeting number of the Webex testdata.
	testWebexNumber = "25501234567"
)

// webhookConfig is replicaConfig with both vendors' webhooks on a loopback
// port of the system's choosing.
func webhookConfig(t *testing.T, dsn string) *config.Config {
	t.Helper()
	cfg := replicaConfig(t, dsn)
	cfg.Webhooks = &config.Webhooks{
		Listen:         "127.0.0.1:0",
		MaxUnscheduled: config.DefaultWebhooks().MaxUnscheduled,
		Zoom:           &config.ZoomWebhook{SecretToken: testZoomSecret},
		Webex:          &config.WebexWebhook{Secret: testWebexSecret},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// webexMeeting is a feed of one Webex meeting from start to end: its
// video address names the meeting number, which links Webex's signals to it.
func webexMeeting(uid string, start, end time.Time) []byte {
	return fmt.Appendf(nil, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//app replicas test//EN\r\n"+
		"BEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:%s\r\n"+
		"LOCATION:%s@contoso.webex.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		uid, start.UTC().Format("20060102T150405Z"), end.UTC().Format("20060102T150405Z"), uid, testWebexNumber)
}

// laterMeeting is a feed of one meeting that starts well after a signal
// without an end stops counting (webhooks.max_unscheduled, 8 h): a span it
// overlapped would take the meeting's stronger pair.
func laterMeeting(now time.Time) []byte {
	return meeting("later", now.Add(12*time.Hour), now.Add(13*time.Hour))
}

// startPair starts two replicas on cfg's database, calling g1 and g2 for
// Graph, and returns them once one is a ready leader and the other stands
// by.
func startPair(t *testing.T, cfg *config.Config, feeds *testutil.Feeds, g1, g2 *fakeGraph) (lead, standby *replica) {
	t.Helper()
	var r1, r2 *replica
	var wg sync.WaitGroup
	wg.Go(func() { r1 = startReplica(t, cfg, "r1", feeds, g1) })
	wg.Go(func() { r2 = startReplica(t, cfg, "r2", feeds, g2) })
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if !testutil.WaitUntil(20*time.Second, func() bool {
		for _, p := range [][2]*replica{{r1, r2}, {r2, r1}} {
			if code, rd := p[0].readyz(t); code == 200 && rd.Role == "leader" && p[1].role(t) == "standby" {
				lead, standby = p[0], p[1]
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no ready leader beside a standby 20s after both started: r1 %q, r2 %q", r1.role(t), r2.role(t))
	}
	return lead, standby
}

// webhookAddr is the address the replica's webhook listener bound.
func (r *replica) webhookAddr(t *testing.T) string {
	t.Helper()
	var lines []string
	if !testutil.WaitUntil(10*time.Second, func() bool {
		lines = r.logs.Lines(`"msg":"serving webhooks"`)
		return len(lines) > 0
	}) {
		t.Fatalf("%s: no webhook listener 10s after the start", r.id)
	}
	var rec struct{ Addr string }
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || rec.Addr == "" {
		t.Fatalf("%s: log line %s: addr %q, %v", r.id, lines[0], rec.Addr, err)
	}
	return rec.Addr
}

// readDelivery reads a vendor's payload kept with package signals.
func readDelivery(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../signals/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// zoomPresence is the Zoom presence delivery in file, of alice, at.
func zoomPresence(t *testing.T, file string, at time.Time) string {
	t.Helper()
	body := strings.ReplaceAll(readDelivery(t, file), "bob@contoso.com", "alice@contoso.com")
	return regexp.MustCompile(`"date_time":"[^"]*"`).ReplaceAllLiteralString(body, `"date_time":"`+at.UTC().Format(time.RFC3339)+`"`)
}

// webexParticipant is the Webex participant delivery in file, of alice,
// joined (and left, for a "left") at the times given.
func webexParticipant(t *testing.T, file string, joined, left time.Time) string {
	t.Helper()
	body := strings.ReplaceAll(readDelivery(t, file), "Bob@Contoso.com", "Alice@Contoso.com")
	body = regexp.MustCompile(`"joinedTime":"[^"]*"`).ReplaceAllLiteralString(body, `"joinedTime":"`+joined.UTC().Format(time.RFC3339)+`"`)
	return regexp.MustCompile(`"leftTime":"[^"]*"`).ReplaceAllLiteralString(body, `"leftTime":"`+left.UTC().Format(time.RFC3339)+`"`)
}

// zoomHeaders signs body as Zoom does: v0=hex(HMAC-SHA256(secret,
// "v0:" + timestamp + ":" + body)), the timestamp in seconds.
func zoomHeaders(body string) http.Header {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(testZoomSecret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("x-zm-request-timestamp", ts)
	h.Set("x-zm-signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return h
}

// webexHeaders signs body as Webex does: hex(HMAC-SHA1(secret, body)).
func webexHeaders(body string) http.Header {
	mac := hmac.New(sha1.New, []byte(testWebexSecret))
	mac.Write([]byte(body))
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Spark-Signature", hex.EncodeToString(mac.Sum(nil)))
	return h
}

// deliver POSTs a signed delivery to the replica's webhook listener and
// returns the answer's status and Retry-After.
func (r *replica) deliver(t *testing.T, path, body string, h http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.webhookAddr(t)+path, strings.NewReader(body))
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: POST %s: %v", r.id, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// signalCount is calpresence_webhook_signals_total{vendor,event,result}
// on the replica.
func (r *replica) signalCount(t *testing.T, vendor, event, result string) float64 {
	t.Helper()
	mfs, err := r.app.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"vendor": vendor, "event": event, "result": result}
	for _, mf := range mfs {
		if mf.GetName() != "calpresence_webhook_signals_total" {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// waitCount waits until the replica counted n deliveries with these
// labels (a delivery is counted once its engine, or the inbox, took it:
// just after the 2xx).
func (r *replica) waitCount(t *testing.T, vendor, event, result string, n float64) {
	t.Helper()
	if !testutil.WaitUntil(5*time.Second, func() bool { return r.signalCount(t, vendor, event, result) == n }) {
		t.Errorf("%s: calpresence_webhook_signals_total{vendor=%q,event=%q,result=%q} = %v; want %v",
			r.id, vendor, event, result, r.signalCount(t, vendor, event, result), n)
	}
}

// presenceCalls are the calls g received for user with op ("set",
// "clear") and, for a set, activity ("": any).
func presenceCalls(g *fakeGraph, op, user, activity string) int {
	n := 0
	for _, c := range g.Presence.Calls() {
		if c.Op == op && c.User == user && (activity == "" || c.Activity == activity) {
			n++
		}
	}
	return n
}

// TestStandbyWebhookAppliedByLeader: a signed Zoom presence delivery
// reaching the standby (an ingress sends webhooks to any ready replica)
// is answered 200, stored in the shared inbox, and set by the leader
// within seconds; the standby never calls Graph. Its "Available" then
// ends what it started, through the standby again.
func TestStandbyWebhookAppliedByLeader(t *testing.T) {
	dsn := pgtest.DB(t)
	cfg := webhookConfig(t, dsn)
	now := time.Now().Truncate(time.Second)
	later := laterMeeting(now)
	lead, standby := startPair(t, cfg, twoFeeds(later, later), newFakeGraph(), newFakeGraph())

	// Zoom's date_time counts seconds: the call began a second or two
	// before it ends, so that its end is the later status.
	body := zoomPresence(t, "zoom-presence-on-phone-call.json", time.Now().Add(-2*time.Second))
	if code, _ := standby.deliver(t, "/webhooks/zoom", body, zoomHeaders(body)); code != http.StatusOK {
		t.Fatalf("%s (standby): POST user.presence_status_updated On_Phone_Call = %d; want 200", standby.id, code)
	}
	standby.waitCount(t, "zoom", "presence", "queued", 1)
	if !testutil.WaitUntil(15*time.Second, func() bool { return presenceCalls(lead.graph, "set", aliceID, "InACall") == 1 }) {
		t.Fatalf("%s (leader) did not set alice InACall within 15s of the standby's 200: %v", lead.id, lead.graph.Presence.Calls())
	}

	body = zoomPresence(t, "zoom-presence-available.json", time.Now())
	if code, _ := standby.deliver(t, "/webhooks/zoom", body, zoomHeaders(body)); code != http.StatusOK {
		t.Fatalf("%s (standby): POST user.presence_status_updated Available = %d; want 200", standby.id, code)
	}
	standby.waitCount(t, "zoom", "presence", "queued", 2)
	if !testutil.WaitUntil(15*time.Second, func() bool { return presenceCalls(lead.graph, "clear", aliceID, "") == 1 }) {
		t.Fatalf("%s (leader) did not clear alice within 15s of the standby's 200: %v", lead.id, lead.graph.Presence.Calls())
	}
	if n := presenceCalls(lead.graph, "set", aliceID, ""); n != 1 {
		t.Errorf("%s (leader) set alice %d times; want once: %v", lead.id, n, lead.graph.Presence.Calls())
	}
	if calls := standby.graph.Calls(); len(calls) != 0 {
		t.Errorf("%s stands by but called Graph: %v", standby.id, calls)
	}
}

// TestWebexInstanceMapShared: Webex's participant events name the meeting
// instance, not its number; the number comes with the meeting's start.
// The start (and alice's join) reach the leader, her "left" the standby,
// which never saw the start: the instance → meeting map is in the shared
// database, so the "left" still names her calendar meeting, and the
// leader clears her, an hour before its scheduled end. (Were it not
// linked, the "left" would name an instance no calendar event names, and
// change nothing.)
func TestWebexInstanceMapShared(t *testing.T) {
	dsn := pgtest.DB(t)
	cfg := webhookConfig(t, dsn)
	now := time.Now().Truncate(time.Second)
	feeds := twoFeeds(
		webexMeeting("alice-webex", now.Add(-10*time.Minute), now.Add(time.Hour)),
		laterMeeting(now),
	)
	lead, standby := startPair(t, cfg, feeds, newFakeGraph(), newFakeGraph())
	if !testutil.WaitUntil(20*time.Second, func() bool { return presenceCalls(lead.graph, "set", aliceID, "") == 1 }) {
		t.Fatalf("%s (leader) did not set alice for her calendar meeting within 20s: %v", lead.id, lead.graph.Presence.Calls())
	}

	started := readDelivery(t, "webex-meeting-started.json")
	if code, _ := lead.deliver(t, "/webhooks/webex", started, webexHeaders(started)); code != http.StatusOK {
		t.Fatalf("%s (leader): POST meetings/started = %d; want 200", lead.id, code)
	}
	lead.waitCount(t, "webex", "started", "noted", 1)
	joined := webexParticipant(t, "webex-participant-joined.json", now.Add(-5*time.Minute), time.Time{})
	if code, _ := lead.deliver(t, "/webhooks/webex", joined, webexHeaders(joined)); code != http.StatusOK {
		t.Fatalf("%s (leader): POST meetingParticipants/joined = %d; want 200", lead.id, code)
	}
	lead.waitCount(t, "webex", "joined", "applied", 1)

	left := webexParticipant(t, "webex-participant-left.json", now.Add(-5*time.Minute), time.Now())
	if code, _ := standby.deliver(t, "/webhooks/webex", left, webexHeaders(left)); code != http.StatusOK {
		t.Fatalf("%s (standby): POST meetingParticipants/left = %d; want 200", standby.id, code)
	}
	standby.waitCount(t, "webex", "left", "queued", 1)
	if !testutil.WaitUntil(15*time.Second, func() bool { return presenceCalls(lead.graph, "clear", aliceID, "") == 1 }) {
		t.Fatalf("%s (leader) did not clear alice within 15s of her \"left\" at %s: %v", lead.id, standby.id, lead.graph.Presence.Calls())
	}
	if n := presenceCalls(lead.graph, "set", aliceID, ""); n != 1 {
		t.Errorf("%s (leader) set alice %d times; want once (her meeting): %v", lead.id, n, lead.graph.Presence.Calls())
	}
	if calls := standby.graph.Calls(); len(calls) != 0 {
		t.Errorf("%s stands by but called Graph: %v", standby.id, calls)
	}
}

// TestStoppingLeaderQueuesSignal: a delivery reaches the leader as it
// shuts down (SIGTERM, a rolling update): its headers are read before,
// the rest of its body after its engine was told to stop, while the
// engine still finishes a Graph call in flight (bob's set). It is
// answered 200 and put in the shared inbox, not in the stopping engine
// (the leader counts it queued, and never sets alice); the other replica,
// leading next, applies it.
func TestStoppingLeaderQueuesSignal(t *testing.T) {
	dsn := pgtest.DB(t)
	cfg := webhookConfig(t, dsn)
	now := time.Now().Truncate(time.Second)
	feeds := twoFeeds(laterMeeting(now), meeting("bob-now", now.Add(-time.Minute), now.Add(time.Hour)))
	// The connections whose request the listeners began to read.
	active := make(chan string, 64)
	testHookConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateActive {
			select {
			case active <- c.RemoteAddr().String():
			default:
			}
		}
	}
	t.Cleanup(func() { testHookConnState = nil })
	// The first leader's set of bob waits until released: the call in
	// flight a shutdown lets finish.
	inFlight, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func(id string) {
		if id == bobID {
			once.Do(func() { close(inFlight) })
			<-release
		}
	}
	g1, g2 := newFakeGraph(), newFakeGraph()
	g1.hold, g2.hold = hold, hold
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	old, next := startPair(t, cfg, feeds, g1, g2)
	select {
	case <-inFlight:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s (leader) did not set bob within 20s", old.id)
	}

	body := zoomPresence(t, "zoom-presence-on-phone-call.json", time.Now())
	c, err := net.Dial("tcp", old.webhookAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var head strings.Builder
	fmt.Fprintf(&head, "POST /webhooks/zoom HTTP/1.1\r\nHost: calpresence.contoso.com\r\nContent-Length: %d\r\n", len(body))
	for k, v := range zoomHeaders(body) {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v[0])
	}
	half := len(body) / 2
	if _, err := fmt.Fprintf(c, "%s\r\n%s", head.String(), body[:half]); err != nil {
		t.Fatal(err)
	}
	// Its headers are read (the connection is active: the shutdown waits
	// for it) before the shutdown begins.
	deadline := time.After(10 * time.Second)
	for read := false; !read; {
		select {
		case a := <-active:
			read = a == c.LocalAddr().String()
		case <-deadline:
			t.Fatalf("%s: the delivery's headers not read within 10s", old.id)
		}
	}

	old.cancel() // SIGTERM
	old.cancel = nil
	if !testutil.WaitUntil(time.Second, func() bool { eng := old.app.Engine(); return eng == nil || !eng.Accepting() }) {
		t.Fatalf("%s: its engine still takes signals 1s after the shutdown began", old.id)
	}
	if old.app.Engine() == nil {
		t.Fatalf("%s: its engine stopped with bob's set in flight", old.id)
	}
	// The body is read within 2s of the headers (signals.DefaultBodyTimeout).
	if _, err := fmt.Fprint(c, body[half:]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: the delivery sent during the shutdown: no answer: %v", old.id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: the delivery sent during the shutdown = %d; want 200", old.id, resp.StatusCode)
	}
	old.waitCount(t, "zoom", "presence", "queued", 1)
	if old.app.Engine() == nil {
		t.Errorf("%s: its engine stopped before the delivery was taken: the test saw a standby's path, not a stopping leader's", old.id)
	}
	released.Do(func() { close(release) })
	select {
	case err := <-old.done:
		if err != nil {
			t.Errorf("%s: Wait = %v; want nil", old.id, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s has not stopped 30s after the shutdown began", old.id)
	}
	if got := old.signalCount(t, "zoom", "presence", "applied"); got != 0 {
		t.Errorf("%s: deliveries its stopping engine applied = %v; want 0", old.id, got)
	}

	if !testutil.WaitUntil(25*time.Second, func() bool { return presenceCalls(next.graph, "set", aliceID, "InACall") == 1 }) {
		t.Fatalf("%s (leading next) did not set alice InACall within 25s: %v", next.id, next.graph.Presence.Calls())
	}
	if n := presenceCalls(old.graph, "set", aliceID, ""); n != 0 {
		t.Errorf("%s (stopping) set alice: %v", old.id, old.graph.Presence.Calls())
	}
}

// TestFencedLeaderQueuesSignal: another lead begins in the database (the
// leader epoch advances) while this replica's elector still holds the
// lock and its engine takes signals. A delivery then is answered 200 from
// the inbox (stored before the answer, outside the epoch); the fenced
// engine's own write of it is refused, which ends its lead. The lead that
// follows (this replica's again: nobody else runs) takes it from the
// inbox and sets alice, once, in the new term.
func TestFencedLeaderQueuesSignal(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	cfg := webhookConfig(t, dsn)
	now := time.Now().Truncate(time.Second)
	later := laterMeeting(now)
	g := newFakeGraph()
	r := startReplica(t, cfg, "r1", twoFeeds(later, later), g)
	if !testutil.WaitUntil(20*time.Second, func() bool { code, rd := r.readyz(t); return code == 200 && rd.Role == "leader" }) {
		t.Fatal("r1 not a ready leader within 20s")
	}

	other, err := pg.Open(ctx, dsn, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Lead(ctx); err != nil {
		t.Fatal(err)
	}
	fenced := time.Now()
	body := zoomPresence(t, "zoom-presence-on-phone-call.json", time.Now())
	if code, _ := r.deliver(t, "/webhooks/zoom", body, zoomHeaders(body)); code != http.StatusOK {
		t.Fatalf("POST user.presence_status_updated to the fenced leader = %d; want 200", code)
	}
	if !testutil.WaitUntil(15*time.Second, func() bool {
		return len(r.logs.Lines(`"msg":"lead failed; stepping down"`, "leader epoch 1", "fenced")) > 0
	}) {
		t.Fatalf("r1's lead did not end on the refused write of the signal within 15s; calls %v", g.Calls())
	}
	if !testutil.WaitUntil(25*time.Second, func() bool { return presenceCalls(g, "set", aliceID, "InACall") > 0 }) {
		t.Fatalf("alice not set InACall within 25s of the fence; calls %v", g.Presence.Calls())
	}
	l := r.logs.Lines("this replica leads: the engine starts")
	if len(l) != 2 || !strings.Contains(l[1], `"epoch":3`) {
		t.Fatalf("r1's leads: %q; want two, the second in epoch 3", l)
	}
	var rec struct{ Time time.Time }
	if err := json.Unmarshal([]byte(l[1]), &rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Calls() {
		if c.At.After(fenced) && c.At.Before(rec.Time) {
			t.Errorf("%s: sent in the term the database had fenced (epoch advanced at %s, new term at %s)", c, fenced.Format("15:04:05.000"), rec.Time.Format("15:04:05.000"))
		}
	}
	if n := presenceCalls(g, "set", aliceID, ""); n != 1 {
		t.Errorf("alice set %d times; want once, in the new term: %v", n, g.Presence.Calls())
	}
	if got := r.signalCount(t, "zoom", "presence", "applied"); got != 0 {
		t.Errorf("deliveries the fenced engine applied = %v; want 0 (refused, or queued)", got)
	}
}

// TestUnstoredSignal503: when the database refuses the inbox's write, the
// delivery is answered 503 with Retry-After, not 200 (nothing is
// acknowledged that is not stored), and changes nothing; Zoom's retry,
// once the database takes writes again, is answered 200 and applied.
func TestUnstoredSignal503(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	cfg := webhookConfig(t, dsn)
	now := time.Now().Truncate(time.Second)
	later := laterMeeting(now)
	g := newFakeGraph()
	r := startReplica(t, cfg, "r1", twoFeeds(later, later), g)
	if !testutil.WaitUntil(20*time.Second, func() bool { code, rd := r.readyz(t); return code == 200 && rd.Role == "leader" }) {
		t.Fatal("r1 not a ready leader within 20s")
	}
	adm, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close(ctx)
	// Every new row of signals is refused (NOT VALID: the rows there stay).
	if _, err := adm.Exec(ctx, `ALTER TABLE signals ADD CONSTRAINT test_refuse_writes CHECK (false) NOT VALID`); err != nil {
		t.Fatal(err)
	}

	body := zoomPresence(t, "zoom-presence-on-phone-call.json", time.Now())
	if code, retry := r.deliver(t, "/webhooks/zoom", body, zoomHeaders(body)); code != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("POST with the database refusing the write = %d, Retry-After %q; want 503 with Retry-After", code, retry)
	}
	if got := r.signalCount(t, "zoom", "presence", "unstored"); got != 1 {
		t.Errorf("unstored deliveries = %v; want 1", got)
	}

	if _, err := adm.Exec(ctx, `ALTER TABLE signals DROP CONSTRAINT test_refuse_writes`); err != nil {
		t.Fatal(err)
	}
	if code, _ := r.deliver(t, "/webhooks/zoom", body, zoomHeaders(body)); code != http.StatusOK {
		t.Fatalf("Zoom's retry with the database taking writes = %d; want 200", code)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return presenceCalls(g, "set", aliceID, "InACall") == 1 }) {
		t.Fatalf("alice not set InACall within 10s of the retry's 200: %v", g.Presence.Calls())
	}
	// Had the refused delivery reached the engine, the retry would be its
	// duplicate.
	r.waitCount(t, "zoom", "presence", "applied", 1)
	if got := r.signalCount(t, "zoom", "presence", "duplicate"); got != 0 {
		t.Errorf("duplicate deliveries = %v; want 0 (the refused one changed nothing)", got)
	}
	if n := len(g.Calls()); n != 1 {
		t.Errorf("calls = %v; want alice's set only", g.Presence.Calls())
	}
}
