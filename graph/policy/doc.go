// Package policy is the one owner of what calpresence does with a Graph
// call's outcome and how fast it calls: Classify (ok / retry after / hold
// until the span ends / gone), the one back-off (Backoff), Retry-After
// (RetryAfter), the presence rate (Rate, computed once from the
// configuration by WriteRate), the Pacer that keeps every attempt within
// it and the Gate that bounds the calls in flight.
//
// It lives under graph because that is where the policy belongs, but
// imports no msgraph-sdk-go, kiota or azidentity: graph's middleware, the
// engine's executor, the directory (sync/identity) and the daemon's
// authenticate loop all use it, and sync/... must build without the SDK
// (docs/architecture.md, "Decisions").
package policy
