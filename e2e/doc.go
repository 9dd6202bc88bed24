// Package e2e holds end-to-end tests and benchmarks of calpresence's core:
// the real engine.Engine driving the real graph.Client (msgraph-sdk-go,
// azidentity) over TLS on loopback against graph/graphtest, the fake Entra
// and Graph server, with feeds served from memory.
//
// The tests inject Graph faults (throttling, outages, resets, timeouts,
// revoked tokens, refused calls, unknown users) and check the fake's
// sessions at the end as the source of truth. The benchmarks measure the
// boundary lag (event start → setPresence received) and the pacing of a
// burst of starts under Graph's rate limit; see BENCHMARKS.md.
//
// Everything runs in real time: meetings start a couple of seconds after a
// test begins and last seconds (Graph's lease minimum is 5 minutes, so a
// short meeting always ends with an explicit clearPresence).
package e2e
