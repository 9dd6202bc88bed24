package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadWebhooks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "zoom-secret"), []byte("zoom-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "graph: {dry_run: true}\nsources:\n  - {name: a, url: \"file:a.ics\", users: [x@example.com]}\n" +
		"webhooks:\n  zoom: {secret_token_file: zoom-secret}\n  webex: {secret: \"${WEBEX}\"}\n"
	c, err := parse([]byte(yaml), filepath.Join(dir, "c.yaml"), env(map[string]string{"WEBEX": "webex-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	want := &Webhooks{
		Listen:         ":8081",
		Zoom:           &ZoomWebhook{SecretToken: "zoom-token"},
		Webex:          &WebexWebhook{Secret: "webex-secret", API: DefaultWebhooks().Webex.API},
		MaxUnscheduled: 8 * time.Hour,
	}
	if diff := cmp.Diff(want, c.Webhooks); diff != "" {
		t.Errorf("Load: webhooks (-want +got):\n%s", diff)
	}

	// The people look-up's token file, relative to the configuration.
	if err := os.WriteFile(filepath.Join(dir, "webex-token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = parse([]byte("graph: {dry_run: true}\nsources:\n  - {name: a, url: \"file:a.ics\", users: [x@example.com]}\n"+
		"webhooks:\n  webex: {secret: s, access_token_file: webex-token, api: \"http://127.0.0.1:9/v1\"}\n"), filepath.Join(dir, "c.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *c.Webhooks.Webex, (WebexWebhook{Secret: "s", AccessTokenFile: filepath.Join(dir, "webex-token"), API: "http://127.0.0.1:9/v1"}); got != want {
		t.Errorf("Load: webhooks.webex = %+v; want %+v", got, want)
	}

	c, err = parse([]byte("graph: {dry_run: true}\nsources:\n  - {name: a, url: \"file:a.ics\", users: [x@example.com]}\n"), filepath.Join(dir, "c.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Webhooks != nil {
		t.Errorf("Load without webhooks: Webhooks = %+v; want nil (off)", c.Webhooks)
	}
}
