package peer

import (
	"sync"

	"github.com/gossipmesh/mesh/meshpb"
)

// A round allocates an age vector per request (N bytes) and an answer's
// fresher ages and their indexes: in a simulator of thousands of peers,
// most of a round's garbage, and in fresh memory, whose page faults cost
// more than the copies. A simulator knows when a message is dead and can
// hand its buffers back with Recycle; the machines take them first. Peer
// never recycles (gRPC owns its messages), so its machines always
// allocate.

// Recycle hands back the age vectors of a request or an answer that
// nobody will read again: after Machine.Answer returned for a request,
// after Machine.Deliver for an answer. It clears those fields of m.
// Messages of other types, and fields that are empty, are ignored.
func Recycle(m any) {
	switch m := m.(type) {
	case *meshpb.SyncRequest:
		denseBufs.put(m.Ages)
		m.Ages = nil
	case *meshpb.SyncResponse:
		fresherBufs.put(m.FresherAges)
		indexBufs.put(m.FresherIndex)
		m.FresherAges, m.FresherIndex = nil, nil
	}
}

// Dense vectors (N bytes) and fresher ages (a few hundred) pool apart,
// so that a small buffer never stands in the way of a large request.
var (
	denseBufs   bufPool[byte]
	fresherBufs bufPool[byte]
	indexBufs   bufPool[uint32]
)

// bufPool is a small LIFO of buffers. Unlike a sync.Pool it allocates
// nothing to put one back.
type bufPool[T any] struct {
	mu   sync.Mutex
	free [][]T
}

// maxPooled bounds the buffers kept: a simulator has a few messages in
// flight per peer, and a recycled buffer is taken again within the round.
const maxPooled = 1024

// get returns a buffer of length n with unspecified content, to be
// overwritten whole.
func (p *bufPool[T]) get(n int) []T {
	p.mu.Lock()
	if k := len(p.free); k > 0 && cap(p.free[k-1]) >= n {
		b := p.free[k-1][:n]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return make([]T, n)
}

func (p *bufPool[T]) put(b []T) {
	if cap(b) == 0 {
		return
	}
	p.mu.Lock()
	if len(p.free) < maxPooled {
		p.free = append(p.free, b[:0])
	}
	p.mu.Unlock()
}

// copyInto returns a copy of s in a recycled buffer, nil when s is empty.
func copyInto[T any](p *bufPool[T], s []T) []T {
	if len(s) == 0 {
		return nil
	}
	b := p.get(len(s))
	copy(b, s)
	return b
}
