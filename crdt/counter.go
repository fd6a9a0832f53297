package crdt

import (
	"cmp"
	"maps"
)

// Counters is a grow-only map of max-counters: merging keeps, per key, the
// larger count. mesh uses it for heartbeat counters. The zero value is
// empty and ready to use; it is not safe for concurrent use.
type Counters[K cmp.Ordered] struct {
	m map[K]uint64
}

// Get returns the count of k (0 if unknown).
func (c *Counters[K]) Get(k K) uint64 { return c.m[k] }

// Len returns the number of keys.
func (c *Counters[K]) Len() int { return len(c.m) }

// Observe raises k to n and reports whether that changed it.
func (c *Counters[K]) Observe(k K, n uint64) bool {
	if n <= c.m[k] {
		return false
	}
	if c.m == nil {
		c.m = make(map[K]uint64)
	}
	c.m[k] = n
	return true
}

// Bump increments k (saturating) and returns the new count.
func (c *Counters[K]) Bump(k K) uint64 {
	n := c.m[k]
	if n < MaxTime {
		n++
	}
	c.Observe(k, n)
	return n
}

// Merge raises every key of c to o's count and returns the keys that rose.
func (c *Counters[K]) Merge(o *Counters[K]) []K {
	var up []K
	for k, n := range o.m {
		if c.Observe(k, n) {
			up = append(up, k)
		}
	}
	return up
}

// Delta returns the counts in c greater than in known: what a partner
// whose counters are known lacks.
func (c *Counters[K]) Delta(known *Counters[K]) map[K]uint64 {
	d := map[K]uint64{}
	for k, n := range c.m {
		if n > known.Get(k) {
			d[k] = n
		}
	}
	return d
}

// Forget drops k, as when its member is removed for good. Forgetting is a
// local decision outside the merge laws: a partner may send k back.
func (c *Counters[K]) Forget(k K) { delete(c.m, k) }

// Equal reports whether c and o hold the same counts.
func (c *Counters[K]) Equal(o *Counters[K]) bool { return maps.Equal(c.m, o.m) }

// Clone returns an independent copy.
func (c *Counters[K]) Clone() *Counters[K] { return &Counters[K]{m: maps.Clone(c.m)} }
