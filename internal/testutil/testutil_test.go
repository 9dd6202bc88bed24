package testutil

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLogBufferConcurrentWrites(t *testing.T) {
	var b LogBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				fmt.Fprintf(&b, "writer=%d line=%d\n", i, j)
			}
		})
	}
	wg.Wait()
	if got := len(b.Lines()); got != 800 {
		t.Errorf("Lines() has %d lines; want 800", got)
	}
	// A line is written whole: none is torn by another writer.
	for _, l := range b.Lines() {
		var i, j int
		if n, err := fmt.Sscanf(l, "writer=%d line=%d", &i, &j); n != 2 || err != nil {
			t.Fatalf("torn line %q", l)
		}
	}
}

func TestLogBufferLines(t *testing.T) {
	var b LogBuffer
	b.Write([]byte(`{"level":"INFO","msg":"presence set","user":"alice"}` + "\n\n"))
	b.Write([]byte(`{"level":"WARN","msg":"presence set","user":"bob"}` + "\n"))
	b.Write([]byte(`{"level":"INFO","msg":"feed read"}` + "\n"))
	for _, tt := range []struct {
		subs []string
		want int
	}{
		{nil, 3},
		{[]string{"presence set"}, 2},
		{[]string{"presence set", `"user":"bob"`}, 1},
		{[]string{"presence set", "feed read"}, 0},
	} {
		if got := b.Lines(tt.subs...); len(got) != tt.want {
			t.Errorf("Lines(%q) = %q; want %d lines", tt.subs, got, tt.want)
		}
	}
	if got, want := b.Lines(`"user":"alice"`), []string{`{"level":"INFO","msg":"presence set","user":"alice"}`}; !slices.Equal(got, want) {
		t.Errorf("Lines(alice) = %q; want %q", got, want)
	}
}

func TestWaitUntil(t *testing.T) {
	t.Run("holds-later", func(t *testing.T) {
		var n atomic.Int32
		go func() {
			time.Sleep(50 * time.Millisecond)
			n.Store(1)
		}()
		start := time.Now()
		if !WaitUntil(5*time.Second, func() bool { return n.Load() == 1 }) {
			t.Fatal("WaitUntil = false; want true once the goroutine set n")
		}
		if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
			t.Errorf("WaitUntil returned after %v; want soon after 50ms", d)
		}
	})
	t.Run("never", func(t *testing.T) {
		calls := 0
		start := time.Now()
		if WaitUntil(60*time.Millisecond, func() bool { calls++; return false }) {
			t.Fatal("WaitUntil(never) = true; want false")
		}
		if d := time.Since(start); d < 60*time.Millisecond {
			t.Errorf("WaitUntil(never) gave up after %v; want at least 60ms", d)
		}
		if calls < 2 {
			t.Errorf("cond called %d times; want it polled, and once more at the deadline", calls)
		}
	})
	t.Run("already-true", func(t *testing.T) {
		if !WaitUntil(0, func() bool { return true }) {
			t.Error("WaitUntil(0, true) = false; want true: the condition is checked before the deadline")
		}
	})
}
