package peer

import (
	"fmt"
	"slices"
	"testing"
)

func addrsN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d:7946", i/250, i%250+1)
	}
	slices.Sort(out)
	return out
}

// Every member has exactly K observers (everyone else, up to K+1
// members) and watches about K subjects, never itself, and the two
// relations are each other's inverse: any peer computes the same graph
// from the same view.
func TestOverlayPlacement(t *testing.T) {
	for _, c := range []struct{ n, k int }{{1, 8}, {2, 8}, {9, 8}, {10, 8}, {64, 8}, {500, 10}} {
		view := addrsN(c.n)
		ov := newOverlay(view, c.k)
		watchers := map[string][]string{}
		for _, a := range view {
			subs := ov.subjectsOf(a)
			if len(subs) > 3*c.k/2 || slices.Contains(subs, a) {
				t.Fatalf("n=%d k=%d: %s watches %v", c.n, c.k, a, subs)
			}
			if c.n <= c.k+1 && len(subs) != c.n-1 {
				t.Fatalf("n=%d k=%d: %s watches %d members, want everyone else (%d)", c.n, c.k, a, len(subs), c.n-1)
			}
			for _, x := range subs {
				watchers[x] = append(watchers[x], a)
			}
		}
		for _, x := range view {
			obs := ov.observersOf(x)
			got := slices.Sorted(slices.Values(watchers[x]))
			if !slices.Equal(obs, got) {
				t.Fatalf("n=%d k=%d: observersOf(%s) = %v, but these watch it: %v", c.n, c.k, x, obs, got)
			}
			if want := min(c.k, c.n-1); len(obs) != want {
				t.Fatalf("n=%d k=%d: %s has %d observers, want %d", c.n, c.k, x, len(obs), want)
			}
		}
		if again := newOverlay(slices.Clone(view), c.k); c.n > 0 && !slices.Equal(again.subjectsOf(view[0]), ov.subjectsOf(view[0])) {
			t.Fatalf("n=%d: the same view gave different subjects", c.n)
		}
	}
}

// A member joining or leaving changes few other members' subjects: the
// overlay is stable under churn, so connections and watches persist.
func TestOverlayStableUnderChurn(t *testing.T) {
	view := addrsN(200)
	before := newOverlay(view, 8)
	for l, leaver := range view {
		after := newOverlay(slices.Concat(view[:l], view[l+1:]), 8)
		changed := 0
		for _, a := range view {
			if a != leaver && !slices.Equal(before.subjectsOf(a), after.subjectsOf(a)) {
				changed++
			}
		}
		// On each of the 8 rings the leaver's subject there gets a new
		// observer (the next member along, or the one after it where that
		// one already watched the subject), and that observer a new
		// subject: 8 members, a few more where the skips cascade.
		if changed > 12 {
			t.Fatalf("%s leaving changed the subjects of %d members, want at most 12", leaver, changed)
		}
	}
}

// News relayed along a few rings reaches everyone in a few hops: each
// member's relays are among its subjects, at most rings of them, and
// flooding from any member over the relays covers the view.
func TestOverlayRelaysReachEveryone(t *testing.T) {
	for _, c := range []struct{ n, hops int }{{2, 1}, {9, 4}, {11, 4}, {64, 6}, {1000, 10}} {
		view := addrsN(c.n)
		ov := newOverlay(view, 8)
		relays := map[string][]string{}
		for _, a := range view {
			rs := ov.relaysOf(a, relayRings)
			if len(rs) == 0 || len(rs) > relayRings {
				t.Fatalf("n=%d: %s relays to %v", c.n, a, rs)
			}
			for _, r := range rs {
				if !slices.Contains(ov.subjectsOf(a), r) {
					t.Fatalf("n=%d: %s relays to %s, which it does not observe", c.n, a, r)
				}
			}
			relays[a] = rs
		}
		seen, front := map[string]bool{view[0]: true}, []string{view[0]}
		hops := 0
		for ; len(front) > 0 && len(seen) < c.n; hops++ {
			var next []string
			for _, a := range front {
				for _, r := range relays[a] {
					if !seen[r] {
						seen[r] = true
						next = append(next, r)
					}
				}
			}
			front = next
		}
		if len(seen) != c.n || hops > c.hops {
			t.Fatalf("n=%d: news reached %d members in %d hops, want all in at most %d", c.n, len(seen), hops, c.hops)
		}
	}
}

// A member that is not in the view (pending) is placed as if it were.
func TestOverlayOutsider(t *testing.T) {
	for _, n := range []int{9, 11, 40, 100} { // at 10, the 9 others form a complete overlay and all watch an outsider
		view := addrsN(n)
		for i, x := range view {
			rest := slices.Concat(view[:i], view[i+1:])
			if got, want := newOverlay(rest, 8).observersOf(x), newOverlay(view, 8).observersOf(x); !slices.Equal(got, want) {
				t.Fatalf("n=%d: observers of outsider %s: %v, as a member: %v", n, x, got, want)
			}
		}
	}
	view := addrsN(40)
	x := view[17]
	rest := slices.Concat(view[:17], view[18:])
	if got, want := newOverlay(rest, 8).subjectsOf(x), newOverlay(view, 8).subjectsOf(x); !slices.Equal(got, want) {
		t.Fatalf("subjects of an outsider: %v, as a member: %v", got, want)
	}
}

func TestAlertThreshold(t *testing.T) {
	for _, c := range []struct{ available, all, want int }{
		{1, 1, 1}, // a cluster of two: the one observer decides
		{1, 2, 2}, {2, 2, 2}, {3, 3, 2}, {4, 4, 3}, {6, 6, 4}, {8, 8, 5}, {10, 10, 6},
		{3, 8, 2}, // five of eight observers are gone
		{1, 8, 2}, // one peer alone never decides
	} {
		if got := alertThreshold(c.available, c.all); got != c.want {
			t.Errorf("alertThreshold(%d of %d) = %d, want %d", c.available, c.all, got, c.want)
		}
	}
}
