package peer

import (
	"errors"
	"strings"
	"syscall"
	"time"
)

// detector follows the subjects this peer observes, through its own
// probes of them only: what is measured is whether this peer can reach a
// subject, not whether the subject can reach anyone. A subject is down
// when a probe of it was refused since it last answered (nothing listens
// at its address), or when its last two probes or more failed and it has
// not answered with an advanced heartbeat for an expiry (a silent host, a
// lost path, a wedged process). It is a pure value: the time is an
// argument.
type detector struct {
	watches map[string]*watch
}

type watch struct {
	reached   time.Time // last answer with an advanced heartbeat, or when watching began
	heartbeat uint64
	answered  bool // heartbeat holds an answer's counter
	refused   bool // a probe was refused since reached
	fails     int  // probes failed in a row
}

// failsToAlert is how many probes in a row must fail, besides the
// subject's silence for an expiry: one lost message alerts nobody.
const failsToAlert = 2

// watch makes subjects the watched set: a new subject is given until an
// expiry from now to answer, and subjects no longer watched are forgotten.
func (d *detector) watch(subjects []string, now time.Time) {
	if d.watches == nil {
		d.watches = map[string]*watch{}
	}
	keep := make(map[string]bool, len(subjects))
	for _, a := range subjects {
		keep[a] = true
		if d.watches[a] == nil {
			d.watches[a] = &watch{reached: now}
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
		w.reached, w.refused, w.fails = now, false, 0
	} else {
		w.fails++
	}
	w.heartbeat, w.answered = heartbeat, true
}

// failed records a failed probe; refused means it failed fast, without
// waiting for its deadline.
func (d *detector) failed(addr string, refused bool) {
	if w := d.watches[addr]; w != nil {
		w.fails++
		w.refused = w.refused || refused
	}
}

// down reports whether this peer considers addr unreachable at now.
func (d *detector) down(addr string, now time.Time, expiry time.Duration) bool {
	w := d.watches[addr]
	return w != nil && (w.refused || w.fails >= failsToAlert && now.Sub(w.reached) > expiry)
}

// failing reports whether addr's last probe failed: it is probed every
// round until it answers.
func (d *detector) failing(addr string) bool {
	w := d.watches[addr]
	return w != nil && w.fails > 0
}

// resume gives every subject a fresh expiry from now: this peer's own
// rounds ran late, so its silence from the subjects says nothing of them.
func (d *detector) resume(now time.Time) {
	for _, w := range d.watches {
		if w.reached.Before(now) {
			w.reached = now
		}
	}
}

// refusal reports whether err says that nothing listens at the address
// (the connection was refused): a crashed process on a live host, unlike
// a timeout, which a starved, partitioned or lossy peer sees as well.
// gRPC reports the cause only as text.
func refusal(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}
