package peer

import (
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
