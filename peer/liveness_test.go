package peer

import (
	"slices"
	"testing"
)

// The removal rule counts an observer that is itself alerted on as
// unavailable, unless it alerts: so across a partition the observers on
// the other side stop counting, while one alert never removes anybody.
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

	alert(obs[0], x)
	for _, o := range obs[1:] { // every other observer under alert: one alert still removes nobody
		alert(ov.observersOf(o)[0], o)
	}
	if isDown() {
		t.Fatalf("%s removed on one alert, its other observers all under alert", x)
	}
	alert(obs[1], x)
	alert(obs[2], x)
	// 3 alerts; the other observers are suspects: 3 available, threshold 2.
	if !isDown() {
		t.Fatalf("%s not removed: 3 of its 3 available observers alert", x)
	}
	if slices.ContainsFunc(obs, func(o string) bool { return slices.Contains(st.down(), o) }) {
		t.Fatal("an observer with one alert on it was removed")
	}

	// Without suspects, 3 alerts of 6 or more available observers are not
	// enough.
	net, names, _ = cluster(t, 30)
	st = net[names[0]]
	for _, o := range st.overlay().observersOf(x)[:3] {
		alert(o, x)
	}
	if slices.Contains(st.down(), x) {
		t.Fatalf("%s removed on 3 alerts of %d available observers", x, len(obs))
	}
}
