package crdt

import "maps"

// VersionVector maps a writer id to the highest Lamport time of that
// writer's writes a replica has accounted for. A missing writer means 0.
type VersionVector map[string]uint64

// Ordering is the result of comparing two version vectors.
type Ordering int

const (
	Equal      Ordering = iota // both have seen the same writes
	Before                     // the receiver has seen a strict subset
	After                      // the receiver has seen a strict superset
	Concurrent                 // each has seen something the other has not
)

func (o Ordering) String() string {
	return [...]string{"equal", "before", "after", "concurrent"}[o]
}

// Observe raises the entry for writer to t; lower times are ignored.
func (v VersionVector) Observe(writer string, t uint64) {
	if t > v[writer] {
		v[writer] = t
	}
}

// Merge raises v to the pointwise maximum of v and o.
func (v VersionVector) Merge(o VersionVector) {
	for w, t := range o {
		v.Observe(w, t)
	}
}

// Clone returns an independent copy.
func (v VersionVector) Clone() VersionVector {
	if v == nil {
		return VersionVector{}
	}
	return maps.Clone(v)
}

// Compare reports how v relates to o.
func (v VersionVector) Compare(o VersionVector) Ordering {
	less, more := false, false
	for w, t := range v {
		if ot := o[w]; t > ot {
			more = true
		} else if t < ot {
			less = true
		}
	}
	for w, ot := range o {
		if _, ok := v[w]; !ok && ot > 0 {
			less = true
		}
	}
	switch {
	case less && more:
		return Concurrent
	case less:
		return Before
	case more:
		return After
	}
	return Equal
}

// Covers reports whether v accounts for the write stamped s.
func (v VersionVector) Covers(s Stamp) bool { return v[s.Writer] >= s.Time }

// Capped returns a copy of v with every time above limit lowered to it:
// what a partner may claim after receiving a delta cut at limit.
func (v VersionVector) Capped(limit uint64) VersionVector {
	c := make(VersionVector, len(v))
	for w, t := range v {
		c[w] = min(t, limit)
	}
	return c
}
