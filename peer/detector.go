package peer

import (
	"errors"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// detector follows the subjects this peer observes, through its own
// probes of them only: what is measured is whether this peer can reach a
// subject, not whether the subject can reach anyone. It is a pure value:
// the time is an argument.
type detector struct {
	watches map[string]*watch
}

type watch struct {
	heartbeat uint64
	answered  bool      // heartbeat holds an answer's counter
	refused   bool      // a probe was refused since the last answer
	fails     int       // probes failed in a row
	since     time.Time // when the run of failures began
	last      time.Time // when the last counted failed probe started
	probed    time.Time // when the last probe started (an exchange probes too)
	synced    time.Time // when the last anti-entropy exchange started
}

// failsToAlert is how many probes in a row, started in different rounds,
// must fail at least before a subject is down: a lost message or a reset
// connection, which fails every call on it at once, alerts nobody.
const failsToAlert = 3

// failsFor is how many failed probes in a row make a subject down within
// expiry: failsToAlert, and one per two periods of it. A subject that
// stopped answering is probed every round with a deadline of about a
// period, so it reaches that many well within expiry; but a probe lost on
// a network whose answers come late holds its subject until a deadline of
// up to four periods, and three such losses in a row span an Expiry
// (bench, 20 % loss, N = 64: about 80 alerts per peer in 2 minutes).
func failsFor(expiry, period time.Duration) int {
	return max(failsToAlert, int((expiry+2*period-1)/(2*period)))
}

// watch makes subjects the watched set; subjects no longer watched are
// forgotten. A new subject counts as last probed and synced at random
// points of the past (ago), so that the observers of a member, which often
// gain it at the same moment (it joined), do not contact it in step (see
// stalest).
func (d *detector) watch(subjects []string, now time.Time, ago func() time.Duration) {
	if d.watches == nil {
		d.watches = map[string]*watch{}
	}
	keep := make(map[string]bool, len(subjects))
	for _, a := range subjects {
		keep[a] = true
		if d.watches[a] == nil {
			d.watches[a] = &watch{probed: now.Add(-ago()), synced: now.Add(-ago())}
		}
	}
	for a := range d.watches {
		if !keep[a] {
			delete(d.watches, a)
		}
	}
}

// answered records a probe answer carrying the subject's heartbeat. A
// counter that did not move since the last answer is no sign of life: the
// subject answers but no longer runs its rounds.
func (d *detector) answered(addr string, heartbeat uint64, now time.Time) {
	w := d.watches[addr]
	if w == nil {
		return
	}
	if !w.answered || heartbeat != w.heartbeat {
		w.refused, w.fails = false, 0
	} else {
		w.fail(now)
	}
	w.heartbeat, w.answered = heartbeat, true
}

// failed records a failed probe that started at started; refused means
// the connection was refused.
func (d *detector) failed(addr string, refused bool, started time.Time) {
	if w := d.watches[addr]; w != nil {
		w.fail(started)
		w.refused = w.refused || refused
	}
}

// fail counts a failed probe, unless one started no earlier failed already.
func (w *watch) fail(started time.Time) {
	if w.fails > 0 && !started.After(w.last) {
		return
	}
	if w.fails == 0 {
		w.since = started // unreachable since the probe went out, at the latest
	}
	w.fails++
	w.last = started
}

// down reports whether this peer considers addr unreachable at now: a
// probe was refused since it last answered (nothing listens at its
// address); or its probes have failed, failsFor(expiry, period) or more
// in a row, for an expiry (a silent host, a lost path, a wedged process),
// or for any time at all where corroborated: other observers' alerts
// already vouch for the expiry. The span is counted in rounds: a run
// begun in round k spans an expiry of E periods in round k+E, though the
// scheduler may have started that round a little sooner after round k's
// than E periods (time.Ticker keeps the schedule, not each round's delay).
func (d *detector) down(addr string, now time.Time, expiry, period time.Duration, corroborated bool) bool {
	w := d.watches[addr]
	return w != nil && (w.refused || w.fails >= failsFor(expiry, period) && (corroborated || now.Sub(w.since) >= expiry-period/2))
}

// restart forgets addr's run of failures: it wrote a new entry, so an
// alert must be earned on that one.
func (d *detector) restart(addr string) {
	if w := d.watches[addr]; w != nil {
		w.fails, w.refused = 0, false
	}
}

// probing notes that a probe of addr starts at now; syncing, that an
// anti-entropy exchange, which probes too, does.
func (d *detector) probing(addr string, now time.Time) {
	if w := d.watches[addr]; w != nil {
		w.probed = now
	}
}

func (d *detector) syncing(addr string, now time.Time) {
	if w := d.watches[addr]; w != nil {
		w.probed, w.synced = now, now
	}
}

// stalest returns up to n of subjects but skip's, those whose last probe
// (or, with synced, anti-entropy exchange) is oldest; ties in subjects'
// order. Partners take turns on their own clock: an exchange probes too,
// so on the probes' one a subject probed every round would never be the
// partner.
func (d *detector) stalest(subjects []string, n int, synced bool, skip func(string) bool) []string {
	last := func(a string) time.Time {
		if synced {
			return d.watches[a].synced
		}
		return d.watches[a].probed
	}
	var out []string
	for _, a := range subjects {
		if w := d.watches[a]; w != nil && !skip(a) {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return last(a).Compare(last(b)) })
	return out[:min(n, len(out))]
}

// failing reports whether addr's last probe failed: it is probed every
// round until it answers.
func (d *detector) failing(addr string) bool {
	w := d.watches[addr]
	return w != nil && w.fails > 0
}

// doubts reports whether a subject's probes failed in two rounds in a
// row, or one was refused: this peer cannot vouch that it runs.
func (d *detector) doubts() bool {
	for _, w := range d.watches {
		if w.refused || w.fails >= 2 {
			return true
		}
	}
	return false
}

// resume restarts every run of failures at now: this peer's own rounds
// ran late, so its probes' failures say nothing of the subjects.
func (d *detector) resume(now time.Time) {
	for _, w := range d.watches {
		if w.fails > 0 && w.since.Before(now) {
			w.since = now
		}
	}
}

// refusal reports whether err says that nothing listens at the address
// (the connection was refused), or that the Peer there was stopped while
// its gRPC server, which its owner may use for more, still serves: a
// crashed or stopped process on a live host, unlike a timeout, which a
// starved, partitioned or lossy peer sees as well. gRPC reports a
// refused connection only as text.
func refusal(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) && se.GRPCStatus().Code() == codes.Unavailable && se.GRPCStatus().Message() == errStopped {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}

// errStopped is what a stopped Peer answers.
const errStopped = "peer stopped"
