package peer

import (
	"math/bits"
	"slices"

	"github.com/gossipmesh/mesh/meshpb"
)

// holders is the set of listed members known to hold one state, named by
// its digest: a bit per view position. It serves Converged. Anti-entropy
// spreads it between peers of that state, by union, as long as it is
// incomplete; once complete, a digest request says so in one byte, so a
// converged cluster's exchanges cost the same at any size. A pure value.
type holders struct {
	digest uint64 // the state the members hold
	bits   []byte // bit i%8 of bits[i/8] for view position i
	n      int    // view size
	count  int    // bits set
}

// reset makes h the set of holders of digest in a view of n members, of
// which self (a position, or -1 when not listed) holds it.
func (h *holders) reset(digest uint64, n, self int) {
	h.digest, h.n, h.count = digest, n, 0
	size := (n + 7) / 8
	if cap(h.bits) < size {
		h.bits = make([]byte, size)
	}
	h.bits = h.bits[:size]
	clear(h.bits)
	if self >= 0 {
		h.add(self)
	}
}

// add records that view position i holds the state.
func (h *holders) add(i int) {
	if i < 0 || i >= h.n {
		return
	}
	if m := byte(1) << (i % 8); h.bits[i/8]&m == 0 {
		h.bits[i/8] |= m
		h.count++
	}
}

// fits reports whether b is a holder set of h's view size.
func (h *holders) fits(b []byte) bool { return len(b) == len(h.bits) }

// union adds the holders of b, a set of the same view (see fits); bits
// past the view's end are ignored.
func (h *holders) union(b []byte) {
	if !h.fits(b) {
		return
	}
	for j, x := range b {
		if j == len(b)-1 && h.n%8 != 0 {
			x &= byte(1)<<(h.n%8) - 1
		}
		if add := x &^ h.bits[j]; add != 0 {
			h.bits[j] |= add
			h.count += bits.OnesCount8(add)
		}
	}
}

// fill records that every member holds the state.
func (h *holders) fill() {
	for i := range h.n {
		h.add(i)
	}
}

// complete reports whether every member of the view holds the state.
func (h *holders) complete() bool { return h.count == h.n }

// beyond reports whether h holds a member that b, a set of the same view,
// does not.
func (h *holders) beyond(b []byte) bool {
	if !h.fits(b) {
		return h.count > 0
	}
	for j, x := range h.bits {
		if x&^b[j] != 0 {
			return true
		}
	}
	return false
}

// encode returns h for a message: nil and true when complete, else a
// copy of the bits.
func (h *holders) encode() (b []byte, all bool) {
	if h.complete() {
		return nil, true
	}
	return append([]byte(nil), h.bits...), false
}

// holdersNow returns the holders of this peer's current state, reset
// first if the state changed since they were collected.
func (s *state) holdersNow() *holders {
	if h := &s.held; h.digest != s.digest || h.n != len(s.view) || h.bits == nil {
		h.reset(s.digest, len(s.view), s.selfPos)
	}
	return &s.held
}

// heldBy records that addr holds this peer's current state.
func (s *state) heldBy(addr string) {
	if i, ok := s.pos(addr); ok {
		s.holdersNow().add(i)
	}
}

// pos returns addr's index in the view.
func (s *state) pos(addr string) (int, bool) {
	return slices.BinarySearch(s.view, addr)
}

// digestRequest is the first message of an exchange: the state digest
// and its holders as this peer knows them (one byte once all hold it).
func (s *state) digestRequest() *meshpb.SyncRequest {
	b, all := s.holdersNow().encode()
	return &meshpb.SyncRequest{Cluster: s.cfg.ClusterName, Digest: s.digest, Holders: b, AllHold: all}
}

// answerSame answers a digest request of this peer's own state: it takes
// the requester's holders and sends back those the requester lacked. No
// digest and no version vector: that says the states are equal.
func (s *state) answerSame(req *meshpb.SyncRequest) *meshpb.SyncResponse {
	h := s.holdersNow()
	resp := &meshpb.SyncResponse{Heartbeat: s.heartbeat}
	if req.GetAllHold() {
		h.fill()
		return resp
	}
	h.union(req.GetHolders())
	if h.complete() {
		resp.AllHold = true
	} else if h.beyond(req.GetHolders()) {
		resp.Holders, _ = h.encode()
	}
	return resp
}

// learnSame takes the answer to a digest request that found the states
// equal: the partner holds ours, and so do the holders it names.
func (s *state) learnSame(ex *exchange, resp *meshpb.SyncResponse) {
	if ex.req.GetDigest() != s.digest {
		return // our state changed meanwhile: the answer is about the old one
	}
	h := s.holdersNow()
	if resp.GetAllHold() {
		h.fill()
		return
	}
	h.union(resp.GetHolders())
	s.heldBy(ex.addr)
}

// converged reports whether every listed member is known to hold this
// peer's state and none is in doubt: no observer alerts on one, and this
// peer's own probes of its subjects answer.
func (s *state) converged() bool {
	if !s.holdersNow().complete() || s.det.doubts() {
		return false
	}
	for a := range s.reps.by {
		if _, listed := s.pos(a); listed && len(s.reps.alerts(a)) > 0 {
			return false
		}
	}
	return true
}
