package peer

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// This file converts and checks membership entries and version vectors on
// the wire: decoding with its limits, the owner's signatures, the hash
// that builds the state digest.

// signedBytes is what an Authority signs for an entry: its wire form
// without credentials, marshalled deterministically.
func signedBytes(e entry) []byte {
	pe := encodeEntry(e)
	pe.Cert, pe.Sig = nil, nil
	if pe.Meta == nil { // a receiver decodes a missing meta as empty
		pe.Meta = &meshpb.PeerMeta{}
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(pe)
	return b
}

// sign attaches this peer's credentials to an entry it writes about itself.
func (s *state) sign(e *entry) {
	if s.cfg.Authority == nil {
		return
	}
	cert, sig, err := s.cfg.Authority.Sign(signedBytes(*e))
	if err != nil {
		// Peers with a verifying Authority will refuse the entry; say why.
		s.log.Error("cannot sign own entry; peers checking signatures will refuse it", "err", err)
		return
	}
	e.Value.cred = newCredentials(cert, sig)
}

// verify checks the owner's signature on ALIVE and LEFT entries.
func (s *state) verify(e entry) error {
	if s.cfg.Authority == nil || e.Value.state == meshpb.State_STATE_FAILED {
		return nil
	}
	cert, sig := e.Value.credentials()
	if err := s.cfg.Authority.Verify(e.Key, signedBytes(e), cert, sig); err != nil {
		return fmt.Errorf("%w: entry for %s (%v, stamp %v) is not signed by that peer: %w", errBadRequest, e.Key, e.Value.state, e.Stamp, err)
	}
	return nil
}

// decodeEntry converts and checks one wire entry. Live and left entries
// are written only by the peer they describe; anyone may write failed.
func (s *state) decodeEntry(pe *meshpb.Entry) (entry, error) {
	addr, w := pe.GetAddr(), pe.GetWriter()
	if err := ValidateEndpoint(addr); err != nil {
		return entry{}, fmt.Errorf("%w: entry address: %w", errBadRequest, err)
	}
	limit := MaxWriterBytes
	if pe.GetState() == meshpb.State_STATE_FAILED {
		limit += len(failedMark) // see failedStamp
	}
	if len(w) > limit {
		return entry{}, fmt.Errorf("%w: entry for %s: writer id is %d bytes, above MaxWriterBytes (%d)", errBadRequest, addr, len(w), limit)
	}
	cert, sig := pe.GetCert(), pe.GetSig()
	if n := len(cert) + len(sig); n > MaxCredentialBytes {
		return entry{}, fmt.Errorf("%w: entry for %s: certificate and signature are %d bytes, above MaxCredentialBytes (%d)", errBadRequest, addr, n, MaxCredentialBytes)
	}
	st := pe.GetState()
	switch st {
	case meshpb.State_STATE_ALIVE, meshpb.State_STATE_LEFT:
		if ownerOf(w) != addr {
			return entry{}, fmt.Errorf("%w: entry for %s in state %v written by %s; only a peer itself writes that", errBadRequest, addr, st, w)
		}
	case meshpb.State_STATE_FAILED:
		cert, sig = nil, nil // never checked, so neither kept nor relayed
	default:
		return entry{}, fmt.Errorf("%w: entry for %s has unknown state %d", errBadRequest, addr, st)
	}
	if t := pe.GetTime(); t > s.clock.Time()+maxClockJump {
		return entry{}, fmt.Errorf("%w: entry for %s stamped %d, more than %d ahead of this peer's clock (%d)", errBadRequest, addr, t, uint64(maxClockJump), s.clock.Time())
	}
	meta := pe.GetMeta()
	if meta == nil {
		meta = &meshpb.PeerMeta{}
	}
	if n := metaSize(meta); n > s.cfg.MaxMetaBytes {
		return entry{}, fmt.Errorf("%w: meta of %s is %d bytes, above MaxMetaBytes (%d)", errBadRequest, addr, n, s.cfg.MaxMetaBytes)
	}
	return entry{Key: addr, Stamp: crdt.Stamp{Time: pe.GetTime(), Writer: w}, Deleted: st != meshpb.State_STATE_ALIVE,
		Value: member{meta: meta, state: st, cred: newCredentials(cert, sig), pending: pe.GetPending() && st == meshpb.State_STATE_ALIVE}}, nil
}

// metaSize is proto.Size(m) without reflection: every received entry
// carries a meta, and a joiner checks thousands.
func metaSize(m *meshpb.PeerMeta) int {
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		return proto.Size(m)
	}
	n := 0
	if name := m.GetName(); name != "" {
		n += 1 + protowire.SizeBytes(len(name))
	}
	for k, v := range m.GetTags() {
		// A map entry is a message of key (1) and value (2), both always
		// encoded.
		e := 1 + protowire.SizeBytes(len(k)) + 1 + protowire.SizeBytes(len(v))
		n += 1 + protowire.SizeBytes(e)
	}
	return n
}

// entryHash mixes an entry's identity (key, stamp, deletion) into 64 bits.
// A stamp names one write, so the value need not be hashed.
func entryHash(e entry) uint64 {
	h := fnv64(fnv64(14695981039346656037, e.Key), e.Stamp.Writer)
	h ^= mix64(e.Stamp.Time)
	if e.Deleted {
		h ^= 0x9e3779b97f4a7c15
	}
	return mix64(h)
}

func fnv64(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h ^ 0xff // separates consecutive strings
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func covers(v crdt.VersionVector, cut uint64) crdt.VersionVector {
	if cut > 0 {
		return v.Capped(cut)
	}
	return v
}

func encodeVersion(v crdt.VersionVector) []*meshpb.WriterTime {
	out := make([]*meshpb.WriterTime, 0, len(v))
	for _, w := range slices.Sorted(maps.Keys(v)) { // sorted: same state, same bytes
		out = append(out, &meshpb.WriterTime{Writer: w, Time: v[w]})
	}
	return out
}

// decodeVersion converts a wire version vector; a writer listed twice
// counts with its highest time.
func decodeVersion(in []*meshpb.WriterTime) (crdt.VersionVector, error) {
	v := make(crdt.VersionVector, len(in))
	for _, wt := range in {
		if wt.GetWriter() == "" || wt.GetTime() > crdt.MaxTime {
			return nil, fmt.Errorf("%w: version vector entry %q=%d", errBadRequest, wt.GetWriter(), wt.GetTime())
		}
		v.Observe(wt.GetWriter(), wt.GetTime())
	}
	return v, nil
}

func encodeEntries(es []entry) []*meshpb.Entry {
	out := make([]*meshpb.Entry, len(es))
	for i, e := range es {
		out[i] = encodeEntry(e)
	}
	return out
}

func encodeEntry(e entry) *meshpb.Entry {
	cert, sig := e.Value.credentials()
	pe := &meshpb.Entry{Addr: e.Key, Time: e.Stamp.Time, Writer: e.Stamp.Writer, State: e.Value.state,
		Meta: e.Value.meta, Cert: cert, Sig: sig, Pending: e.Value.pending}
	if e.Deleted && e.Value.state == meshpb.State_STATE_ALIVE {
		pe.State = meshpb.State_STATE_FAILED
	}
	return pe
}
