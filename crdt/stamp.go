package crdt

import (
	"cmp"
	"fmt"
)

// MaxTime is the largest Lamport time a stamp may carry. Writes above it
// are rejected so that no replica's clock can be pushed to overflow; the
// bound leaves 2^63 ticks, more than any cluster will ever use.
const MaxTime = 1<<63 - 1

// Stamp orders writes: by Lamport Time, then by Writer id, so that two
// distinct writers never produce equal stamps.
type Stamp struct {
	Time   uint64
	Writer string
}

// Compare returns -1, 0 or +1 as s orders before, equal to or after o.
func (s Stamp) Compare(o Stamp) int {
	if c := cmp.Compare(s.Time, o.Time); c != 0 {
		return c
	}
	return cmp.Compare(s.Writer, o.Writer)
}

// Less reports whether s orders before o.
func (s Stamp) Less(o Stamp) bool { return s.Compare(o) < 0 }

// IsZero reports whether s is the zero stamp, which no valid write has.
func (s Stamp) IsZero() bool { return s.Time == 0 && s.Writer == "" }

func (s Stamp) String() string { return fmt.Sprintf("%d@%s", s.Time, s.Writer) }

// validate says what is wrong with a stamp received from elsewhere.
func (s Stamp) validate() error {
	switch {
	case s.Time == 0:
		return fmt.Errorf("stamp %v: time must be at least 1", s)
	case s.Time > MaxTime:
		return fmt.Errorf("stamp %v: time above MaxTime (%d)", s, uint64(MaxTime))
	case s.Writer == "":
		return fmt.Errorf("stamp %v: empty writer", s)
	}
	return nil
}

// Clock is a Lamport clock. The zero value is ready to use.
type Clock struct{ time uint64 }

// Tick advances the clock for a local write and returns the new time.
// It saturates at MaxTime rather than wrap around.
func (c *Clock) Tick() uint64 {
	if c.time < MaxTime {
		c.time++
	}
	return c.time
}

// Observe moves the clock up to a time seen in a received message, so the
// next local write orders after it. Times above MaxTime are clamped.
func (c *Clock) Observe(t uint64) {
	c.time = max(c.time, min(t, MaxTime))
}

// Time returns the current time without advancing it.
func (c Clock) Time() uint64 { return c.time }
