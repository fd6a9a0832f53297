package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gossipmesh/mesh/peer"
)

// Config configures an Agent. Each field is one flag of `mesh agent`, and
// errors name the flag (--bind, --join...), so that the CLI can print them
// as they are.
type Config struct {
	// Bind is the address the gRPC server listens on, "host:port"; gossip
	// and health checks share it. Port 0 picks a free port. The admin API
	// is not served there: see Admin.
	Bind string
	// Advertise is the address other peers dial, and so this peer's id;
	// port 0 stands for the port bound. Default: the address bound (Bind
	// with a host name resolved and port 0 replaced). Required when Bind's
	// host is unspecified (0.0.0.0, [::]), which no one can dial.
	Advertise string
	// Join lists seeds, "host:port" each. A host name stands for every
	// address it resolves to and is re-resolved with the seed retry
	// backoff (Period doubling to 30 × Period) for as long as the agent
	// runs, so that a DNS name of a growing set (a Kubernetes headless
	// service) finds members that start later.
	Join []string
	// Name and Tags are the agent's initial meta.
	Name string
	Tags map[string]string
	// Period is the gossip round (peer.PeerConfig.PingPeriod); 0 means
	// peer.DefaultPingPeriod. Every agent of a cluster should use the same.
	Period time.Duration
	// RPCTimeout is peer.PeerConfig.RPCTimeout: how long a gossip call may
	// take; 0 means Period. Raise it above the network's worst round-trip
	// time (a WAN, a jittery link), or every slow answer counts as a
	// failed exchange.
	RPCTimeout time.Duration
	// Cluster is peer.PeerConfig.ClusterName: agents of differently named
	// clusters refuse to merge.
	Cluster string
	// Snapshot, when set, is a file where the agent keeps the addresses of
	// the members it knows (alive or failed; not those that left), written
	// whenever they change. On start the agent takes them as seeds, so a
	// restarted agent rejoins without Join. Its directory must exist.
	Snapshot string
	// Metrics, when set, is the "host:port" where Prometheus metrics are
	// served at /metrics. Port 0 picks a free port.
	Metrics string
	// TLSCert, TLSKey and TLSCA are PEM files: this agent's certificate
	// (leaf first, then any intermediates), its private key, and the CAs
	// it trusts (a bundle may hold several, for rotation). Set all three
	// or none. With them every gossip and health connection is mutual
	// TLS, and only a member's own certificate can sign its entries (see
	// meshtls). The admin API is TLS only on a TCP Admin with AdminCA. The agent reloads them on Agent.ReloadTLS (SIGHUP in
	// `mesh agent`) and when their contents change.
	TLSCert, TLSKey, TLSCA string

	// Admin is where the admin API (meshpb.MeshAdmin: what the client
	// commands call) listens: "unix:PATH" (or an absolute PATH) for a unix
	// socket that only this process's user and root can connect to, or
	// "host:port" for TCP. Empty: no admin API. A TCP address that is not
	// loopback needs AdminCA, since anyone who reaches it could make the
	// agent leave. See ParseAdmin and docs/SECURITY.md.
	Admin string
	// AdminCA is a PEM bundle of the CAs that issue operators' (admin)
	// certificates. With it the admin API (on a TCP Admin address) is
	// mutual TLS: the agent presents its TLSCert, and a client must
	// present a certificate of an AdminCA. It must share no certificate
	// with TLSCA, so that a member's certificate is never an admin's. It
	// is reloaded with the TLS files.
	AdminCA string

	// EventHandlers run a program on each membership event (see
	// EventHandler). At most MaxHandlerProcs of each run at once; the
	// events of one member reach each handler in order; none ever delays
	// gossip, nor another handler.
	EventHandlers []EventHandler
	// HandlerTimeout bounds one run of an event handler; the handler (and
	// every process it started) is then killed. Default:
	// DefaultHandlerTimeout.
	HandlerTimeout time.Duration

	// MaxMsgBytes bounds every gRPC message the agent receives or sends;
	// a larger one fails with ResourceExhausted before the handler runs.
	// Default: the peer's MaxMessageBytes (about 44 MB with the peer's
	// default limits: its largest honest message).
	MaxMsgBytes int

	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Resolver resolves Join host names. Default: net.DefaultResolver.
	Resolver Resolver
}

// Resolver resolves a host name to addresses; *net.Resolver is one.
// LookupHost must honour ctx's deadline.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Validate reports every problem with c at once, each naming its flag; it
// changes nothing and touches no network.
func (c Config) Validate() error {
	var errs []error
	bindHost, _, err := splitHostPort(c.Bind, true)
	if err != nil {
		errs = append(errs, fmt.Errorf("--bind: %w", err))
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort(c.Advertise, true); err != nil {
			errs = append(errs, fmt.Errorf("--advertise: %w", err))
		} else if h, _, _ := net.SplitHostPort(c.Advertise); unspecified(h) {
			errs = append(errs, fmt.Errorf("--advertise %q: other peers cannot dial an unspecified address; give this host's address", c.Advertise))
		}
	} else if err == nil && unspecified(bindHost) {
		errs = append(errs, fmt.Errorf("--bind %q listens on every interface; set --advertise to the address other peers should dial", c.Bind))
	}
	for _, j := range c.Join {
		if _, _, err := splitHostPort(j, false); err != nil {
			errs = append(errs, fmt.Errorf("--join: %w", err))
		}
	}
	for k := range c.Tags {
		if k == "" {
			errs = append(errs, errors.New("--tag: a tag needs a key (k=v)"))
		}
	}
	if c.Period < 0 || (c.Period > 0 && c.Period < time.Millisecond) {
		errs = append(errs, fmt.Errorf("--period %v: must be at least 1ms", c.Period))
	}
	if c.RPCTimeout < 0 {
		errs = append(errs, fmt.Errorf("--rpc-timeout %v: must not be negative (0 means --period)", c.RPCTimeout))
	}
	if c.Snapshot != "" {
		dir := filepath.Dir(c.Snapshot)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("--snapshot %q: directory %q does not exist", c.Snapshot, dir))
		}
	}
	if c.Metrics != "" {
		if _, _, err := splitHostPort(c.Metrics, true); err != nil {
			errs = append(errs, fmt.Errorf("--metrics: %w", err))
		}
	}
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validateAdmin()...)
	for _, h := range c.EventHandlers {
		if err := h.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.HandlerTimeout < 0 {
		errs = append(errs, fmt.Errorf("--event-handler-timeout %v: must not be negative (0 means %v)", c.HandlerTimeout, DefaultHandlerTimeout))
	}
	if c.MaxMsgBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxMsgBytes %d: negative; use 0 for the default", c.MaxMsgBytes))
	}
	if len(errs) == 0 {
		// The peer's own rules, on the address it will have (a port to be
		// picked stands as 1).
		pc := c.peerConfig(provisional(c.advertise()))
		if err := pc.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("peer config: %w", err))
		}
	}
	return errors.Join(errs...)
}

// tls reports whether mutual TLS is configured.
func (c Config) tls() bool { return c.TLSCert != "" || c.TLSKey != "" || c.TLSCA != "" }

// validateTLS checks that the TLS files are given all together and exist;
// their contents are checked when New loads them.
func (c Config) validateTLS() []error {
	if !c.tls() {
		return nil
	}
	var errs, missing []error
	for _, f := range []struct{ flag, path string }{{"--tls-cert", c.TLSCert}, {"--tls-key", c.TLSKey}, {"--tls-ca", c.TLSCA}} {
		if f.path == "" {
			missing = append(missing, fmt.Errorf("%s is missing: mutual TLS needs --tls-cert, --tls-key and --tls-ca together", f.flag))
		} else if st, err := os.Stat(f.path); err != nil || st.IsDir() {
			errs = append(errs, fmt.Errorf("%s %q: not a readable file", f.flag, f.path))
		}
	}
	return append(missing, errs...)
}

// validateAdmin checks the admin address against the credentials that
// protect it.
func (c Config) validateAdmin() []error {
	if c.Admin == "" {
		if c.AdminCA != "" {
			return []error{fmt.Errorf("--admin-ca %q: there is no admin address to protect; set --admin host:port", c.AdminCA)}
		}
		return nil
	}
	ad, err := ParseAdmin(c.Admin)
	if err != nil {
		return []error{err}
	}
	var errs []error
	switch {
	case ad.Network == "unix" && c.AdminCA != "":
		errs = append(errs, fmt.Errorf("--admin-ca applies to a TCP --admin address; %s is a unix socket, which its file permissions protect (drop --admin-ca, or give --admin host:port)", c.Admin))
	case ad.Network == "tcp" && c.AdminCA == "" && !ad.Local():
		errs = append(errs, fmt.Errorf("--admin %s is not a loopback address: anyone who reaches it could make the agent leave; use a unix socket or 127.0.0.1, or require admin certificates with --admin-ca (and --tls-cert, --tls-key, --tls-ca)", c.Admin))
	case ad.Network == "tcp" && ad.Address == c.Bind && !strings.HasSuffix(c.Bind, ":0"):
		errs = append(errs, fmt.Errorf("--admin %s is the --bind address: the admin API needs an address of its own, off the gossip port", c.Admin))
	}
	if c.AdminCA != "" {
		if !c.tls() {
			errs = append(errs, fmt.Errorf("--admin-ca %q needs --tls-cert, --tls-key and --tls-ca: the agent presents its own certificate to admin clients", c.AdminCA))
		}
		if st, err := os.Stat(c.AdminCA); err != nil || st.IsDir() {
			errs = append(errs, fmt.Errorf("--admin-ca %q: not a readable file", c.AdminCA))
		}
	}
	return errs
}

// advertise returns the configured id, maybe with port 0.
func (c Config) advertise() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.Bind
}

// peerConfig maps c to the peer's configuration for id self.
func (c Config) peerConfig(self string) peer.PeerConfig {
	return peer.PeerConfig{
		SelfEndpoint: self,
		PingPeriod:   c.Period,
		RPCTimeout:   c.RPCTimeout,
		ClusterName:  c.Cluster,
		Logger:       c.logger(),
	}
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// withPort returns addr with port 0 replaced by port.
func withPort(addr string, port int) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil || p != "0" {
		return addr
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

func provisional(addr string) string { return withPort(addr, 1) }

// splitHostPort checks "host:port" with a numeric port in 1..65535 (or 0
// when zeroOK) and returns its parts.
func splitHostPort(addr string, zeroOK bool) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port (IPv6 as [::1]:7946)", addr)
	}
	n, err := strconv.Atoi(p)
	lo := 1
	if zeroOK {
		lo = 0
	}
	if err != nil || n < lo || n > 65535 {
		return "", 0, fmt.Errorf("%q: port must be a number in %d..65535", addr, lo)
	}
	return h, n, nil
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
