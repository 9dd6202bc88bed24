package app

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
)

type nopSink struct{}

func (nopSink) Signal(context.Context, state.Signal) (string, error) { return "applied", nil }

// TestWebhookListenerBounds: the listener exposed to the internet bounds
// every phase of a connection, and a stalled 1 MB upload is answered 413
// without its body being read.
func TestWebhookListenerBounds(t *testing.T) {
	srv := webhookServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 {
		t.Errorf("webhook server bounds: header %s, read %s, write %s, idle %s, max header %d bytes; want all set, headers ≤ 64 KiB",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}

	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	h := signals.New(signals.Options{ZoomSecret: "s", Sink: nopSink{}})
	go func() {
		done <- server.ServeWith(ctx, "127.0.0.1:0", webhookServer(h), time.Second, func(a net.Addr) { addrc <- a })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeWith = %v; want nil after ctx is done", err)
		}
	}()
	c, err := net.Dial("tcp", (<-addrc).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%0900d", signals.PathZoom, 1<<20, 0)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a stalled 1 MB upload: no answer within 2s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a stalled 1 MB upload = %d; want 413", resp.StatusCode)
	}
}
