package sim

import (
	"fmt"
	"maps"
	"slices"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
)

// Wire says how a message crosses the simulated network.
type Wire int

const (
	// WireCopy encodes every message with proto.Marshal and hands the
	// addressee a copy decoded from the bytes, so that no two machines
	// ever share a message or anything in it. It is the default, and the
	// faithful mode: a machine that changed what it sent or received
	// could harm no other.
	WireCopy Wire = iota
	// WireShared hands the addressee the sender's message itself, and
	// computes its encoded size field by field instead of encoding it.
	// Machines never change a message or a meta after sending or
	// receiving it, so the run is the same event for event, with equal
	// bytes and trace digest (TestWireModesAgree, which would see a
	// machine that did), and every machine holds the one copy of each
	// address, writer id and meta: about half the CPU and half the memory
	// of WireCopy at 1,000 peers, where every peer holds every other.
	WireShared
)

func (w Wire) String() string {
	switch w {
	case WireCopy:
		return "copy"
	case WireShared:
		return "shared"
	}
	return fmt.Sprintf("Wire(%d)", int(w))
}

// ParseWire returns the Wire named s ("copy" or "shared").
func ParseWire(s string) (Wire, error) {
	for _, w := range []Wire{WireCopy, WireShared} {
		if w.String() == s {
			return w, nil
		}
	}
	return 0, fmt.Errorf("wire %q: want copy or shared", s)
}

// marshalOpts encodes map fields in key order.
var marshalOpts = proto.MarshalOptions{Deterministic: true}

// send carries a message across the network: it counts its encoded size,
// folds its content into the trace digest and returns what the addressee
// receives (see Wire).
func send[M proto.Message](s *Sim, msg M, fresh func() M) (M, int) {
	size := msgSize(msg)
	if s.cfg.Wire == WireCopy {
		b, err := marshalOpts.Marshal(msg)
		if err != nil {
			panic(fmt.Sprintf("sim: marshal %T: %v", msg, err))
		}
		if len(b) != size {
			// msgSize is what WireShared counts: it must agree with the
			// encoder on every message.
			panic(fmt.Sprintf("sim: %T encodes to %d bytes, msgSize says %d: fix msgSize for %v", msg, len(b), size, msg))
		}
		cp := fresh()
		if err := proto.Unmarshal(b, cp); err != nil {
			panic(fmt.Sprintf("sim: unmarshal %T: %v", msg, err))
		}
		msg = cp
	}
	s.tr.message(msg)
	size = onStream(msg, size)
	s.stats.Messages++
	s.stats.Bytes += uint64(size)
	return msg, size
}

// grpcPrefix is gRPC's length prefix of every message.
const grpcPrefix = 5

// onStream is what a message of encoded size costs on a Gossip stream, as
// the peer's default transport sends it: gRPC's prefix, and no From or
// Cluster in a probe or digest request (the stream's metadata names them).
func onStream(msg proto.Message, size int) int {
	if r, ok := msg.(*meshpb.SyncRequest); ok && !r.GetFull() && !r.GetPush() {
		size -= lenSize(2, r.GetFrom()) + lenSize(1, r.GetCluster())
	}
	return size + grpcPrefix
}

// msgSize is proto.Size of a SyncRequest or SyncResponse, computed
// without reflection.
func msgSize(m proto.Message) int {
	switch m := m.(type) {
	case *meshpb.SyncRequest:
		return requestSize(m)
	case *meshpb.SyncResponse:
		return responseSize(m)
	}
	return proto.Size(m)
}

func tagged(num protowire.Number, n int) int { return protowire.SizeTag(num) + n }

// lenSize is the size of a string or bytes field, taken without
// converting bytes to a string: that copy of every age vector was a
// quarter of a 5,000-peer round's garbage.
func lenSize[T string | []byte](num protowire.Number, s T) int {
	if len(s) == 0 {
		return 0
	}
	return tagged(num, protowire.SizeBytes(len(s)))
}

func varSize(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return tagged(num, protowire.SizeVarint(v))
}

func fixedSize(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return tagged(num, 8)
}

func boolSize(num protowire.Number, b bool) int {
	if !b {
		return 0
	}
	return tagged(num, 1)
}

func subSize(num protowire.Number, n int) int { return tagged(num, protowire.SizeBytes(n)) }

func versionSize(num protowire.Number, v []*meshpb.WriterTime) int {
	n := 0
	for _, wt := range v {
		n += subSize(num, lenSize(1, wt.GetWriter())+varSize(2, wt.GetTime()))
	}
	return n
}

func metaSize(m *meshpb.PeerMeta) int {
	n := lenSize(1, m.GetName())
	for k, v := range m.GetTags() {
		// Map entries always carry key and value, even empty ones.
		n += subSize(2, tagged(1, protowire.SizeBytes(len(k)))+tagged(2, protowire.SizeBytes(len(v))))
	}
	return n
}

func deltaSize(num protowire.Number, es []*meshpb.Entry) int {
	n := 0
	for _, e := range es {
		k := lenSize(1, e.GetAddr()) + varSize(2, e.GetTime()) + lenSize(3, e.GetWriter()) +
			varSize(4, uint64(e.GetState())) + lenSize(6, e.GetCert()) + lenSize(7, e.GetSig()) + boolSize(8, e.GetPending())
		if e.GetMeta() != nil {
			k += subSize(5, metaSize(e.GetMeta()))
		}
		n += subSize(num, k)
	}
	return n
}

func reportsSize(num protowire.Number, rs []*meshpb.Report) int {
	n := 0
	for _, r := range rs {
		n += subSize(num, lenSize(1, r.GetObserver())+lenSize(2, r.GetSubject())+varSize(3, r.GetSubjectTime())+
			lenSize(4, r.GetSubjectWriter())+boolSize(5, r.GetAlert())+varSize(6, r.GetTime()))
	}
	return n
}

func requestSize(m *meshpb.SyncRequest) int {
	return lenSize(1, m.GetCluster()) + lenSize(2, m.GetFrom()) + fixedSize(3, m.GetDigest()) +
		boolSize(5, m.GetFull()) + versionSize(6, m.GetVersion()) + deltaSize(7, m.GetDelta()) +
		varSize(9, m.GetClock()) + varSize(10, m.GetCut()) + boolSize(11, m.GetPush()) +
		reportsSize(14, m.GetReports()) + boolSize(15, m.GetProbe()) + lenSize(16, m.GetHolders()) +
		boolSize(17, m.GetAllHold()) + len(m.ProtoReflect().GetUnknown())
}

func responseSize(m *meshpb.SyncResponse) int {
	return fixedSize(1, m.GetDigest()) + versionSize(4, m.GetVersion()) + deltaSize(5, m.GetDelta()) +
		varSize(7, m.GetClock()) + varSize(8, m.GetFloor()) + varSize(9, m.GetCut()) +
		reportsSize(12, m.GetReports()) + varSize(13, m.GetHeartbeat()) + varSize(14, uint64(m.GetCode())) +
		lenSize(15, m.GetError()) + lenSize(16, m.GetHolders()) + boolSize(17, m.GetAllHold()) +
		len(m.ProtoReflect().GetUnknown())
}

// message folds a message's content into the digest, field by field in
// field order (a version vector in the order listed, map keys sorted):
// the same content gives the same digest in either Wire mode.
func (t *tracer) message(m proto.Message) {
	switch m := m.(type) {
	case *meshpb.SyncRequest:
		t.word(1)
		t.str(m.GetCluster())
		t.str(m.GetFrom())
		t.word(m.GetDigest())
		t.word(b2u(m.GetFull()))
		t.version(m.GetVersion())
		t.delta(m.GetDelta())
		t.word(m.GetClock())
		t.word(m.GetCut())
		t.word(b2u(m.GetPush()))
		t.reports(m.GetReports())
		t.word(b2u(m.GetProbe()))
		t.bytes(m.GetHolders())
		t.word(b2u(m.GetAllHold()))
	case *meshpb.SyncResponse:
		t.word(2)
		t.word(m.GetDigest())
		t.version(m.GetVersion())
		t.delta(m.GetDelta())
		t.word(m.GetClock())
		t.word(m.GetFloor())
		t.word(m.GetCut())
		t.reports(m.GetReports())
		t.word(m.GetHeartbeat())
		t.bytes(m.GetHolders())
		t.word(b2u(m.GetAllHold()))
	}
}

func (t *tracer) reports(rs []*meshpb.Report) {
	t.word(uint64(len(rs)))
	for _, r := range rs {
		t.str(r.GetObserver())
		t.str(r.GetSubject())
		t.word(r.GetSubjectTime())
		t.str(r.GetSubjectWriter())
		t.word(b2u(r.GetAlert()))
		t.word(r.GetTime())
	}
}

func (t *tracer) str(s string) { t.bytes(unsafe.Slice(unsafe.StringData(s), len(s))) }

func (t *tracer) version(v []*meshpb.WriterTime) {
	t.word(uint64(len(v)))
	for _, wt := range v {
		t.str(wt.GetWriter())
		t.word(wt.GetTime())
	}
}

func (t *tracer) delta(es []*meshpb.Entry) {
	t.word(uint64(len(es)))
	for _, e := range es {
		t.str(e.GetAddr())
		t.word(e.GetTime())
		t.str(e.GetWriter())
		t.word(uint64(e.GetState()))
		t.bytes(e.GetCert())
		t.bytes(e.GetSig())
		t.word(b2u(e.GetPending()))
		m := e.GetMeta()
		t.word(b2u(m != nil))
		t.str(m.GetName())
		tags := m.GetTags()
		t.word(uint64(len(tags)))
		if len(tags) == 1 {
			for k, v := range tags {
				t.str(k)
				t.str(v)
			}
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			t.str(k)
			t.str(tags[k])
		}
	}
}
