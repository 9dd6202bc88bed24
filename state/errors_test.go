package state

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestBadRecordsErrorListsAFew(t *testing.T) {
	e := &BadRecordsError{}
	for i := range 8 {
		e.Records = append(e.Records, BadRecord{Bucket: "sessions", Key: fmt.Sprintf("u%d", i), Err: errors.New("bad")})
	}
	msg := e.Error()
	if !strings.HasPrefix(msg, "state: 8 corrupt records: ") || !strings.Contains(msg, `"u4"`) || strings.Contains(msg, `"u5"`) || !strings.HasSuffix(msg, "; and 3 more") {
		t.Errorf("Error() = %q; want the count, the first five and how many more", msg)
	}
}
