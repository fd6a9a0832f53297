package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
)

// PeerConfig configures a Peer. Every zero field means the documented
// default, most of them a multiple of PingPeriod, so one knob scales the
// whole protocol. Peers of one cluster should share PingPeriod: their
// observers expect a subject's heartbeat to advance every PingPeriod.
type PeerConfig struct {
	// SelfEndpoint is this peer's address and id, "host:port" (IPv6 as
	// "[::1]:7946"). Other peers dial it, so it must be reachable by them.
	SelfEndpoint string
	// PingPeriod is one gossip round. Default 1s. Shorter rounds detect
	// failures and spread updates sooner at proportionally more traffic.
	PingPeriod time.Duration

	// ClusterName, when set, must match on both sides of every exchange:
	// peers of differently named clusters refuse to merge. Default "".
	ClusterName string
	// Fanout is how many overlay neighbours a peer runs anti-entropy with
	// per round. Default 1. Each extra partner adds one exchange per round
	// and speeds up the repair of missed news.
	Fanout int
	// Observers is K, how many distinct observers watch each member: one
	// per hash ring of the addresses (everyone, up to K+1 members), so
	// that every peer watches about K members, contacts two of them a
	// round in turn, and tells news to them (docs/PROTOCOL.md).
	// A member is removed once a majority of its available observers (at least
	// two) alert on it. Default 8. More observers make a removal need more
	// independent alerts and spread news in fewer hops, at more
	// connections (about 2K a peer, in and out) and a longer wait before
	// every observer of a silent member has probed it (about K/2 rounds).
	Observers int
	// Expiry is how long an observer may go without reaching a member it
	// watches (a probe answered with an advanced heartbeat) before it
	// alerts on it; a refused probe alerts at once. Default:
	// max(5, ⌈1.25·log2(N+1)⌉) × PingPeriod for N members (5 periods up
	// to 15 members, 8 at 64, 10 at 256), and never below twice the call
	// timeout (RPCTimeout or more: below; rounded up to whole periods), so
	// that a slow network's probes have time to come back. Raising it makes removal of a silent host slower
	// and alerts under message loss rarer.
	Expiry time.Duration
	// RPCTimeout bounds each Sync call while answers come quickly.
	// Default PingPeriod. A peer measures the round trips of its answered
	// calls and waits longer while they are slow (a loaded machine), up
	// to 4 × RPCTimeout, as TCP sets its retransmission timeout; calls
	// that time out (a silent partner) are not measured. Raise it where a
	// round trip can take longer than a period; the default Expiry grows
	// with it (above).
	RPCTimeout time.Duration
	// DialTimeout bounds connecting to a partner (TCP, HTTP/2 and TLS
	// handshakes) before a call's RPCTimeout starts, so that a first call
	// to a live partner does not fail because the handshakes ate its
	// RPCTimeout, as they do on a loaded machine. A refused connection
	// fails at once. Default 2 × RPCTimeout.
	DialTimeout time.Duration
	// MaxRetryInterval caps the backoff between attempts to reach a seed
	// or a failed peer (to heal partitions). Default 30 × PingPeriod.
	MaxRetryInterval time.Duration
	// TombstoneTTL is how long a removed member's tombstone is kept before
	// it is purged. Default 600 × PingPeriod. Longer keeps memory for
	// departed peers longer; shorter is safe too (see crdt's floor).
	TombstoneTTL time.Duration
	// MaxMetaBytes bounds the encoded size of a PeerMeta (name and tags).
	// Default 16 KiB; memberlist allows 512 bytes.
	MaxMetaBytes int
	// MaxDeltaEntries bounds the entries in one Sync message; larger
	// differences take several rounds. Default 1024. A received message
	// with more is refused, unless all its entries share one Lamport time
	// (a sender's cut includes every write of the lowest time, see
	// crdt.Map.Delta), so peers of one cluster should share it.
	MaxDeltaEntries int
	// MaxMembers bounds the entries a peer holds, live members and
	// tombstones together: a received message that would create more is
	// refused whole, and the sender told why. Default 10,000. It caps the
	// memory a flood of fake members can take (at most about MaxMembers ×
	// (MaxMetaBytes + MaxCredentialBytes + 1 KiB)); a cluster that reaches
	// it admits no new member until tombstones are purged (TombstoneTTL).
	MaxMembers int

	// Authority, when set, signs this peer's own entries and checks that
	// every ALIVE or LEFT entry received was signed by the peer it names,
	// however many peers relayed it. Default nil: no such check (anyone who
	// can reach the port can write any entry). See meshtls for one built
	// on mutual TLS certificates.
	Authority Authority

	// DialOptions are used for every outgoing connection of the default
	// gRPC transport. Default: insecure transport credentials.
	DialOptions []grpc.DialOption
	// Transport carries Sync calls. Default: gRPC with DialOptions.
	Transport Transport
	// Clock reads time. Default: the system clock.
	Clock Clock
	// Rand picks partners and draws this run's incarnation id (see
	// docs/PROTOCOL.md): give every run of a peer its own seed. Default:
	// seeded from SelfEndpoint and the time.
	Rand *rand.Rand
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger

	autoExpiry bool // Expiry was left to the default, which scales with N
}

// DefaultPingPeriod is the round length when PingPeriod is zero.
const DefaultPingPeriod = time.Second

// DefaultExpiry is the Expiry a peer with the default RPCTimeout uses,
// when Expiry is zero, while it knows n live members (itself included):
// max(5, ⌈1.25·log2(n+1)⌉) × period. See PeerConfig.DefaultExpiry for
// other RPCTimeouts.
func DefaultExpiry(n int, period time.Duration) time.Duration {
	k := max(5, int(math.Ceil(1.25*math.Log2(float64(n+1)))))
	return time.Duration(k) * period
}

// DefaultExpiry is the Expiry a peer with config c uses, when c.Expiry is
// zero, while it knows n live members (itself included): the package's
// DefaultExpiry, and at least 2 × RPCTimeout rounded up to whole periods.
func (c PeerConfig) DefaultExpiry(n int) time.Duration {
	d := sanitize(c).withDefaults()
	return defaultExpiry(n, d.PingPeriod, d.RPCTimeout)
}

// defaultExpiry is PeerConfig.DefaultExpiry for a config with defaults set.
func defaultExpiry(n int, period, rpcTimeout time.Duration) time.Duration {
	floor := (2*rpcTimeout + period - 1) / period * period
	return max(DefaultExpiry(n, period), floor)
}

// DefaultObservers is Observers when it is zero.
const DefaultObservers = 8

// DefaultMaxMembers is MaxMembers when it is zero.
const DefaultMaxMembers = 10_000

// Size limits of the strings and credentials of one received entry; a
// message holding an entry beyond them is refused.
const (
	// MaxAddrBytes bounds an address: a 253-byte DNS name (or a bracketed
	// IPv6 address with a zone), a colon and a 5-digit port.
	MaxAddrBytes = 261
	// MaxWriterBytes bounds a writer id, "address#incarnation".
	MaxWriterBytes = MaxAddrBytes + 1 + 16
	// MaxCredentialBytes bounds an entry's certificate and signature
	// together (an Authority's proof). A P-256 leaf and its signature take
	// about 600 bytes, an RSA-4096 leaf and intermediate about 3 KiB.
	MaxCredentialBytes = 16 << 10
)

// MaxMessageBytes is the largest Sync message, request or answer, that a
// peer with config c sends in honest operation: MaxDeltaEntries entries at
// their size limits, plus an age and a version-vector element per member,
// each under 1 KiB. It is about 44 MB with the defaults, while a steady
// exchange is 8 bytes plus one per member. gRPC servers and clients of the
// cluster should accept messages this large (grpc.MaxRecvMsgSize,
// grpc.MaxCallRecvMsgSize; the agent does), or an honest large delta
// fails every time; lower MaxMetaBytes or MaxDeltaEntries to lower it.
func (c PeerConfig) MaxMessageBytes() int {
	d := sanitize(c).withDefaults()
	return d.MaxDeltaEntries*(d.MaxMetaBytes+MaxCredentialBytes+1<<10) + d.MaxMembers*(1<<10) + 64<<10
}

// withDefaults returns a copy of c with every zero field set.
func (c PeerConfig) withDefaults() PeerConfig {
	if c.PingPeriod == 0 {
		c.PingPeriod = DefaultPingPeriod
	}
	p := c.PingPeriod
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Expiry == 0 {
		c.Expiry, c.autoExpiry = 5*p, true
	}
	set(&c.RPCTimeout, p)
	set(&c.DialTimeout, 2*c.RPCTimeout)
	set(&c.MaxRetryInterval, 30*p)
	set(&c.TombstoneTTL, 600*p)
	if c.Fanout == 0 {
		c.Fanout = 1
	}
	if c.Observers == 0 {
		c.Observers = DefaultObservers
	}
	if c.MaxMetaBytes == 0 {
		c.MaxMetaBytes = 16 << 10
	}
	if c.MaxDeltaEntries == 0 {
		c.MaxDeltaEntries = 1024
	}
	if c.MaxMembers == 0 {
		c.MaxMembers = DefaultMaxMembers
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Rand == nil {
		seed := uint64(time.Now().UnixNano())
		for _, b := range []byte(c.SelfEndpoint) {
			seed = seed*31 + uint64(b)
		}
		c.Rand = rand.New(rand.NewPCG(seed, seed>>1|1))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c at once; it changes nothing. Zero
// fields are fine (they mean defaults); negative ones are not.
func (c PeerConfig) Validate() error {
	var errs []error
	if err := ValidateEndpoint(c.SelfEndpoint); err != nil {
		errs = append(errs, fmt.Errorf("SelfEndpoint: %w", err))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"PingPeriod", c.PingPeriod}, {"Expiry", c.Expiry}, {"RPCTimeout", c.RPCTimeout},
		{"DialTimeout", c.DialTimeout}, {"MaxRetryInterval", c.MaxRetryInterval}, {"TombstoneTTL", c.TombstoneTTL}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative; use 0 for the default or a positive duration", d.name, d.v))
		}
	}
	if c.PingPeriod > 0 && c.PingPeriod < time.Millisecond {
		errs = append(errs, fmt.Errorf("PingPeriod: %v is below the 1ms minimum", c.PingPeriod))
	}
	d := c.withDefaults()
	if c.Expiry > 0 && c.Expiry < 2*d.PingPeriod {
		errs = append(errs, fmt.Errorf("%s: %v must be at least 2 × PingPeriod (%v), or probes cannot fail in three rounds within it", "Expiry", c.Expiry, 2*d.PingPeriod))
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"Fanout", c.Fanout}, {"Observers", c.Observers}, {"MaxMetaBytes", c.MaxMetaBytes}, {"MaxDeltaEntries", c.MaxDeltaEntries}, {"MaxMembers", c.MaxMembers}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %d is negative; use 0 for the default", n.name, n.v))
		}
	}
	return errors.Join(errs...)
}

// ValidateEndpoint checks that addr is "host:port" with a numeric port in
// 1..65535, as peers use for ids and dialing.
func ValidateEndpoint(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (IPv6 as [::1]:7946): %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if len(addr) > MaxAddrBytes {
		return fmt.Errorf("%.40q... is %d bytes, above MaxAddrBytes (%d)", addr, len(addr), MaxAddrBytes)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be a number in 1..65535", addr)
	}
	return nil
}
