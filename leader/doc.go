// Package leader decides which of several replicas sharing one PostgreSQL
// database leads: the one whose database session holds a session-level
// advisory lock (pg_try_advisory_lock). Only the leader acts (polls feeds,
// calls Graph); the others stand by and take over when it goes away.
//
// An [Elector] holds the lock on one dedicated connection (not a pool: a
// session-level lock belongs to the session that took it, so the DSN must
// reach PostgreSQL directly or through a pooler in session mode, never
// transaction mode; see Poolers below). It refuses a server in recovery: a
// lock taken on a hot standby excludes nobody using the primary. Sessions are named
// application_name "calpresence/<ID>", which is how [Elector.Leader] tells
// any replica who leads. [Elector.Run] waits for the lock, calls the caller's
// lead function with a context that is cancelled the moment leadership is
// lost, and releases the lock when lead returns or Run's context ends.
// [Elector.Leading] is cheap and meant to be asked before every Graph call;
// [Elector.IsLeader] makes an Elector a gocron.Elector, for
// gocron.WithDistributedElector.
//
// # Timing
//
// With the defaults (Retry 2 s, Check 1 s, CheckTimeout 2 s, ServerTimeout
// 8 s) the leader proves every Check that its session still holds the lock,
// each proof valid for a lease of Check+CheckTimeout = 3 s from when it was
// asked. A standby tries the lock every Retry, and once it has it waits a
// grace of one lease before it starts to act. A new leader therefore acts:
//
//   - ≤ Retry+grace ≈ 5 s after a clean hand-over (Run's context ends: the
//     lock is released at once) or after the leader's process dies (kill -9,
//     OOM: its kernel closes the socket and the server drops the session);
//   - ≤ ServerTimeout+Retry+grace ≈ 13 s after the leader goes silent (host
//     gone, network cut, process frozen): the server ends a session idle for
//     ServerTimeout (idle_session_timeout; the leader's checks keep it busy
//     every second while it lives), with TCP keepalives and tcp_user_timeout
//     of about the same length as a second line. Keepalives alone are not
//     enough: when a middlebox or a frozen proxy still ACKs them, the server
//     would keep the dead leader's lock forever.
//
// That is inside the 15 s the design allows (docs/deploy.md).
//
// # Fencing
//
// A leader must never act after another replica may have started to. The
// leader stops acting (Leading false, IsLeader an error, lead's context
// cancelled) as soon as a check fails, finds the lock gone, or does not
// answer before the lease ends; Leading also compares the lease with the
// clock itself, so even a leader whose checking goroutine is starved stops
// at the lease's end. Two arguments bound the overlap:
//
//  1. Whatever ends the old leader's session (network cut, the backend
//     killed with pg_terminate_backend, a PostgreSQL restart), the lock is
//     free at some instant r, and the old leader's last successful check was
//     asked before r, so it stops acting before r+lease. The new leader gets
//     the lock at some a ≥ r and acts from a+grace ≥ r+lease: after the old
//     one stopped. This holds whatever the server's timeouts are, provided
//     every replica runs with the same Check and CheckTimeout.
//  2. When the old leader merely went silent, the server keeps the lock for
//     ServerTimeout after the last query it received, and New insists that
//     the lease is strictly shorter than that (3 s < 8 s by default): the
//     old leader has stopped long before the lock is free at all.
//
// A fenced replica closes its session and pauses 2×Retry before it tries
// again, so a standby whose session is sound takes over first.
//
// A leader that hands the lead back (Run's context ends: SIGTERM) stops
// starting anything, but may let its calls in flight finish before it
// releases the lock; it keeps checking the lock until then, and [Lost]
// tells it to cut them if the lock is lost meanwhile.
//
// What no lock can fence is a call already in flight when leadership ends
// (a process frozen mid-request and resumed later); asking Leading right
// before each call keeps that window to one call, and a store can refuse
// the writes of a lead that has ended (state/pg's leader epochs).
//
// # Poolers
//
// A pooler in transaction mode (PgBouncer's pool_mode=transaction) hands
// one server session to several clients in turn, and advisory locks are
// the server session's and re-entrant: pg_try_advisory_lock answers true
// to every client that shares the backend holding the lock. Two replicas
// would lead. The Elector refuses to lead through such a pooler, in three
// places: after connecting it reads back idle_session_timeout and the TCP
// settings it asked for, which such a pooler does not pass on; it does not
// try the lock on a backend that holds it already (its own session never
// does when it tries); and it records the backend's pid when it takes the
// lock and requires the same backend, holding the lock, at every check.
// Each refusal names the pooler and says to connect directly or in session
// mode.
//
// # Metrics
//
// calpresence_leader (1 while this replica leads), calpresence_leader_takeovers_total
// (times it became leader) and calpresence_leader_fenced_total{reason} (times it
// lost the lead without giving it up: check_failed, lock_lost, check_timeout,
// lease_expired).
package leader
