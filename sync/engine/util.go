package engine

import (
	"cmp"
	"slices"
	"sync"

	"github.com/calpresence/calpresence/config"
)

// fetchConcurrency is how many feeds are read at once:
// schedule.fetch_concurrency, or its default for a configuration built
// without Load.
func fetchConcurrency(cfg *config.Config) int {
	if n := cfg.Schedule.FetchConcurrency; n > 0 {
		return n
	}
	return config.Default().Schedule.FetchConcurrency
}

// parallel calls fn(0) … fn(n-1), at most limit at a time, and returns
// when all have returned.
func parallel(n, limit int, fn func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
