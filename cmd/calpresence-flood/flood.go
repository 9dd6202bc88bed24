package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/signals"
)

// flood is the child: it opens o.conns connections to o.client at once,
// each POSTing a body that declares o.size bytes and stalls after
// o.stall, holds each until the daemon answers or closes it (or o.hold
// passes), and prints how each ended on out.
func flood(ctx context.Context, o options, out *bufio.Writer) error {
	if host, _, err := net.SplitHostPort(o.client); err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("-client: want a loopback address (got %q)", o.client)
	}
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = 'a'
	}
	var (
		mu      sync.Mutex
		endings = map[string]int{}
		wg      sync.WaitGroup
	)
	t0 := time.Now()
	for range o.conns {
		wg.Go(func() {
			e := upload(ctx, o, chunk)
			mu.Lock()
			endings[e]++
			mu.Unlock()
		})
	}
	wg.Wait()
	keys := make([]string, 0, len(endings))
	for k := range endings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintf(out, "flood: %d connections over %s:", o.conns, time.Since(t0).Round(time.Millisecond))
	for _, k := range keys {
		fmt.Fprintf(out, " %s=%d", k, endings[k])
	}
	fmt.Fprintln(out)
	return out.Flush()
}

// upload makes one slow upload and says how it ended: the status the
// daemon answered, "closed" (cut without an answer), "held" (still open
// after o.hold) or "dial" (no connection).
func upload(ctx context.Context, o options, chunk []byte) string {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", o.client)
	if err != nil {
		return "dial"
	}
	defer c.Close()
	deadline := time.Now().Add(o.hold)
	c.SetDeadline(deadline)
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", signals.PathZoom, o.client, o.size)
	if o.forged {
		fmt.Fprintf(&b, "x-zm-request-timestamp: %d\r\nx-zm-signature: v0=%s\r\n", time.Now().Unix(), strings.Repeat("0", 64))
	}
	b.WriteString("\r\n")
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "closed"
	}
	// The body up to o.stall, in chunks; a daemon that answers at once
	// closes the connection and the writes fail, which is fine.
	for sent := 0; sent < o.stall; {
		n := min(len(chunk), o.stall-sent)
		if _, err := c.Write(chunk[:n]); err != nil {
			break
		}
		sent += n
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if time.Now().After(deadline) {
			return "held"
		}
		return "closed"
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}
