package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"time"
)

// kind is what a membership event says about a member.
type kind int

const (
	evJoin   kind = iota + 1 // the member appeared or came back
	evUpdate                 // the member's meta changed
	evFailed                 // the member was declared dead (failure detection)
	evLeft                   // the member left gracefully
)

// tracker folds the membership events of every node of one cluster into
// each node's view, with the time of each change as the node reported it.
// Both systems feed it, so both are timed by the same rule: a change is
// complete at the latest event time among the observers that must see it.
// All methods are safe for concurrent use; event never blocks for long,
// because memberlist calls it with its state lock held.
type tracker struct {
	mu      sync.Mutex
	views   map[string]map[string]string    // observer → live member → meta
	at      map[string]map[string]time.Time // observer → member → time of its last event
	crashed map[string]bool                 // members the harness stopped without goodbye
	left    map[string]bool                 // members the harness made leave
	falseRm []falseRemoval                  // evFailed about members neither crashed nor left
}

// falseRemoval is one observer's removal of a member that was running.
type falseRemoval struct {
	member string
	at     time.Time
}

func newTracker() *tracker {
	return &tracker{
		views:   map[string]map[string]string{},
		at:      map[string]map[string]time.Time{},
		crashed: map[string]bool{},
		left:    map[string]bool{},
	}
}

// observe registers obs before it can report events.
func (t *tracker) observe(obs string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.views[obs] = map[string]string{}
	t.at[obs] = map[string]time.Time{}
}

// event records that obs saw k happen to member at the given time.
func (t *tracker) event(obs, member string, k kind, meta string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.views[obs]
	if v == nil {
		return // an observer the harness never registered
	}
	switch k {
	case evJoin, evUpdate:
		v[member] = meta
	case evFailed, evLeft:
		delete(v, member)
		// A stopped node's timers may still fire; only running observers count.
		running := !t.crashed[obs] && !t.left[obs]
		if k == evFailed && running && !t.crashed[member] && !t.left[member] && member != obs {
			t.falseRm = append(t.falseRm, falseRemoval{member, time.Now()})
			if verbose {
				fmt.Fprintf(os.Stderr, "%s false removal: %s dropped %s\n", time.Now().Format("15:04:05.000"), obs, member)
			}
		}
	}
	t.at[obs][member] = at
}

// markCrashed and markLeft tell the tracker that removals of these members
// are expected, not false.
func (t *tracker) markCrashed(ids ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		t.crashed[id] = true
	}
}

func (t *tracker) markLeft(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.left[id] = true
}

// falseSince returns how many removals of running members the observers
// reported since t0, and of how many distinct members.
func (t *tracker) falseSince(t0 time.Time) (events, members int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]bool{}
	for _, f := range t.falseRm {
		if !f.at.Before(t0) {
			events++
			seen[f.member] = true
		}
	}
	return events, len(seen)
}

// doneFunc reports, under the tracker's lock, whether observer obs has
// seen the change, and when it saw the last part of it.
type doneFunc func(obs string) (bool, time.Time)

// wait polls until done holds for every observer in live and returns the
// latest completion time minus t0 in periods; after limit periods it
// returns +Inf and the observers still lagging.
func (t *tracker) wait(live []string, t0 time.Time, period time.Duration, limit float64, done doneFunc) (float64, []string) {
	deadline := t0.Add(time.Duration(limit * float64(period)))
	for {
		t.mu.Lock()
		var last time.Time
		var lag []string
		for _, obs := range live {
			ok, at := done(obs)
			if !ok {
				lag = append(lag, obs)
			} else if at.After(last) {
				last = at
			}
		}
		t.mu.Unlock()
		if len(lag) == 0 {
			return max(0, float64(last.Sub(t0))/float64(period)), nil
		}
		if time.Now().After(deadline) {
			return math.Inf(1), lag
		}
		// The times come from the events, so polling more often would
		// not sharpen them; it would only take CPU from the nodes (each
		// look is N² map reads under the lock their events need).
		time.Sleep(period / 5)
	}
}

// seesAll is done when obs sees every member of live (itself excepted).
func (t *tracker) seesAll(live []string) doneFunc {
	return func(obs string) (bool, time.Time) {
		var last time.Time
		for _, m := range live {
			if m == obs {
				continue
			}
			if _, ok := t.views[obs][m]; !ok {
				return false, last
			}
			last = later(last, t.at[obs][m])
		}
		return true, last
	}
}

// seesMeta is done when obs sees member with meta.
func (t *tracker) seesMeta(member, meta string) doneFunc {
	return func(obs string) (bool, time.Time) {
		if obs == member {
			return true, time.Time{}
		}
		return t.views[obs][member] == meta, t.at[obs][member]
	}
}

// dropped is done when obs no longer sees any of gone.
func (t *tracker) dropped(gone []string) doneFunc {
	return func(obs string) (bool, time.Time) {
		var last time.Time
		for _, g := range gone {
			if _, ok := t.views[obs][g]; ok {
				return false, last
			}
			last = later(last, t.at[obs][g])
		}
		return true, last
	}
}

// dropSpread tells when the observers in live dropped the members gone, in
// periods after t0: the first drop (a declaration), the median and the
// last. It separates detection from the spread of its news.
func (t *tracker) dropSpread(live, gone []string, t0 time.Time, period time.Duration) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ps []float64
	for _, obs := range live {
		for _, g := range gone {
			ps = append(ps, float64(t.at[obs][g].Sub(t0))/float64(period))
		}
	}
	if len(ps) == 0 {
		return "no observers"
	}
	slices.Sort(ps)
	return fmt.Sprintf("dropped first %.1f, median %.1f, last %.1f periods after the crash", ps[0], ps[len(ps)/2], ps[len(ps)-1])
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// missing returns up to 3 members of live that obs does not see, and how
// many in all, for diagnosing a timeout.
func (t *tracker) missing(obs string, live []string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, m := range live {
		if _, ok := t.views[obs][m]; !ok && m != obs {
			out = append(out, m)
		}
	}
	return fmt.Sprintf("%d members, e.g. %v", len(out), out[:min(3, len(out))])
}

// notSeeing returns how many observers in live do not see every member of
// gone.
func (t *tracker) notSeeing(live, gone []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, obs := range live {
		for _, g := range gone {
			if _, ok := t.views[obs][g]; !ok {
				n++
				break
			}
		}
	}
	return n
}
