package peer

import (
	"errors"
	"slices"
	"testing"
)

// The removal rule counts an observer that two of its own observers alert
// on as unavailable, unless it alerts: so across a partition the
// observers on the other side stop counting, while one alert never
// removes anybody.
func TestRemovalCountsObserversUnderAlertOut(t *testing.T) {
	net, names, _ := cluster(t, 30)
	st := net[names[0]]
	ov := st.overlay()
	x := names[7]
	obs := ov.observersOf(x)
	if len(obs) < 6 {
		t.Fatalf("%s has %d observers, want 6 or more", x, len(obs))
	}
	clock := uint64(1000)
	alert := func(observer, subject string) {
		t.Helper()
		e, _ := st.members.Lookup(subject)
		clock++
		if !st.putReport(report{observer: observer, subject: subject, entry: e.Stamp, alert: true, time: clock}) {
			t.Fatalf("report of %s on %s not stored", observer, subject)
		}
	}
	isDown := func() bool { return slices.Contains(st.down(), x) }
	suspects := func(of []string, alerts int) {
		for _, o := range of {
			for _, by := range ov.observersOf(o)[:alerts] {
				alert(by, o)
			}
		}
	}

	alert(obs[0], x)
	suspects(obs[1:], 2) // every other observer a suspect: one alert still removes nobody
	if isDown() {
		t.Fatalf("%s removed on one alert, its other observers all suspects", x)
	}
	alert(obs[1], x)
	alert(obs[2], x)
	// 3 alerts; the other observers are suspects: 3 available, threshold 2.
	if !isDown() {
		t.Fatalf("%s not removed: 3 of its 3 available observers alert", x)
	}
	if slices.ContainsFunc(obs, func(o string) bool { return slices.Contains(st.down(), o) }) {
		t.Fatal("an observer with two alerts on it was removed")
	}

	// One alert on an observer does not make it a suspect: under message
	// loss single alerts come and go everywhere.
	net, names, _ = cluster(t, 30)
	st = net[names[0]]
	ov = st.overlay()
	obs = ov.observersOf(x)
	for _, o := range obs[:3] {
		alert(o, x)
	}
	suspects(obs[3:], 1)
	if isDown() {
		t.Fatalf("%s removed on 3 alerts, its other observers alerted on once each", x)
	}

}

// An EventFailed says whether this peer decided the removal on the
// alerts it holds or learned it from another peer.
func TestFailedEventSaysWhoDecided(t *testing.T) {
	net, names, now := cluster(t, 4)
	a, x := net[names[0]], names[3]
	for _, st := range net {
		st.events = nil
	}
	a.fail(x, now)
	flushPushes(t, net, names, now)
	for _, st := range net {
		if st.self == x {
			continue
		}
		i := slices.IndexFunc(st.events, func(ev Event) bool { return ev.Type == EventFailed && ev.Addr == x })
		if i < 0 {
			t.Fatalf("%s has no failure event of %s", st.self, x)
		}
		if got, want := st.events[i].Decided, st == a; got != want {
			t.Errorf("%s: Decided = %v, want %v", st.self, got, want)
		}
	}
}

// A silent subject's probe stays in flight until its deadline, about a
// period, so into the next round. While two or more subjects fail, a round
// contacts every subject whose call is not in flight, rather than giving
// its slots to those still waiting on theirs: a peer cut off from all 6 of
// its subjects contacts each of them every other round.
func TestProbesSkipCallsInFlight(t *testing.T) {
	net, names, now := cluster(t, 7)
	st := net[names[0]]
	if len(st.subjects) != 6 {
		t.Fatalf("%d subjects, want all 6 others", len(st.subjects))
	}
	var held []*exchange
	round := func() map[string]bool {
		now = now.Add(p)
		called := map[string]bool{}
		exs := st.round(now)
		for _, ex := range exs {
			called[ex.addr] = true
		}
		for _, ex := range held { // the previous round's calls time out
			st.onError(ex, errors.New("context deadline exceeded"), now)
		}
		held = exs
		return called
	}
	round()
	round() // two subjects or more now fail
	inFlight := map[string]bool{}
	for _, ex := range held {
		inFlight[ex.addr] = true
	}
	called := round()
	for _, a := range st.subjects {
		if inFlight[a] == called[a] {
			t.Fatalf("round called %v with %v in flight; want every subject not in flight called, and no other", called, inFlight)
		}
	}
}

// A cut-off peer raises no new alert on a subject that has just gone
// down, but once that leaves it reaching none of its subjects it lists
// none of them at once, on the failure that told it, not a round later.
func TestCutOffPeerHidesOnTheLastFailure(t *testing.T) {
	net, names, now := cluster(t, 7)
	st := net[names[0]]
	var held []*exchange
	for range 20 {
		now = now.Add(p)
		exs := st.round(now)
		for _, ex := range held { // the previous round's calls time out
			st.onError(ex, errors.New("context deadline exceeded"), now)
			down := 0
			for _, a := range st.subjects {
				if st.det.down(a, now, st.expiry(), p, false) {
					down++
				}
			}
			if down == len(st.subjects) {
				if len(st.hidden) != len(st.subjects) {
					t.Fatalf("every subject down, but %d of %d hidden", len(st.hidden), len(st.subjects))
				}
				if !st.cutOff {
					t.Fatal("every subject down, but not cut off")
				}
				return
			}
		}
		held = exs
	}
	t.Fatal("the subjects never all went down")
}
