//go:build !unix

package ical

import (
	"testing"
	"time"
)

// startCPU and reportCPU report nothing where getrusage is missing.
func startCPU() time.Duration { return 0 }

func reportCPU(*testing.B, time.Duration) {}
