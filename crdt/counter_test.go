package crdt_test

import (
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/gossipmesh/mesh/crdt"
)

func TestCounters(t *testing.T) {
	var c crdt.Counters[string]
	if c.Get("a") != 0 || c.Len() != 0 {
		t.Fatalf("zero Counters not empty")
	}
	if c.Observe("a", 0) {
		t.Fatalf("Observe(a, 0) reported a change")
	}
	if c.Len() != 0 {
		t.Fatalf("Observe(a, 0) stored a key")
	}
	if !c.Observe("a", 2) || c.Get("a") != 2 {
		t.Fatalf("Observe(a, 2): Get = %d", c.Get("a"))
	}
	if c.Observe("a", 2) || c.Observe("a", 1) || c.Get("a") != 2 {
		t.Fatalf("Observe of an equal or lower count changed a to %d", c.Get("a"))
	}
	if got := c.Bump("a"); got != 3 || c.Get("a") != 3 {
		t.Fatalf("Bump(a) = %d, Get = %d; want 3", got, c.Get("a"))
	}
	if got := c.Bump("b"); got != 1 || c.Len() != 2 {
		t.Fatalf("Bump(b) = %d, Len %d; want 1, 2", got, c.Len())
	}

	o := &crdt.Counters[string]{}
	o.Observe("a", 1)
	o.Observe("b", 5)
	o.Observe("c", 2)
	if got := o.Delta(&c); !maps.Equal(got, map[string]uint64{"b": 5, "c": 2}) {
		t.Fatalf("Delta = %v", got)
	}
	if got := c.Delta(o); !maps.Equal(got, map[string]uint64{"a": 3}) {
		t.Fatalf("Delta = %v", got)
	}
	cl := c.Clone()
	rose := c.Merge(o)
	slices.Sort(rose)
	if !slices.Equal(rose, []string{"b", "c"}) {
		t.Fatalf("Merge rose %v, want [b c]", rose)
	}
	if c.Get("a") != 3 || c.Get("b") != 5 || c.Get("c") != 2 || c.Len() != 3 {
		t.Fatalf("after Merge: a=%d b=%d c=%d", c.Get("a"), c.Get("b"), c.Get("c"))
	}
	if cl.Equal(&c) || cl.Get("b") != 1 {
		t.Fatalf("Clone shares storage with the original")
	}
	if up := c.Merge(o); up != nil {
		t.Fatalf("second Merge rose %v", up)
	}
	c.Forget("b")
	if c.Get("b") != 0 || c.Len() != 2 {
		t.Fatalf("Forget(b): Get %d Len %d", c.Get("b"), c.Len())
	}
	if c.Equal(o) || !c.Clone().Equal(&c) {
		t.Fatalf("Equal wrong")
	}
	var z crdt.Counters[string]
	if !z.Clone().Equal(&z) || len(z.Delta(&c)) != 0 || z.Merge(&crdt.Counters[string]{}) != nil {
		t.Fatalf("zero Counters misbehave")
	}
}

// TestCountersDeltaOmitsKnown: a delta carries only counts above the
// partner's, not equal ones.
func TestCountersDeltaOmitsKnown(t *testing.T) {
	var p, q crdt.Counters[string]
	p.Observe("k", 4)
	q.Observe("k", 4)
	p.Observe("j", 5)
	q.Observe("j", 6)
	if d := p.Delta(&q); len(d) != 0 {
		t.Errorf("Delta = %v, want nothing: the partner has every count", d)
	}
	if d := q.Delta(&p); !maps.Equal(d, map[string]uint64{"j": 6}) {
		t.Errorf("Delta = %v, want map[j:6]", d)
	}
}

// TestCountersSaturate: Bump stops at MaxTime; a count above it (from a
// partner) is kept as is and Bump leaves it alone rather than wrap.
func TestCountersSaturate(t *testing.T) {
	var c crdt.Counters[string]
	c.Observe("a", crdt.MaxTime-1)
	if got := c.Bump("a"); got != crdt.MaxTime {
		t.Fatalf("Bump to MaxTime = %d", got)
	}
	if got := c.Bump("a"); got != crdt.MaxTime || c.Get("a") != crdt.MaxTime {
		t.Fatalf("Bump past MaxTime = %d", got)
	}
	c.Observe("b", math.MaxUint64)
	if got := c.Bump("b"); got != math.MaxUint64 || c.Get("b") != math.MaxUint64 {
		t.Fatalf("Bump at MaxUint64 = %d, Get %d", got, c.Get("b"))
	}
}
