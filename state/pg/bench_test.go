package pg_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/pg"
)

// feedBody returns a feed of about size bytes: meetings of ~1.75 KB as
// Zoom and Outlook write them, with random UIDs and join links so that it
// compresses as a real one does, not as a repeated string.
func feedBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Zoom Video Communications//EN\r\n")
	for i := 0; b.Len() < size; i++ {
		var r [24]byte
		_, _ = rand.Read(r[:])
		id := hex.EncodeToString(r[:])
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:%s@zoom.us\r\nDTSTAMP:20270301T100000Z\r\n"+
			"DTSTART;TZID=Europe/Berlin:20270304T%02d0000\r\nDTEND;TZID=Europe/Berlin:20270304T%02d3000\r\n"+
			"SUMMARY:Weekly sync %d\r\nORGANIZER;CN=Alice Example:mailto:alice@contoso.com\r\n"+
			"ATTENDEE;CN=Bob Example;PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT:mailto:bob@contoso.com\r\n"+
			"ATTENDEE;CN=Carol Example;PARTSTAT=TENTATIVE;ROLE=OPT-PARTICIPANT:mailto:carol@partner.example\r\n"+
			"LOCATION:https://contoso.zoom.us/j/%s?pwd=%s\r\n"+
			"DESCRIPTION:Alice Example is inviting you to a scheduled Zoom meeting.\\n\\nJoin Zoom Meeting\\n"+
			"https://contoso.zoom.us/j/%s?pwd=%s\\n\\nMeeting ID: %s\\nPasscode: %s\\n\\nOne tap mobile\\n"+
			"+4969505012345\\,\\,%s#\\,\\,\\,\\,*%s# Germany\\n+4930567890123\\,\\,%s# Germany\\n\\nDial by your location\\n"+
			"        +49 69 5050 0123 Germany\\n        +49 30 5679 0123 Germany\\n        +1 646 558 8656 US (New York)\\n"+
			"Find your local number: https://contoso.zoom.us/u/%s\\n\r\n"+
			"RRULE:FREQ=WEEKLY;BYDAY=TH\r\nSEQUENCE:%d\r\nEND:VEVENT\r\n",
			id, 8+i%10, 8+i%10, i, id[:11], id[11:43], id[:11], id[11:43], id[:11], id[43:], id[:11], id[43:], id[:11], id[:20], i)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.Bytes()
}

func openBench(b *testing.B) *pg.Store {
	s, err := pg.Open(context.Background(), pgtest.DB(b), pg.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkPutFeeds10000 stores 10,000 feeds of ~20 KB in one PutFeeds
// (the first pass of a large deployment, written at once).
func BenchmarkPutFeeds10000(b *testing.B) {
	s := openBench(b)
	const n = 10000
	feeds := make([]state.Feed, n)
	var total int64
	for i := range feeds {
		feeds[i] = state.Feed{Source: fmt.Sprintf("feed-%05d", i), Body: feedBody(20 << 10), FetchedAt: time.Now()}
		total += int64(len(feeds[i].Body))
	}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		if err := s.PutFeeds(b.Context(), feeds); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessions10000 reads 10,000 sessions (what a new leader does
// first).
func BenchmarkSessions10000(b *testing.B) {
	s := openBench(b)
	const n = 10000
	t0 := time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	batch := make([]state.Session, n)
	for i := range batch {
		batch[i] = state.Session{
			UserID: fmt.Sprintf("0f1e2d3c-0000-4000-8000-%012d", i), UPN: fmt.Sprintf("user%d@contoso.com", i),
			Availability: "Busy", Activity: "InAConferenceCall",
			SpanStart: t0, SpanEnd: t0.Add(time.Hour), Expires: t0.Add(time.Hour), SetAt: t0,
			Events: []state.EventRef{{Source: "zoom", UID: fmt.Sprintf("event-%d@zoom.us", i), Start: t0, End: t0.Add(time.Hour)}},
		}
	}
	if err := s.PutSessions(b.Context(), batch); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		got, err := s.Sessions(b.Context())
		if err != nil || len(got) != n {
			b.Fatalf("Sessions() = %d, %v", len(got), err)
		}
	}
}

// BenchmarkPutSession is one intent recorded before a Graph call: a
// committed, flushed write.
func BenchmarkPutSession(b *testing.B) {
	s := openBench(b)
	sess := state.Session{UserID: "0f1e2d3c-0000-4000-8000-000000000001", Pending: state.PendingSet, Availability: "Busy", Activity: "InACall"}
	for b.Loop() {
		if err := s.PutSession(b.Context(), sess); err != nil {
			b.Fatal(err)
		}
	}
}
