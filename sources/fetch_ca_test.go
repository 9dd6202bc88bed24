package sources

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchTrustCAFile: an https feed whose server has its own CA (as
// behind a TLS-inspecting proxy) fails without schedule.ca_file and is read
// with it; a CA file without certificates is refused.
func TestFetchTrustCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/calendar")
		w.Write([]byte(feedBody))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	req := FetchRequest{URL: secretURL(srv.URL, "/feed.ics")}

	_, err := NewFetcher(0, 0).Fetch(context.Background(), req)
	if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Errorf("Fetch without the CA: err = %v; want x509.UnknownAuthorityError", err)
	}
	assertNoSecret(t, err)

	f := NewFetcher(0, 0)
	if err := f.TrustCAFile(caFile); err != nil {
		t.Fatalf("TrustCAFile(%s) = %v; want nil", caFile, err)
	}
	res, err := f.Fetch(context.Background(), req)
	if err != nil || string(res.Body) != feedBody {
		t.Errorf("Fetch with the CA = %q, %v; want the feed", res.Body, err)
	}

	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{empty, filepath.Join(dir, "missing.pem")} {
		if err := NewFetcher(0, 0).TrustCAFile(file); err == nil || !strings.Contains(err.Error(), filepath.Base(file)) {
			t.Errorf("TrustCAFile(%s) = %v; want an error naming the file", file, err)
		}
	}
	if err := (&Fetcher{}).TrustCAFile(caFile); err == nil {
		t.Errorf("TrustCAFile on a zero Fetcher = nil; want an error (no transport to configure)")
	}
}
