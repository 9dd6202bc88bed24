//go:build unix

package ical

import (
	"syscall"
	"testing"
	"time"
)

// startCPU is the CPU time the process has used so far, for reportCPU.
func startCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per op since start (cpu-ns/op:
// the benchmark's and the garbage collector's work for it, on any core).
// On a machine shared with other jobs it moves less than ns/op, which
// counts the time spent waiting for a core too.
func reportCPU(b *testing.B, start time.Duration) {
	if start > 0 {
		b.ReportMetric(float64(startCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}
