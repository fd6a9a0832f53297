package sim

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// What a trace record says happened.
type recKind uint8

const (
	recRound   recKind = iota + 1 // a: peer, x: outgoing calls
	recSend                       // a → b request, x: bytes
	recAnswer                     // a answered b, x: bytes
	recDeliver                    // a applied b's answer
	recFail                       // a's call to b failed; x: 1 if by deadline
	recDrop                       // a → b message dropped; x: 1 loss, 2 partition, 3 crashed, 4 deadline passed
	recPush                       // a pushed its leave to b
	recJoin                       // peer a saw b join, x: meta id
	recUpdate                     // peer a saw b's meta change, x: meta id
	recLeave                      // peer a saw b leave
	recFailed                     // peer a saw b removed as failed; x: 1 if a declared it
	recFault                      // a fault; see faultNames
	recAction                     // a scenario action
)

// Fault kinds in recFault records' x.
const (
	faultCrash uint64 = iota + 1
	faultRestart
	faultLeave
	faultStart
	faultMeta
	faultPartition
	faultHeal
	faultLoss
	faultSlow
	faultStall
)

var faultNames = map[uint64]string{faultCrash: "crash", faultRestart: "restart", faultLeave: "leave",
	faultStart: "start", faultMeta: "set meta", faultPartition: "partition", faultHeal: "heal",
	faultLoss: "set loss", faultSlow: "slow", faultStall: "stall"}

// rec is one trace record: small and fixed-size so that keeping the last
// few thousand costs nothing per event.
type rec struct {
	at   int64
	kind recKind
	a, b int32
	x    uint64
}

// tracer keeps the trace digest and a ring of recent records.
type tracer struct {
	h    uint64 // FNV-1a over every record and message, 64-bit words at a time
	ring []rec
	next uint64 // records written so far
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func newTracer(size int) tracer {
	return tracer{h: fnvOffset, ring: make([]rec, size)}
}

func (t *tracer) word(x uint64) { t.h = (t.h ^ x) * fnvPrime }

// bytes folds b into the digest. It is FNV-1a over little-endian 64-bit
// words (then the tail bytes): an order of magnitude faster than per-byte
// FNV on the 5 KB age vectors of a 5,000-peer cluster, and as sensitive to
// any change of content or order.
func (t *tracer) bytes(b []byte) {
	t.word(uint64(len(b)))
	for len(b) >= 8 {
		t.word(binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	for _, c := range b {
		t.word(uint64(c))
	}
}

func (t *tracer) add(r rec) {
	t.word(uint64(r.at))
	t.word(uint64(r.kind)<<56 | uint64(uint32(r.a))<<24 ^ uint64(uint32(r.b)))
	t.word(r.x)
	t.ring[t.next%uint64(len(t.ring))] = r
	t.next++
}

// recent returns up to max of the last records that involve any of slots
// (all records when slots is empty), oldest first, formatted.
func (t *tracer) recent(s *Sim, slots []int32, max int) []string {
	var out []string
	n := uint64(len(t.ring))
	for i := uint64(0); i < n && i < t.next && len(out) < max; i++ {
		r := t.ring[(t.next-1-i)%n]
		if len(slots) > 0 && !involves(r, slots) {
			continue
		}
		out = append(out, s.format(r))
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func involves(r rec, slots []int32) bool {
	for _, s := range slots {
		if r.a == s || r.b == s || r.kind == recFault && (r.x == faultPartition || r.x == faultHeal || r.x == faultLoss) {
			return true
		}
	}
	return false
}

func (s *Sim) name(slot int32) string {
	if slot < 0 || int(slot) >= len(s.nodes) {
		return "-"
	}
	return s.nodes[slot].addr
}

func (s *Sim) format(r rec) string {
	at := fmt.Sprintf("%9.3fP", float64(r.at)/float64(s.period))
	a, b := s.name(r.a), s.name(r.b)
	var what string
	switch r.kind {
	case recRound:
		what = fmt.Sprintf("%s round, %d calls", a, r.x)
	case recSend:
		what = fmt.Sprintf("%s → %s request, %d bytes", a, b, r.x)
	case recAnswer:
		what = fmt.Sprintf("%s → %s answer, %d bytes", a, b, r.x)
	case recDeliver:
		what = fmt.Sprintf("%s applied answer of %s", a, b)
	case recFail:
		what = fmt.Sprintf("%s call to %s failed", a, b)
		if r.x == 1 {
			what += " (deadline)"
		}
	case recDrop:
		why := [...]string{"?", "lost", "partitioned", "addressee down", "requester gone", "too late"}[min(r.x, 5)]
		what = fmt.Sprintf("%s → %s dropped: %s", a, b, why)
	case recPush:
		what = fmt.Sprintf("%s pushes its leave to %s", a, b)
	case recJoin:
		what = fmt.Sprintf("%s sees %s join, meta #%d", a, b, r.x)
	case recUpdate:
		what = fmt.Sprintf("%s sees %s update, meta #%d", a, b, r.x)
	case recLeave:
		what = fmt.Sprintf("%s sees %s leave", a, b)
	case recFailed:
		what = fmt.Sprintf("%s sees %s failed", a, b)
		if r.x == 1 {
			what = fmt.Sprintf("%s DECLARES %s failed", a, b)
		}
	case recFault:
		what = fmt.Sprintf("FAULT %s %s", faultNames[r.x], a)
	case recAction:
		what = "action"
	}
	return at + "  " + what
}

// Violation is one invariant that failed.
type Violation struct {
	At    time.Duration // virtual time since the start
	Check string        // which invariant
	Msg   string
	Trace []string // the last records involving the peers concerned
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s at %v: %s", v.Check, v.At, v.Msg)
	for _, l := range v.Trace {
		b.WriteString("\n    ")
		b.WriteString(l)
	}
	return b.String()
}
