package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMain lets the test binary be the flood's child process too, as the
// tool's own binary is: measure starts os.Executable() with -client.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-client" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestFlood runs the tool as users do, on a small flood: every upload is
// refused at once, and the signed meeting.ended sent during it clears
// alice.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon and a child process")
	}
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-conns", "50", "-size", "200000", "-stall", "150000", "-after", "100ms", "-hold", "5s", "-latency", "10ms", "-timeout", "1m"}, &out, &errs)
	if err != nil {
		t.Fatalf("calpresence-flood: %v\n%s%s", err, out.String(), errs.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`flood: 50 connections over \S+: 413=50\n`),
		regexp.MustCompile(`answered 200 OK in \S+; clearPresence reached Graph \d\S* after it was sent`),
		regexp.MustCompile(`; 1 log lines about refusals`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "never") {
		t.Errorf("alice was not cleared:\n%s", out.String())
	}
}
