package engine

import (
	"container/heap"
	"context"
	"hash/fnv"
	"sync"
	"time"
)

// The steady-state polls. One goroutine keeps a queue of (next due,
// source) ordered by time and hands due sources to a fixed pool of
// workers: no goroutine or timer per source, and at most
// schedule.fetch_concurrency fetches in flight however many sources fall
// Due together. Each source polls at its interval on a phase of its own, so
// that 10,000 sources with one interval are read a few at a time across
// the interval instead of all at the same instant.

// pollTick is the grain of the phases: the sources due in the same tick
// are handed out together, so that the workers run through them back to
// back instead of each being woken on its own.
const pollTick = time.Second

// pollItem is one source in the queue.
type pollItem struct {
	name     string
	feed     *feed // the feed it polls: a reload that replaces it drops the item
	interval time.Duration
	offset   time.Duration // phase within the interval, from the poller's epoch
	due      time.Time
	busy     bool // a poll of this source is in flight; guarded by the poller's mu
}

// next returns the first due time of it strictly after t: epoch + offset
// + k·interval.
func (it *pollItem) next(epoch, t time.Time) time.Time {
	base := epoch.Add(it.offset)
	if t.Before(base) {
		return base
	}
	k := t.Sub(base)/it.interval + 1
	return base.Add(k * it.interval)
}

// pollQueue is a min-heap of items by due time.
type pollQueue []*pollItem

func (q pollQueue) Len() int           { return len(q) }
func (q pollQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q pollQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *pollQueue) Push(x any)        { *q = append(*q, x.(*pollItem)) }
func (q *pollQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// pollSchedule spreads the sources over their intervals: the i-th of n
// sources (sorted by name) gets the phase interval·i/n, stable for a given
// configuration. The first poll of each comes one phase after epoch, so
// with one source it polls at epoch + k·interval.
func (fs *feedSet) pollSchedule(epoch time.Time) pollQueue {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.added = nil // all in the schedule below
	names := sortedKeys(fs.feeds)
	q := make(pollQueue, 0, len(names))
	for i, name := range names {
		f := fs.feeds[name]
		off := time.Duration(int64(f.interval) / int64(len(names)) * int64(i))
		if f.interval > pollTick {
			off = off.Truncate(pollTick)
		}
		it := &pollItem{name: name, feed: f, interval: f.interval, offset: off}
		it.due = it.next(epoch, epoch)
		q = append(q, it)
	}
	heap.Init(&q)
	return q
}

// takeAdded returns the items of the feeds a reload added or replaced
// since the last call, polled an interval after now (the reload reads
// them at once itself), on a phase of their own within the interval.
func (fs *feedSet) takeAdded(epoch, now time.Time) []*pollItem {
	fs.mu.Lock()
	added := fs.added
	fs.added = nil
	fs.mu.Unlock()
	items := make([]*pollItem, 0, len(added))
	for _, f := range added {
		h := fnv.New32a()
		h.Write([]byte(f.src.Name))
		off := time.Duration(h.Sum32()) % f.interval
		if f.interval > pollTick {
			off = off.Truncate(pollTick)
		}
		it := &pollItem{name: f.src.Name, feed: f, interval: f.interval, offset: off}
		it.due = it.next(epoch, now.Add(f.interval-1))
		items = append(items, it)
	}
	return items
}

// runPolls polls every source at its interval from epoch on, until ctx is
// done, calling changed after a poll that changed a source's occurrences.
// A source whose poll is still in flight when it falls due again is
// skipped that round; a round that falls due while every worker is busy
// waits for one, and the source then keeps its phase.
func (fs *feedSet) runPolls(ctx context.Context, epoch time.Time, changed func()) {
	q := fs.pollSchedule(epoch)
	var mu sync.Mutex // guards the items' busy flags
	work := make(chan *pollItem)
	var wg sync.WaitGroup
	for range fs.concurrency {
		wg.Go(func() {
			for it := range work {
				if ch, _ := fs.poll(ctx, it.name, false, nil); ch {
					changed()
				}
				mu.Lock()
				it.busy = false
				mu.Unlock()
			}
		})
	}
	defer wg.Wait()
	defer close(work)

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	resetTimer := func() {
		timer.Stop()
		if len(q) > 0 {
			timer.Reset(time.Until(q[0].due))
		}
	}
	resetTimer()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fs.addedKick:
			for _, it := range fs.takeAdded(epoch, time.Now()) {
				heap.Push(&q, it)
			}
			resetTimer()
			continue
		case <-timer.C:
		}
		now := time.Now()
		for len(q) > 0 && !q[0].due.After(now) {
			it := q[0]
			fs.mu.Lock()
			gone := !fs.current(it.feed)
			fs.mu.Unlock()
			if gone {
				heap.Pop(&q) // removed or replaced by a reload
				continue
			}
			mu.Lock()
			skip := it.busy
			it.busy = true
			mu.Unlock()
			if !skip {
				select {
				case work <- it:
				case <-ctx.Done():
					return
				}
			}
			// Waiting for a worker may have taken a while: the next
			// round is the first one after now, not a backlog.
			now = time.Now()
			it.due = it.next(epoch, now)
			heap.Fix(&q, 0)
		}
		resetTimer()
	}
}
