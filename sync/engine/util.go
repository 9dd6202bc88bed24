package engine

import (
	"cmp"
	"slices"
	"sync"
)

// fetchParallelism bounds the feeds read at once: enough to hide network
// latency, few enough to keep the bodies in flight to a few megabytes.
const fetchParallelism = 16

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
