package peer

import (
	"slices"
	"time"

	"github.com/gossipmesh/mesh/meshpb"
)

// Machine is the protocol of one peer with no I/O, goroutines, locks or
// clock reads: every call takes the time and returns the messages to send.
// Peer drives a Machine with a ticker and gRPC; the simulator drives
// thousands of them in virtual time over a simulated network. A Machine
// is not safe for concurrent use.
//
// One exchange: Round returns Outgoing requests; deliver each to its
// partner's Answer; hand the answer back to Deliver, which may return a
// follow-up request for the same partner; or call Fail if the call failed.
// Every Outgoing must end in Deliver returning nil or in Fail, or its
// partner is not contacted again.
type Machine struct{ st *state }

// Outgoing is a request to send to To.
type Outgoing struct {
	To      string
	Request *meshpb.SyncRequest
	// Timeout is how long to wait for the answer before calling Fail:
	// RPCTimeout, or longer while answers are measured to take longer.
	Timeout time.Duration
	// Sent is when the request went out, after any connecting. The
	// driver sets it; Deliver measures the round trip from it (a zero
	// Sent is not measured).
	Sent time.Time
	ex   *exchange
}

// NewMachine returns the protocol state of a new peer at now. config's
// Transport and Clock are not used; Rand, if set, makes partner choice
// reproducible.
func NewMachine(config PeerConfig, now time.Time) *Machine {
	return newMachine(sanitize(config).withDefaults(), now)
}

// newMachine is NewMachine for a config already sanitized and defaulted.
func newMachine(cfg PeerConfig, now time.Time) *Machine {
	return &Machine{st: newState(cfg, now)}
}

func (m *Machine) wrap(exs []*exchange) []*Outgoing {
	out := make([]*Outgoing, len(exs))
	for i, ex := range exs {
		out[i] = m.outgoing(ex)
	}
	return out
}

func (m *Machine) outgoing(ex *exchange) *Outgoing {
	return &Outgoing{To: ex.addr, Request: ex.req, Timeout: m.st.calls.timeout(), ex: ex}
}

// Addr returns the machine's address.
func (m *Machine) Addr() string { return m.st.self }

// Round runs a gossip round at now and returns the exchanges to start.
func (m *Machine) Round(now time.Time) []*Outgoing { return m.wrap(m.st.round(now)) }

// Answer handles a partner's request. Errors name what was wrong; they
// leave the machine unchanged.
func (m *Machine) Answer(req *meshpb.SyncRequest, now time.Time) (*meshpb.SyncResponse, error) {
	return m.st.answer(req, now)
}

// Deliver applies the answer to o and returns the follow-up, if any.
func (m *Machine) Deliver(o *Outgoing, resp *meshpb.SyncResponse, now time.Time) (*Outgoing, error) {
	m.measure(o, now)
	ex, err := m.st.onResponse(o.ex, resp, now)
	if ex == nil {
		return nil, err
	}
	return m.outgoing(ex), err
}

// Late records resp, an answer to o that came after o's call was failed
// at its Timeout: its round trip lengthens the Timeouts of the next calls
// (a loaded machine, not a silent partner), and a probe's answer shows
// the partner reachable; nothing else of it is applied.
func (m *Machine) Late(o *Outgoing, resp *meshpb.SyncResponse, now time.Time) {
	m.measure(o, now)
	m.st.lateAnswer(o.ex, resp, now)
}

// measure records the round trip of o, answered at now, if o.Sent says
// when it went out.
func (m *Machine) measure(o *Outgoing, now time.Time) {
	if !o.Sent.IsZero() {
		m.st.calls.observe(now.Sub(o.Sent), now)
	}
}

// Fail records that o's call failed.
func (m *Machine) Fail(o *Outgoing, err error, now time.Time) { m.st.onError(o.ex, err, now) }

// AddSeed schedules addr to be contacted; see Peer.AddSeed. After the
// first Round, the exchange with it starts at once: it is in TakePushes.
func (m *Machine) AddSeed(addr string, now time.Time) error { return m.st.addSeed(addr, now) }

// SetMeta changes this peer's meta; see Peer.SetMeta.
func (m *Machine) SetMeta(meta *meshpb.PeerMeta, now time.Time) error {
	return m.st.setMeta(meta, now)
}

// Leave marks this peer as left and returns the request to push to each
// of the returned addresses (every live member).
func (m *Machine) Leave(now time.Time) (*meshpb.SyncRequest, []string) { return m.st.leave(now) }

// Members returns the live members, self included, with copies of metas.
func (m *Machine) Members() map[string]*meshpb.PeerMeta { return m.st.snapshot() }

// List returns every entry, removed members (failed or left, until their
// tombstone is purged) included, sorted by address.
func (m *Machine) List() []Member { return m.st.list() }

// Digest returns the digest of the membership state: equal digests mean
// equal states.
func (m *Machine) Digest() uint64 { return m.st.digest }

// Converged reports whether every listed member is known to hold exactly
// this machine's state and none is in doubt (see Peer.Converged).
func (m *Machine) Converged() bool { return m.st.converged() }

// Subjects returns the members this machine observes (probes and alerts
// on), sorted; see PeerConfig.Observers.
func (m *Machine) Subjects() []string {
	m.st.refreshOverlay(m.st.lastRound)
	return slices.Clone(m.st.subjects)
}

// Expiry returns how long this machine's probes of a subject may fail
// before it alerts: Expiry, or by default its value for the current view
// size.
func (m *Machine) Expiry() time.Duration { return m.st.expiry() }

// Stats returns protocol counters.
func (m *Machine) Stats() Stats {
	st := m.st.stats
	st.Alerting = m.st.alerting()
	return st
}

// TakeEvents returns the membership events since the last call.
func (m *Machine) TakeEvents() []Event {
	ev := m.st.events
	m.st.events = nil
	return ev
}

// TakePushes returns the requests queued since the last call outside a
// round: news told to the overlay at once beside anti-entropy (a new meta,
// a refutation, alerts, removals, and what this peer relays), probes of a
// subject another observer alerts on, and the exchange with a seed added
// after the first round. Run each as a round's Outgoing: its answer to
// Deliver (a seed's may return a follow-up) or its error to Fail. At most
// one push is in flight to a neighbour, and the next waits for it.
func (m *Machine) TakePushes() []*Outgoing {
	out := m.wrap(m.st.pushes)
	m.st.pushes = nil
	return out
}

// takeForget returns the addresses whose connections may be closed.
func (m *Machine) takeForget() []string {
	f := m.st.forget
	m.st.forget = nil
	return f
}
