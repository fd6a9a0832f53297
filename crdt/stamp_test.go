package crdt_test

import (
	"testing"

	"github.com/gossipmesh/mesh/crdt"
)

func TestStampOrder(t *testing.T) {
	// Each stamp orders strictly before the next: time first, then writer.
	ordered := []crdt.Stamp{st(1, "a"), st(1, "b"), st(2, ""), st(2, "a"), st(10, "a"), st(crdt.MaxTime, "z")}
	for i, s := range ordered {
		for j, o := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := s.Compare(o); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", s, o, got, want)
			}
			if got := s.Less(o); got != (i < j) {
				t.Errorf("%v.Less(%v) = %v, want %v", s, o, got, i < j)
			}
		}
	}
}

func TestStampIsZeroAndString(t *testing.T) {
	for _, tc := range []struct {
		s    crdt.Stamp
		zero bool
		str  string
	}{
		{crdt.Stamp{}, true, "0@"},
		{st(0, "a"), false, "0@a"},
		{st(1, ""), false, "1@"},
		{st(42, "10.0.0.1:7946"), false, "42@10.0.0.1:7946"},
	} {
		if got := tc.s.IsZero(); got != tc.zero {
			t.Errorf("%#v.IsZero() = %v, want %v", tc.s, got, tc.zero)
		}
		if got := tc.s.String(); got != tc.str {
			t.Errorf("%#v.String() = %q, want %q", tc.s, got, tc.str)
		}
	}
}

func TestClock(t *testing.T) {
	var c crdt.Clock
	if c.Time() != 0 {
		t.Fatalf("zero Clock at %d", c.Time())
	}
	if got := c.Tick(); got != 1 {
		t.Fatalf("first Tick = %d, want 1", got)
	}
	if got := c.Tick(); got != 2 || c.Time() != 2 {
		t.Fatalf("second Tick = %d (Time %d), want 2", got, c.Time())
	}
	c.Observe(10)
	if c.Time() != 10 {
		t.Fatalf("Observe(10): Time = %d", c.Time())
	}
	c.Observe(4)
	if c.Time() != 10 {
		t.Fatalf("Observe(4) lowered the clock to %d", c.Time())
	}
	if got := c.Tick(); got != 11 {
		t.Fatalf("Tick after Observe(10) = %d, want 11", got)
	}
	c.Observe(crdt.MaxTime - 1)
	if got := c.Tick(); got != crdt.MaxTime {
		t.Fatalf("Tick to MaxTime = %d", got)
	}
	if got := c.Tick(); got != crdt.MaxTime {
		t.Fatalf("Tick past MaxTime = %d, want it to saturate", got)
	}
	var d crdt.Clock
	d.Observe(crdt.MaxTime)
	if d.Time() != crdt.MaxTime {
		t.Fatalf("Observe(MaxTime) = %d", d.Time())
	}
	d.Observe(crdt.MaxTime + 1)
	if d.Time() != crdt.MaxTime {
		t.Fatalf("Observe(MaxTime+1) = %d", d.Time())
	}
}
