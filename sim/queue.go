package sim

// evKind says what an event does when it fires.
type evKind uint8

const (
	evRound    evKind = iota + 1 // a peer's gossip round
	evRequest                    // a Sync request reaches its addressee
	evResponse                   // an answer reaches the requester
	evFail                       // a call fails at the requester (deadline or error)
	evAction                     // a scenario action or a check
)

// event is one entry of the queue. Events fire in (at, seq) order; seq is
// the order of scheduling, so ties never depend on anything but the seed.
type event struct {
	at   int64 // virtual nanoseconds since the start
	seq  uint64
	kind evKind
	slot int32  // the node the event runs on
	inc  uint32 // that node's incarnation when scheduled (rounds)
	c    *call
	fn   func()
}

// queue is a binary min-heap of events by (at, seq). It is hand-rolled
// rather than container/heap to keep events unboxed: a 5,000-peer run
// schedules millions of them.
type queue []event

func (q queue) less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}

func (q *queue) push(e event) {
	*q = append(*q, e)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *queue) pop() event {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = event{} // drop references for the collector
	h = h[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}
