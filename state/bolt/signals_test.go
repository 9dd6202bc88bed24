package bolt

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
)

func TestSignalsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2027, 3, 4, 15, 40, 0, 0, time.UTC)
	sig := state.Signal{Vendor: "zoom", Event: state.SignalEnded, Meeting: "zoom:83412345678", At: at, Received: at.Add(time.Second), Expires: at.Add(time.Hour)}
	sig.ID = state.SignalID(sig.Vendor, sig.Event, sig.Meeting, "", sig.At)
	if err := s.PutSignal(t.Context(), sig); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Signals(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]state.Signal{sig.ID: sig}, got); diff != "" {
		t.Errorf("Signals() after reopen (-want +got):\n%s", diff)
	}
	if err := s.DeleteSignal(t.Context(), sig.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Signals(t.Context()); len(got) != 0 {
		t.Errorf("Signals() after DeleteSignal = %v; want none", got)
	}
}

func TestSignalsBadRecordSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good := state.Signal{ID: "good", Vendor: "webex", Event: state.SignalLeft, Meeting: "webex:25501234567", Email: "a@b.example"}
	if err := s.PutSignal(t.Context(), good); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketSignals).Put([]byte("bad"), []byte("{")) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.Signals(t.Context())
	var bad *state.BadRecordsError
	if !errors.As(err, &bad) || len(bad.Records) != 1 || bad.Records[0].Key != "bad" {
		t.Errorf("Signals() error = %v; want one bad record \"bad\"", err)
	}
	if _, ok := got["good"]; !ok || len(got) != 1 {
		t.Errorf("Signals() = %v; want the good one only", got)
	}
}
