package sim

import (
	"errors"
	"fmt"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// network holds the message faults: a loss rate and partition rules.
type network struct {
	loss  float64
	rules []rule // in force
	// past keeps every rule with the interval it was in force, to excuse
	// removals it caused shortly after a heal.
	past []rule
	// silenced slots lose every message, and the checkers are not told:
	// tests use it to prove that the checkers catch what they should.
	silenced map[int32]bool
	// calls and pastCalls are rules on connections rather than messages:
	// a call from a slot in from to one in to gets no answer (an inbound
	// firewall), while the answers to calls the other way still flow.
	calls, pastCalls []rule
}

// rule drops messages from any slot in from to any slot in to.
type rule struct {
	from, to   []bool
	start, end int64 // end 0: still in force
}

func (nw *network) block(s *Sim, from, to []string) {
	nw.rules = append(nw.rules, newRule(s, from, to))
}

func (nw *network) heal(now int64) {
	for _, r := range nw.rules {
		r.end = now
		nw.past = append(nw.past, r)
	}
	for _, r := range nw.calls {
		r.end = now
		nw.pastCalls = append(nw.pastCalls, r)
	}
	nw.rules, nw.calls = nil, nil
}

func newRule(s *Sim, from, to []string) rule {
	r := rule{from: make([]bool, len(s.nodes)), to: make([]bool, len(s.nodes)), start: s.now}
	for _, a := range from {
		r.from[s.node(a).slot] = true
	}
	for _, a := range to {
		r.to[s.node(a).slot] = true
	}
	return r
}

// callBlocked reports whether a call from → to gets no answer now.
func (nw *network) callBlocked(from, to int32) bool {
	for i := range nw.calls {
		if nw.calls[i].cuts(from, to) {
			return true
		}
	}
	return false
}

func (r *rule) cuts(from, to int32) bool {
	return int(from) < len(r.from) && int(to) < len(r.to) && r.from[from] && r.to[to]
}

// blocked reports whether a message from → to is dropped now.
func (nw *network) blocked(from, to int32) bool {
	for i := range nw.rules {
		if nw.rules[i].cuts(from, to) {
			return true
		}
	}
	return false
}

// cutOffSince reports whether a was cut off from any peer, either way,
// by a rule in force at any time after since.
func (nw *network) cutOffSince(a int32, since int64) bool {
	for _, rs := range [][]rule{nw.rules, nw.calls, nw.past, nw.pastCalls} {
		for i := range rs {
			r := &rs[i]
			in := int(a) < len(r.from) && (r.from[a] || r.to[a])
			if in && (r.end == 0 || r.end >= since) {
				return true
			}
		}
	}
	return false
}

// silence drops every message to and from addr without recording a
// fault, so that the checkers see a running peer go silent unexcused.
func (s *Sim) silence(addr string) {
	if s.net.silenced == nil {
		s.net.silenced = map[int32]bool{}
	}
	s.net.silenced[s.node(addr).slot] = true
}

// call is one Sync RPC in flight: a request, then an answer or a failure.
type call struct {
	from, to int32
	fromInc  uint32
	out      *peer.Outgoing // nil for a leave's push, which nobody answers
	req      *meshpb.SyncRequest
	resp     *meshpb.SyncResponse
	err      error
	deadline int64
	push     bool
	timedOut bool // the requester already failed it
}

var (
	errDeadline = errors.New("context deadline exceeded")
	errRefused  = errors.New("connection refused: no such host")
)

// startCall sends req from n to addr: an exchange step (out) or a leave
// push. The call fails at its deadline, the Outgoing's Timeout (a leave's
// push: RPCTimeout) from now, unless an answer arrives first.
func (s *Sim) startCall(n *node, out *peer.Outgoing, req *meshpb.SyncRequest, addr string, push bool) {
	c := &call{from: n.slot, fromInc: n.inc, out: out, deadline: s.now + s.rpcTimeout, push: push}
	if out != nil {
		c.deadline, out.Sent = s.now+int64(out.Timeout), s.at()
	}
	to, ok := s.byAddr[addr]
	if !ok {
		// Nothing listens there: refused at once, as a closed port is.
		c.to = -1
		c.err = fmt.Errorf("sync with %s: %w", addr, errRefused)
		if !push {
			s.schedule(s.now, event{kind: evFail, slot: n.slot, c: c})
		}
		return
	}
	c.to = to
	cp, size := send(s, req, func() *meshpb.SyncRequest { return new(meshpb.SyncRequest) })
	kind := recSend
	if push || req.GetPush() {
		kind = recPush
	}
	s.tr.add(rec{at: s.now, kind: kind, a: c.from, b: c.to, x: uint64(size)})
	if why := s.drop(c.from, c.to); why != 0 {
		s.tr.add(rec{at: s.now, kind: recDrop, a: c.from, b: c.to, x: why})
		s.timeout(c)
		return
	}
	if s.net.callBlocked(c.from, c.to) {
		s.stats.Partitioned++
		s.tr.add(rec{at: s.now, kind: recDrop, a: c.from, b: c.to, x: 2})
		s.timeout(c)
		return
	}
	c.req = cp
	s.schedule(s.now+s.cfg.Latency.draw(s.rng), event{kind: evRequest, slot: c.to, c: c})
}

// drop decides whether a message from → to is dropped: 1 lost, 2
// partitioned, 0 delivered. It draws from the random source whether or
// not a partition applies, so that a partition changes no later draw.
func (s *Sim) drop(from, to int32) uint64 {
	lost := s.net.loss > 0 && s.rng.Float64() < s.net.loss
	switch {
	case s.net.blocked(from, to) || s.net.silenced[from] || s.net.silenced[to]:
		s.stats.Partitioned++
		return 2
	case lost:
		s.stats.Lost++
		return 1
	}
	return 0
}

// timeout fails c at its deadline, unless it is a push (nobody waits).
func (s *Sim) timeout(c *call) {
	if c.push || c.timedOut {
		return
	}
	c.timedOut = true
	c.err = fmt.Errorf("sync with %s: %w", s.nodes[c.to].addr, errDeadline)
	s.schedule(max(c.deadline, s.now), event{kind: evFail, slot: c.from, c: c})
}

// request delivers c's request to whatever incarnation of its addressee
// is up, and sends the answer back.
func (s *Sim) request(c *call) {
	n := s.nodes[c.to]
	if !n.up {
		s.tr.add(rec{at: s.now, kind: recDrop, a: c.from, b: c.to, x: 3})
		s.timeout(c) // silent, as a crashed host is
		return
	}
	if n.paused > s.now {
		// The request waits in the socket of a paused process. If the
		// answer cannot make the deadline, the caller gives up then; the
		// request is still processed on resume.
		if n.paused >= c.deadline {
			s.timeout(c)
		}
		s.schedule(n.paused, event{kind: evRequest, slot: c.to, c: c})
		return
	}
	resp, err := n.m.Answer(c.req, s.at())
	s.drain(n)
	if c.push {
		if err != nil {
			s.chk.violate(s, "protocol", fmt.Sprintf("%s refused the push of %s: %v", n.addr, s.nodes[c.from].addr, err), c.from, c.to)
		}
		return
	}
	if err != nil {
		// Honest peers of one cluster never send what the other refuses.
		s.chk.violate(s, "protocol", fmt.Sprintf("%s refused a request of %s: %v", n.addr, s.nodes[c.from].addr, err), c.from, c.to)
		if !c.timedOut {
			c.err = fmt.Errorf("sync with %s: %w", n.addr, err)
			s.schedule(min(s.now+s.cfg.Latency.draw(s.rng), c.deadline), event{kind: evFail, slot: c.from, c: c})
			c.timedOut = true
		}
		return
	}
	cp, size := send(s, resp, func() *meshpb.SyncResponse { return new(meshpb.SyncResponse) })
	s.tr.add(rec{at: s.now, kind: recAnswer, a: c.to, b: c.from, x: uint64(size)})
	if c.timedOut {
		s.tr.add(rec{at: s.now, kind: recDrop, a: c.to, b: c.from, x: 5})
		return
	}
	if why := s.drop(c.to, c.from); why != 0 {
		s.tr.add(rec{at: s.now, kind: recDrop, a: c.to, b: c.from, x: why})
		s.timeout(c)
		return
	}
	arrive := s.now + s.cfg.Latency.draw(s.rng)
	if arrive > c.deadline {
		s.tr.add(rec{at: s.now, kind: recDrop, a: c.to, b: c.from, x: 5})
		s.timeout(c)
		return
	}
	c.resp = cp
	s.schedule(arrive, event{kind: evResponse, slot: c.from, c: c})
}

// requester returns the node that sent c if it is still the same
// incarnation; calls of a crashed or restarted process are abandoned.
func (s *Sim) requester(c *call) *node {
	n := s.nodes[c.from]
	if !n.up || n.inc != c.fromInc {
		s.tr.add(rec{at: s.now, kind: recDrop, a: c.to, b: c.from, x: 4})
		return nil
	}
	return n
}

// response hands c's answer to the requester, and sends the follow-up.
func (s *Sim) response(c *call) {
	n := s.requester(c)
	if n == nil {
		return
	}
	if n.paused > s.now {
		s.schedule(n.paused, event{kind: evResponse, slot: c.from, c: c})
		return
	}
	if s.now > c.deadline { // the requester was paused past its deadline
		c.err = fmt.Errorf("sync with %s: %w", s.nodes[c.to].addr, errDeadline)
		s.fail(c)
		return
	}
	next, err := n.m.Deliver(c.out, c.resp, s.at())
	s.tr.add(rec{at: s.now, kind: recDeliver, a: c.from, b: c.to})
	if err != nil {
		s.chk.violate(s, "protocol", fmt.Sprintf("%s rejected the answer of %s: %v", n.addr, s.nodes[c.to].addr, err), c.from, c.to)
	}
	s.drain(n)
	if next != nil {
		s.startCall(n, next, next.Request, next.To, false)
	}
}

// fail reports c's failure to the requester.
func (s *Sim) fail(c *call) {
	n := s.requester(c)
	if n == nil {
		return
	}
	if n.paused > s.now {
		s.schedule(n.paused, event{kind: evFail, slot: c.from, c: c})
		return
	}
	deadline := errors.Is(c.err, errDeadline)
	if deadline {
		s.stats.Timeouts++
	}
	s.tr.add(rec{at: s.now, kind: recFail, a: c.from, b: c.to, x: b2u(deadline)})
	n.m.Fail(c.out, c.err, s.at())
	s.drain(n)
}

// round runs one gossip round of a node and schedules the next.
func (s *Sim) round(e event) {
	n := s.nodes[e.slot]
	if !n.up || n.inc != e.inc {
		return // a round of a crashed incarnation
	}
	if n.paused > s.now {
		s.schedule(n.paused, e)
		return
	}
	outs := n.m.Round(s.at())
	s.stats.Rounds++
	s.tr.add(rec{at: s.now, kind: recRound, a: n.slot, b: -1, x: uint64(len(outs))})
	s.drain(n)
	sortOutgoing(outs)
	for _, o := range outs {
		s.startCall(n, o, o.Request, o.To, false)
	}
	s.schedule(s.now+s.period+n.slow, event{kind: evRound, slot: n.slot, inc: n.inc})
}

// drain feeds n's membership events to the checkers.
func (s *Sim) drain(n *node) {
	for _, ev := range n.m.TakeEvents() {
		s.chk.observe(s, n, ev)
	}
	// Pushes (news for the overlay, a corroborating probe) are calls
	// like a round's: their answers and failures go back to the machine.
	for _, o := range n.m.TakePushes() {
		s.startCall(n, o, o.Request, o.To, false)
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
