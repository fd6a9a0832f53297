package peer

import (
	"time"

	"github.com/gossipmesh/mesh/meshpb"
)

// EventType says what happened to a member.
type EventType int

const (
	EventJoin   EventType = iota + 1 // a member appeared (or came back)
	EventUpdate                      // a member changed its meta
	EventLeave                       // a member left gracefully
	EventFailed                      // a member was declared failed
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	}
	return "unknown"
}

// Event is one change of membership as this peer saw it.
type Event struct {
	Type EventType
	Addr string
	// Meta is the member's meta after a join or update, and its last
	// known meta on leave or failure. Do not modify it.
	Meta *meshpb.PeerMeta
	Time time.Time
	// Decided is set on an EventFailed when this peer decided the removal
	// on the alerts it holds, rather than learned it from another peer.
	// Every peer decides on the same alerts, so several may.
	Decided bool
}

// Stats counts protocol activity since the peer was created.
type Stats struct {
	Rounds        uint64 // rounds run
	StarvedRounds uint64 // rounds that ran late; no alerts on them
	SyncErrors    uint64 // outgoing exchanges that failed
	// Suspicions counts the alerts this peer raised on members it
	// observes and could not reach; SuspicionsRefuted, those it cleared
	// because it reached the member again. A member is removed only when
	// enough of its observers alert (docs/PROTOCOL.md).
	Suspicions        uint64
	SuspicionsRefuted uint64
	Refutations       uint64 // tombstones of this peer it overrode
	// Alerting is how many members this peer alerts on now.
	Alerting int
}

// Member is one entry of the membership map as Peer.Members reports it.
type Member struct {
	Addr string
	// Meta is the member's meta; for a removed member, the last one known.
	Meta  *meshpb.PeerMeta
	State meshpb.State
}

// View is a consistent snapshot of a peer's membership, read at once.
type View struct {
	Members   []Member // sorted by address, removed members included
	Digest    uint64   // as ViewDigest
	Converged bool     // as Converged
}
