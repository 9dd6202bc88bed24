package leader_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/calpresence/calpresence/leader"
	"github.com/go-co-op/gocron/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Replicas sharing one database: gocron runs the jobs on the leader only,
// each job asks Leading right before it acts, and Run keeps the election
// going until SIGINT, then hands the lead over at once.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	e, err := leader.New(os.Getenv("DATABASE_URL"), leader.Options{Registerer: prometheus.DefaultRegisterer})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	s, err := gocron.NewScheduler(gocron.WithDistributedElector(e))
	if err != nil {
		log.Fatal(err)
	}
	_, err = s.NewJob(gocron.DurationJob(time.Minute), gocron.NewTask(func() {
		// gocron asked IsLeader when the job was due; the lead may have
		// been lost since. Ask again right before every outside call.
		if !e.Leading() {
			return
		}
		// ... set presence ...
	}))
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()

	// A nil lead holds the lead while it lasts; a worker that should only
	// run while leading passes itself instead, and is cancelled the moment
	// the lead is lost.
	if err := e.Run(ctx, nil); err != nil {
		log.Fatal(err)
	}
}
