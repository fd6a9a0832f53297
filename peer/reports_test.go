package peer

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// Reports merge as a last-writer-wins register per observer and subject,
// only about the subject's current entry, and the digest is a function of
// what is held, whatever the order of arrival.
func TestReportsMerge(t *testing.T) {
	cur := crdt.Stamp{Time: 5, Writer: "10.0.0.2:1#a"}
	old := crdt.Stamp{Time: 3, Writer: "10.0.0.2:1#a"}
	alert := report{observer: "10.0.0.1:1", subject: "10.0.0.2:1", entry: cur, alert: true, time: 10}
	clear := alert
	clear.alert, clear.time = false, 11
	other := report{observer: "10.0.0.3:1", subject: "10.0.0.2:1", entry: cur, alert: true, time: 4}
	stale := report{observer: "10.0.0.4:1", subject: "10.0.0.2:1", entry: old, alert: true, time: 20}

	var a, b reports
	for _, r := range []report{alert, clear, other, stale} {
		a.put(r, cur)
	}
	for _, r := range []report{other, clear, alert, stale, clear} {
		b.put(r, cur)
	}
	if a.digest != b.digest || !slices.Equal(a.all(), b.all()) {
		t.Fatalf("order of arrival changed the set: %v vs %v", a.all(), b.all())
	}
	if got := a.alerts("10.0.0.2:1"); !slices.Equal(got, []string{"10.0.0.3:1"}) {
		t.Fatalf("alerts = %v, want only the observer that did not clear", got)
	}
	if a.put(stale, cur) {
		t.Fatal("a report about an older entry was stored")
	}
	// The subject writes a new entry: every report about the old one goes.
	if n := a.retain("10.0.0.2:1", crdt.Stamp{Time: 9, Writer: cur.Writer}); n != 2 || len(a.all()) != 0 || a.digest != 0 {
		t.Fatalf("retain dropped %d, left %v, digest %x; want 2, none, 0", n, a.all(), a.digest)
	}
}

// A report that names no valid address or writer is refused with an error
// that says what is wrong.
func TestDecodeReportRefusesBadInput(t *testing.T) {
	good := &meshpb.Report{Observer: "10.0.0.1:1", Subject: "10.0.0.2:1", SubjectTime: 1, SubjectWriter: "10.0.0.2:1#a", Alert: true, Time: 2}
	if _, err := decodeReport(good); err != nil {
		t.Fatal(err)
	}
	for name, pr := range map[string]*meshpb.Report{
		"bad observer": {Observer: "nope", Subject: "10.0.0.2:1", SubjectWriter: "w"},
		"bad subject":  {Observer: "10.0.0.1:1", Subject: "", SubjectWriter: "w"},
		"no writer":    {Observer: "10.0.0.1:1", Subject: "10.0.0.2:1"},
		"self report":  {Observer: "10.0.0.2:1", Subject: "10.0.0.2:1", SubjectWriter: "w"},
	} {
		if _, err := decodeReport(pr); !errors.Is(err, errBadRequest) {
			t.Errorf("%s: err = %v, want errBadRequest", name, err)
		}
	}
}

// A message with one bad report changes nothing, entries included.
func TestBadReportLeavesStateUntouched(t *testing.T) {
	net, names, now := cluster(t, 3)
	st := net[names[0]]
	before := freeze(st)
	req := &meshpb.SyncRequest{Push: true,
		Delta:   []*meshpb.Entry{{Addr: "10.0.0.9:7946", Time: 5, Writer: "10.0.0.9:7946#1", Meta: &meshpb.PeerMeta{}}},
		Reports: []*meshpb.Report{{Observer: "10.0.0.1:7946", Subject: "not an address", SubjectWriter: "w", Alert: true}}}
	if _, err := st.answer(req, now); !errors.Is(err, errBadRequest) {
		t.Fatalf("err = %v, want errBadRequest", err)
	}
	if !before.same(st) {
		t.Fatal("state changed after a refused message")
	}
}

// Where Expiry is longer, more probes must fail: one per two periods of
// it, so that three probes lost on a slow network, each holding its
// subject until a deadline of several periods, do not alert.
func TestDetectorFailsForLongExpiry(t *testing.T) {
	const exp = 8 * p
	var d detector
	d.watch([]string{"c"}, t0, func() time.Duration { return 0 })
	for i := range 3 { // 3 failures, 4 periods apart: they span the expiry
		d.failed("c", false, t0.Add(time.Duration(4*i)*p))
	}
	if d.down("c", t0.Add(12*p), exp, p, false) {
		t.Fatal("3 failures alerted with an expiry of 8 periods; want 4")
	}
	d.failed("c", false, t0.Add(13*p))
	if !d.down("c", t0.Add(13*p), exp, p, false) {
		t.Fatal("4 failures over 13 periods did not alert")
	}
	if got := failsFor(5*p, p); got != failsToAlert {
		t.Fatalf("failsFor(5P) = %d, want %d", got, failsToAlert)
	}
	if got := failsFor(10*p, p); got != 5 {
		t.Fatalf("failsFor(10P) = %d, want 5", got)
	}
}

// Corroborated (two other observers alert), a run of failsFor failures
// alerts however short; uncorroborated, it must span the expiry; and
// fewer failures never alert.
func TestDetectorCorroboratedRun(t *testing.T) {
	const exp = 8 * p
	var d detector
	d.watch([]string{"c"}, t0, func() time.Duration { return 0 })
	for i := range 3 {
		d.failed("c", false, t0.Add(time.Duration(i)*p))
	}
	now := t0.Add(3 * p)
	if d.down("c", now, exp, p, true) {
		t.Fatal("3 failures alerted with an expiry of 8 periods, corroborated; want 4")
	}
	d.failed("c", false, now)
	if !d.down("c", now, exp, p, true) || d.down("c", now, exp, p, false) {
		t.Fatal("4 failures over 3 periods: want down when corroborated only")
	}
}

// Probes and anti-entropy each take turns over the subjects, on their
// own clocks: the subject contacted longest ago first. A new subject's
// turn is set in the past by ago, so observers that gained it together
// do not contact it in step.
func TestDetectorTakesTurns(t *testing.T) {
	var d detector
	ago := map[string]time.Duration{"a": 3 * p, "b": p, "c": 2 * p}
	var next []string
	for _, a := range []string{"a", "b", "c"} {
		next = append(next, a)
		d.watch(next, t0, func() time.Duration { return ago[a] })
	}
	none := func(string) bool { return false }
	if got := d.stalest([]string{"a", "b", "c"}, 3, false, none); !slices.Equal(got, []string{"a", "c", "b"}) {
		t.Fatalf("probe order %v, want the oldest turn first: [a c b]", got)
	}
	// An exchange with a probes it too; a probe of c is no exchange.
	d.syncing("a", t0)
	d.probing("c", t0)
	if got := d.stalest([]string{"a", "b", "c"}, 1, false, none); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("next probe %v, want [b]", got)
	}
	if got := d.stalest([]string{"a", "b", "c"}, 1, true, none); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("next partner %v, want [c]: probed, but its exchange turn is oldest", got)
	}
	if got := d.stalest([]string{"a", "b", "c"}, 2, true, func(a string) bool { return a == "c" }); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("partners but c %v, want [b a]", got)
	}
}

// The detector alerts at once on a refusal; after probes of three rounds
// or more failing for an expiry otherwise; and on a heartbeat that
// stopped.
func TestDetector(t *testing.T) {
	const exp = 5 * p
	var d detector
	d.watch([]string{"a", "b", "c"}, t0, func() time.Duration { return 0 })
	now := t0.Add(p)
	d.answered("a", 1, now)
	d.failed("b", true, now)
	if d.down("a", now, exp, p, false) || !d.down("b", now, exp, p, false) {
		t.Fatal("want a up, b down on its refusal")
	}
	// c's calls of one round fail together (a reset connection): one failure.
	for range 3 {
		d.failed("c", false, t0)
	}
	if d.down("c", t0.Add(20*p), exp, p, false) {
		t.Fatal("calls started in one round counted as failures in a row")
	}
	d.failed("c", false, t0.Add(p))
	if d.down("c", t0.Add(20*p), exp, p, false) {
		t.Fatal("two failures in a row alerted")
	}
	d.failed("c", false, t0.Add(2*p))
	if d.down("c", t0.Add(exp-p), exp, p, false) || !d.down("c", t0.Add(exp), exp, p, false) {
		t.Fatal("three failures should alert only once they lasted an expiry")
	}
	// The round an expiry after the first failure's may start a little
	// sooner than a full expiry after it: it counts.
	if !d.down("c", t0.Add(exp-p/10), exp, p, false) {
		t.Fatal("a run of an expiry's rounds, its last round early by P/10, did not alert")
	}
	// A stall of this peer restarts the run of failures.
	d.resume(t0.Add(30 * p))
	if d.down("c", t0.Add(30*p), exp, p, false) {
		t.Fatal("down right after this peer's own stall")
	}
	// a answers with the same heartbeat from then on: it no longer runs.
	for range 6 {
		now = now.Add(p)
		d.answered("a", 1, now)
	}
	if !d.down("a", now, exp, p, false) {
		t.Fatal("a heartbeat stuck for an expiry did not alert")
	}
	d.answered("a", 2, now)
	if d.down("a", now, exp, p, false) || d.failing("a") {
		t.Fatal("an advanced heartbeat did not clear")
	}
	d.watch([]string{"a"}, t0, func() time.Duration { return 0 })
	if d.down("b", now, exp, p, false) || d.failing("c") {
		t.Fatal("forgotten subjects still tracked")
	}
	if !refusal(errors.New("connection refused")) || refusal(errors.New("context deadline exceeded")) {
		t.Fatal("refusal misclassifies")
	}
	stopped := fmt.Errorf("sync with a: %w", status.Error(codes.Unavailable, errStopped))
	if !refusal(stopped) || refusal(status.Error(codes.Unavailable, "connection reset")) {
		t.Fatal("a stopped peer's answer is not a refusal, or another Unavailable is")
	}
}

// The outbox keeps at most one push in flight per neighbour and folds
// what comes meanwhile into one batch of the newest writes.
func TestOutboxBatches(t *testing.T) {
	var o outbox
	e := func(t uint64) entry {
		return entry{Key: "10.0.0.5:1", Stamp: crdt.Stamp{Time: t, Writer: "10.0.0.5:1#a"}}
	}
	o.add("n", []entry{e(1)}, nil)
	es, _, _, ok := o.take("n", 10)
	if !ok || len(es) != 1 {
		t.Fatal("first push not taken")
	}
	o.add("n", []entry{e(3)}, nil)
	o.add("n", []entry{e(2)}, []report{{observer: "x:1", subject: "y:1", time: 1}, {observer: "x:1", subject: "y:1", time: 2}})
	if _, _, _, ok := o.take("n", 10); ok {
		t.Fatal("a second push while one is in flight")
	}
	o.done("n")
	es, rs, _, ok := o.take("n", 10)
	if !ok || len(es) != 1 || es[0].Stamp.Time != 3 || len(rs) != 1 || rs[0].time != 2 {
		t.Fatalf("batch = %v %v, want the newest entry and report only", es, rs)
	}
	o.done("n")
	if _, _, _, ok := o.take("n", 10); ok {
		t.Fatal("an empty push")
	}
}

// A failed push's news waits for the next round and is tried once more,
// merged with what came meanwhile; failing again, it is dropped.
func TestOutboxRetriesAFailedPushOnce(t *testing.T) {
	var o outbox
	e := func(key string, t uint64) entry {
		return entry{Key: key, Stamp: crdt.Stamp{Time: t, Writer: key + "#a"}}
	}
	o.add("n", []entry{e("10.0.0.5:1", 1)}, nil)
	es, rs, retry, _ := o.take("n", 10)
	o.failed("n", es, rs, retry)
	o.add("n", []entry{e("10.0.0.6:1", 1)}, nil) // news meanwhile
	if got := o.waiting(); len(got) != 1 || got[0] != "n" {
		t.Fatalf("waiting = %v, want [n]", got)
	}
	es, rs, retry, ok := o.take("n", 10)
	if !ok || !retry || len(es) != 2 {
		t.Fatalf("retry = %v, %v, %v: want both entries, as a retry", ok, retry, es)
	}
	o.failed("n", es, rs, retry)
	if got := o.waiting(); len(got) != 0 {
		t.Fatalf("waiting = %v after a retry failed, want nothing", got)
	}
}

// A push carries at most max entries, tombstones first; the rest goes
// with the next push, and a receiver's MaxDeltaEntries is never exceeded.
func TestOutboxCapsAPushTombstonesFirst(t *testing.T) {
	var o outbox
	var es []entry
	for i := range 5 {
		key := fmt.Sprintf("10.0.0.%d:1", i)
		es = append(es, entry{Key: key, Stamp: crdt.Stamp{Time: 1, Writer: key + "#a"}, Deleted: i >= 3})
	}
	o.add("n", es, []report{{observer: "x:1", subject: "y:1", time: 1}})
	first, rs, _, ok := o.take("n", 3)
	if !ok || len(first) != 3 || !first[0].Deleted || !first[1].Deleted || first[2].Deleted || len(rs) != 1 {
		t.Fatalf("first push = %v, %d reports; want the 2 tombstones, then 1 live entry, and the report", first, len(rs))
	}
	o.done("n")
	rest, rs, _, ok := o.take("n", 3)
	if !ok || len(rest) != 2 || len(rs) != 0 {
		t.Fatalf("second push = %v, %d reports; want the 2 live entries left and no report", rest, len(rs))
	}
	o.done("n")
	if _, _, _, ok := o.take("n", 3); ok {
		t.Fatal("a third push: nothing was left")
	}
}
