package ical

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	goical "github.com/emersion/go-ical"
)

// goICALAll decodes every calendar in data with go-ical's own decoder, as
// parse did before icsDecoder: a panic is an error.
func goICALAll(data []byte) (cals []*goical.Calendar, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	dec := goical.NewDecoder(bytes.NewReader(data))
	for {
		c, err := dec.Decode()
		if err != nil {
			return cals, err
		}
		cals = append(cals, c)
	}
}

func ourAll(data []byte) (cals []*goical.Calendar, err error) {
	dec := newICSDecoder(data)
	for {
		c, err := dec.Decode()
		if err != nil {
			return cals, err
		}
		cals = append(cals, c)
	}
}

// normalize gives every property a non-nil Params map, as go-ical does.
func normalize(c *goical.Component) {
	for name, ps := range c.Props {
		for i := range ps {
			if ps[i].Params == nil {
				ps[i].Params = goical.Params{}
			}
		}
		c.Props[name] = ps
	}
	for _, child := range c.Children {
		normalize(child)
	}
}

// sameDecode reports how our decoder and go-ical's differ on data ("" when
// they agree): the same calendars, then the same error (any error where
// go-ical panics; io.EOF where it reaches the end).
func sameDecode(data []byte) string {
	want, wantErr := goICALAll(data)
	got, gotErr := ourAll(data)
	for _, c := range got {
		normalize(c.Component)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("calendars differ: got %d, go-ical %d (errors: %v / %v)", len(got), len(want), gotErr, wantErr)
	}
	switch {
	case errors.Is(wantErr, io.EOF) != errors.Is(gotErr, io.EOF):
		return fmt.Sprintf("error: got %v, go-ical %v", gotErr, wantErr)
	case strings.HasPrefix(wantErr.Error(), "panic:"):
		// go-ical panicked; any error of ours will do.
	case gotErr.Error() != wantErr.Error():
		return fmt.Sprintf("error: got %q, go-ical %q", gotErr, wantErr)
	}
	return ""
}

// TestDecoderMatchesGoICAL decodes every calendar file in the repository,
// raw and as the scanner hands it on, with both decoders.
func TestDecoderMatchesGoICAL(t *testing.T) {
	var files []string
	for _, pattern := range []string{"testdata/*/*.ics", "testdata/*/*/*.ics", "testdata/*/*/*/*.ics"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	if len(files) < corpusSize {
		t.Fatalf("found %d calendar files, want at least the corpus's %d", len(files), corpusSize)
	}
	scanned := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if d := sameDecode(data); d != "" {
			t.Errorf("%s (raw): %s", f, d)
		}
		if sc, err := scanFeed(data); err == nil {
			scanned++
			if d := sameDecode(sc.data); d != "" {
				t.Errorf("%s (scanned): %s", f, d)
			}
		}
	}
	t.Logf("%d files, %d scanned", len(files), scanned)
}

func TestDecoderEdges(t *testing.T) {
	for _, in := range []string{
		"", "\n", "BEGIN:VCALENDAR", "BEGIN:VCALENDAR\r\nEND:VCALENDAR", "BEGIN:VCALENDAR\nEND:VCALENDAR\n ",
		"BEGIN:VCALENDAR\nX;A=\"b\":c\n\tcont\n  x\nEND:vcalendar\n",
		"BEGIN:VCALENDAR\nX;A=b,\"c,d\";a=e:v:w\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nX;A=b\"c:v\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nX;A=\"b:v\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nX;A\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nX;=b:v\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nX;A=b\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nX;A=\"b\"c:v\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\n:v\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nnocolon\nEND:VCALENDAR\n",
		"BEGIN:VCALENDAR\nBEGIN:VEVENT\nEND:VTODO\nEND:VCALENDAR\n",
		"BEGIN:VEVENT\nEND:VEVENT\n",
		"X:y\n",
		"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR\r\nX:\r\r\nEND:VCALENDAR\r",
		"BEGIN:VCALENDAR\nsümmary;ä=ö:ü\nEND:VCALENDAR\n",
	} {
		if d := sameDecode([]byte(in)); d != "" {
			t.Errorf("%q: %s", in, d)
		}
	}
}

func FuzzDecoderMatchesGoICAL(f *testing.F) {
	f.Add([]byte("BEGIN:VCALENDAR\nX;A=\"b\":c\n\tcont\nEND:VCALENDAR\n"))
	f.Add([]byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;TZID=Europe/Paris:20240101T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if d := sameDecode(data); d != "" {
			t.Fatal(d)
		}
	})
}
