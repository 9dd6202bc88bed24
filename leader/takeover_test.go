package leader

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/go-co-op/gocron/v2"
)

// helperEnv, when set to a DSN, makes the test binary run one Elector
// called "child" instead of the tests, until it is killed.
const helperEnv = "CALPRESENCE_LEADER_HELPER_DSN"

func TestMain(m *testing.M) {
	if dsn := os.Getenv(helperEnv); dsn != "" {
		o := fast
		o.ID = "child"
		e, err := New(dsn, o)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		e.Run(context.Background(), nil)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestTakeOverFromKilledProcess(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	var stderr testutil.LogBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dsn)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("child's output:\n%s", stderr.String())
		}
	})
	obs, err := New(dsn, Options{ID: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	if !testutil.WaitUntil(20*time.Second, func() bool {
		id, _, err := obs.Leader(context.Background())
		return err == nil && id == "child"
	}) {
		t.Fatal("the child process never held the lock")
	}
	b := startReplica(t, dsn, "b", fast, nil)
	waitRefused(t, b, 2, nil) // the child holds the lock
	if b.e.Leading() {
		t.Fatal("b leads while the child holds the lock")
	}
	t0 := time.Now()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no clean-up in the child
		t.Fatal(err)
	}
	<-exited
	// The child's kernel closes its socket; the server ends the session at
	// once, b finds the lock free within Retry and acts after the grace.
	start := waitLeading(t, 10*time.Second, b)
	took := start.Sub(t0)
	t.Logf("b leads %v after the leader process was killed (Retry %v + grace %v)", took, fast.Retry, fast.lease())
	if took > fast.Retry+fast.lease()+3*time.Second {
		t.Errorf("b took %v to lead; want within Retry+grace+3s", took)
	}
}

func TestFenceOnNetworkCut(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	a := startReplica(t, p.dsn(t, dsn), "a", fast, nil)
	waitLeading(t, 10*time.Second, a)
	b := startReplica(t, dsn, "b", fast, nil)
	adm := admin(t, dsn)
	pid := backendPID(t, adm, "a")
	waitRefused(t, b, 1, nil) // b is standing by

	t0 := time.Now()
	p.freeze()
	var s span
	if !testutil.WaitUntil(10*time.Second, func() bool { s, _ = a.lastSpan(); return !s.stop.IsZero() }) {
		t.Fatal("a's lead context not cancelled 10s after the cut")
	}
	stopped := s.stop.Sub(t0)
	t.Logf("a stopped %v after the cut (lease %v)", stopped, fast.lease())
	if stopped > fast.lease()+2*time.Second {
		t.Errorf("a stopped %v after the cut; want within the lease %v (+2s slack)", stopped, fast.lease())
	}
	if got := a.metric("calpresence_leader_fenced_total", "reason", "check_timeout"); got != 1 {
		t.Errorf("a: fenced_total{check_timeout} = %v; want 1", got)
	}

	// The frozen proxy keeps the server's socket open and its kernel ACKs
	// keepalives, so only idle_session_timeout frees the lock: ServerTimeout
	// after a's last query reached the server (at most Check before the cut).
	start := waitLeading(t, fast.ServerTimeout+fast.Retry+fast.lease()+10*time.Second, b, a)
	took := start.Sub(t0)
	t.Logf("b leads %v after the cut (ServerTimeout %v + Retry %v + grace %v)", took, fast.ServerTimeout, fast.Retry, fast.lease())
	if min := fast.ServerTimeout - fast.Check; took < min {
		t.Errorf("b leads %v after the cut; the server should have kept a's lock for %v", took, min)
	}
	if max := fast.ServerTimeout + fast.Retry + fast.lease() + 3*time.Second; took > max {
		t.Errorf("b leads %v after the cut; want within %v", took, max)
	}
	if !s.stop.Before(start) {
		t.Errorf("a stopped at %s, not before b started at %s", s.stop.Format(time.StampMicro), start.Format(time.StampMicro))
	}
	var n int
	if err := adm.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil || n != 0 {
		t.Errorf("a's old backend %d: %d sessions, %v; want ended by the server", pid, n, err)
	}
	noOverlap(t, a, b)
}

func TestGocronRunsJobsOnTheLeaderOnly(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	a := startReplica(t, dsn, "a", fast, nil)
	waitLeading(t, 10*time.Second, a)
	b := startReplica(t, dsn, "b", fast, nil)
	var runsA, runsB atomic.Int32
	for _, x := range []struct {
		r    *replica
		runs *atomic.Int32
	}{{a, &runsA}, {b, &runsB}} {
		s, err := gocron.NewScheduler(gocron.WithDistributedElector(x.r.e))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.NewJob(gocron.DurationJob(50*time.Millisecond), gocron.NewTask(func() { x.runs.Add(1) })); err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown() })
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return runsA.Load() >= 5 }) {
		t.Fatalf("a (leader) ran %d jobs in 10s; want ≥ 5", runsA.Load())
	}
	if nb := runsB.Load(); nb != 0 {
		t.Errorf("b (standby) ran %d jobs while a led; want 0", nb)
	}
	a.stop()
	waitLeading(t, 10*time.Second, b, a)
	na := runsA.Load()
	nb := runsB.Load()
	if !testutil.WaitUntil(10*time.Second, func() bool { return runsB.Load()-nb >= 5 }) {
		t.Fatalf("b ran %d jobs in 10s as leader; want ≥ 5", runsB.Load()-nb)
	}
	if got := runsA.Load(); got != na {
		t.Errorf("a ran %d jobs after it stopped leading; want 0", got-na)
	}
}

// TestHandBackKeepsChecking: Run's context ends (SIGTERM) while lead still
// finishes a call in flight; the lock session is then ended under it. The
// elector keeps checking until lead returns, so Lost ends within a lease
// of the loss (the call is cut) rather than never.
func TestHandBackKeepsChecking(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	lostAt := make(chan time.Time, 1)
	a := startReplica(t, dsn, "a", fast, func(ctx context.Context, call int) error {
		<-ctx.Done() // handed back: the call in flight goes on
		select {
		case <-Lost(ctx).Done():
			lostAt <- time.Now()
		case <-time.After(20 * time.Second):
			lostAt <- time.Time{}
		}
		return nil
	})
	waitLeading(t, 10*time.Second, a)
	adm := admin(t, dsn)
	pid := backendPID(t, adm, "a")
	a.cancel() // the hand-back begins
	// An absence, over the time it is about: a lease of checks that must
	// not end Lost. The checks are made on the real server (no virtual
	// time), and nothing marks them, so this one waits the lease out.
	time.Sleep(fast.lease())
	select {
	case <-lostAt:
		t.Fatal("Lost ended on a mere hand-back")
	default:
	}
	t0 := time.Now()
	if _, err := adm.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	at := <-lostAt
	if at.IsZero() {
		t.Fatal("Lost did not end within 20s of the lock session's end, during the hand-back")
	}
	took := at.Sub(t0)
	t.Logf("Lost ended %v after the lock session was ended (lease %v)", took, fast.lease())
	if took > fast.lease()+2*time.Second {
		t.Errorf("Lost ended %v after the loss; want within the lease %v (+2s slack)", took, fast.lease())
	}
	// Counted just after the fence.
	if !testutil.WaitUntil(time.Second, func() bool { return a.metric("calpresence_leader_fenced_total", "reason", "check_failed") == 1 }) {
		t.Errorf("a: fenced_total{check_failed} = %v; want 1", a.metric("calpresence_leader_fenced_total", "reason", "check_failed"))
	}
}

// TestLostOutsideRun: a context that does not come from Run has a Lost
// that never ends.
func TestLostOutsideRun(t *testing.T) {
	if done := Lost(context.Background()).Done(); done != nil {
		t.Errorf("Lost(context.Background()).Done() = %v; want nil (never ends)", done)
	}
}
