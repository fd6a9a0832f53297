package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/meshtls"
	"github.com/gossipmesh/mesh/meshtls/meshtlstest"
	"github.com/gossipmesh/mesh/peer"
)

// tlsWait bounds waits in these tests: generous, the machine is shared.
const tlsWait = 60 * time.Second

// await polls cond every 20ms until it holds or tlsWait passes, and
// returns how long it took.
func await(t *testing.T, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > tlsWait {
			t.Fatalf("%s: not within %v; last: %s", what, tlsWait, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tlsFiles writes a certificate of ca for host, and a bundle of cas, into
// a fresh directory, and returns a Config using them, bound to host.
func tlsFiles(t *testing.T, ca *meshtlstest.CA, host string, cas ...*meshtlstest.CA) (Config, string) {
	t.Helper()
	if len(cas) == 0 {
		cas = []*meshtlstest.CA{ca}
	}
	dir := t.TempDir()
	f := meshtlstest.WriteFiles(t, dir, ca.Issue(t, meshtlstest.Spec{Hosts: []string{host}}), cas...)
	return Config{Bind: net.JoinHostPort(host, "0"), TLSCert: f.Cert, TLSKey: f.Key, TLSCA: f.CA}, dir
}

// sees reports whether every agent sees exactly want alive.
func sees(agents []*running, want []string) func() (bool, string) {
	slices.Sort(want)
	return func() (bool, string) {
		var b strings.Builder
		ok := true
		for _, r := range agents {
			got := keysOf(r.a.Peer().GetMembers())
			if !slices.Equal(got, want) || !r.a.Peer().Converged() {
				ok = false
				fmt.Fprintf(&b, "%s sees %v (converged %v); ", r.a.Addr(), got, r.a.Peer().Converged())
			}
		}
		return ok, b.String() + fmt.Sprintf("want %v", want)
	}
}

func keysOf(m map[string]*meshpb.PeerMeta) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func addrsOf(agents ...*running) []string {
	var out []string
	for _, r := range agents {
		out = append(out, r.a.Addr())
	}
	return out
}

// viewOf is an agent's whole observable state, for before/after checks.
func viewOf(r *running) string {
	v := r.a.Peer().View()
	s := fmt.Sprintf("digest %x:", v.Digest)
	for _, m := range v.Members {
		s += fmt.Sprintf(" %s %v %s;", m.Addr, m.State, m.Meta.GetName())
	}
	return s
}

func tlsDial(t *testing.T, addr string, opt grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// With mutual TLS the honest agents converge; a process without a
// certificate of the cluster's CA can neither read membership, push
// entries nor join, through gossip or the admin API, and the honest
// cluster is unchanged by the attempts.
func TestTLSClusterRefusesStrangers(t *testing.T) {
	ca, rogueCA := meshtlstest.NewCA(t, "cluster ca"), meshtlstest.NewCA(t, "rogue ca")
	var agents []*running
	for i := range 3 {
		cfg, _ := tlsFiles(t, ca, "127.0.0.1")
		cfg.Name = fmt.Sprintf("honest-%d", i)
		if i > 0 {
			cfg.Join = []string{agents[0].a.Addr()}
		}
		agents = append(agents, start(t, cfg))
	}
	honest := addrsOf(agents...)
	took := await(t, "3 mTLS agents converge", sees(agents, honest))
	t.Logf("3 agents with mutual TLS converged in %v", took.Round(time.Millisecond))
	before := make([]string, len(agents))
	for i, r := range agents {
		before[i] = viewOf(r)
	}

	target := agents[0].a.Addr()
	rogueLeaf := rogueCA.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}})
	rogueTLS, err := meshtls.New(rogueLeaf.TLS, meshtlstest.Pool(rogueCA, ca)) // trusts the cluster too
	if err != nil {
		t.Fatal(err)
	}
	flood := &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{
		{Addr: "127.0.0.1:1", Time: 1, Writer: "127.0.0.1:1#1", Meta: &meshpb.PeerMeta{Name: "fake"}},
		{Addr: target, Time: 1 << 20, Writer: "127.0.0.1:2#1", State: meshpb.State_STATE_FAILED}}}
	for _, tc := range []struct {
		name  string
		creds grpc.DialOption
	}{
		{"plaintext", grpc.WithTransportCredentials(insecure.NewCredentials())},
		{"TLS without a client certificate", grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: meshtlstest.Pool(ca)}))},
		{"certificate of another CA", rogueTLS.DialOption()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := tlsDial(t, target, tc.creds)
			if _, err := meshpb.NewMeshAdminClient(conn).Members(ctxT(t), &meshpb.MembersRequest{}); status.Code(err) != codes.Unavailable {
				t.Errorf("admin Members = %v, want Unavailable", err)
			}
			if _, err := meshpb.NewGossipServiceClient(conn).Sync(ctxT(t), &meshpb.SyncRequest{}); status.Code(err) != codes.Unavailable {
				t.Errorf("gossip Sync (read) = %v, want Unavailable", err)
			}
			if _, err := meshpb.NewGossipServiceClient(conn).Sync(ctxT(t), flood); status.Code(err) != codes.Unavailable {
				t.Errorf("gossip Sync (push) = %v, want Unavailable", err)
			}
		})
	}

	// Whole agents try to join: one with a certificate of another CA, one
	// without TLS. Each keeps trying; neither ever gets in.
	rogueCfg, _ := tlsFiles(t, rogueCA, "127.0.0.1", rogueCA, ca)
	rogueCfg.Join, rogueCfg.Name = []string{target}, "rogue"
	plainCfg := Config{Bind: "127.0.0.1:0", Join: []string{target}, Name: "plain"}
	rogues := []*running{start(t, rogueCfg), start(t, plainCfg)}
	await(t, "the rogue agents try 5 times each", func() (bool, string) {
		var s []string
		for _, r := range rogues {
			st := r.a.Peer().Stats()
			if st.SyncErrors < 5 {
				s = append(s, fmt.Sprintf("%s: %d sync errors", r.a.Addr(), st.SyncErrors))
			}
		}
		return len(s) == 0, strings.Join(s, "; ")
	})
	for _, r := range rogues {
		if got := keysOf(r.a.Peer().GetMembers()); !slices.Equal(got, []string{r.a.Addr()}) {
			t.Errorf("rogue %s sees %v, want only itself", r.a.Addr(), got)
		}
	}
	for i, r := range agents {
		if got := viewOf(r); got != before[i] {
			t.Errorf("honest %s changed:\n before %s\n after  %s", r.a.Addr(), before[i], got)
		}
	}
}

// entryBytes is what an owner signs for an entry (peer's signedBytes).
func entryBytes(e *meshpb.Entry) []byte {
	c := proto.Clone(e).(*meshpb.Entry)
	c.Cert, c.Sig = nil, nil
	if c.Meta == nil {
		c.Meta = &meshpb.PeerMeta{}
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	return b
}

// A holder of a valid certificate for its own address (here ::1) cannot
// impersonate a member on another host (127.0.0.1): forged ALIVE and LEFT
// entries for it are refused through the real gRPC path, whatever
// certificate and signature they carry, and the cluster is unchanged. It
// may declare the member failed (failure detection); the victim refutes.
func TestTLSImpersonationRefused(t *testing.T) {
	ca := meshtlstest.NewCA(t, "cluster ca")
	cfgA, _ := tlsFiles(t, ca, "127.0.0.1")
	a := start(t, cfgA)
	cfgB, _ := tlsFiles(t, ca, "127.0.0.1")
	cfgB.Join, cfgB.Name = []string{a.a.Addr()}, "victim"
	b := start(t, cfgB)
	agents := []*running{a, b}
	await(t, "2 agents converge", sees(agents, addrsOf(a, b)))

	lis, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	rogueAddr := lis.Addr().String()
	lis.Close()
	rogueTLS, err := meshtls.New(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"::1"}}).TLS, meshtlstest.Pool(ca))
	if err != nil {
		t.Fatal(err)
	}
	gossip := meshpb.NewGossipServiceClient(tlsDial(t, a.a.Addr(), rogueTLS.DialOption()))

	// The rogue is a member in good standing: it can read the state.
	first, err := gossip.Sync(ctxT(t), &meshpb.SyncRequest{From: rogueAddr})
	if err != nil {
		t.Fatalf("rogue with a valid certificate cannot read: %v", err)
	}
	full, err := gossip.Sync(ctxT(t), &meshpb.SyncRequest{From: rogueAddr, Full: true, Clock: first.GetClock()})
	if err != nil {
		t.Fatal(err)
	}
	var real *meshpb.Entry
	for _, e := range full.GetDelta() {
		if e.GetAddr() == b.a.Addr() {
			real = e
		}
	}
	if real == nil || len(real.GetCert()) == 0 {
		t.Fatalf("no signed entry for the victim %s in %v", b.a.Addr(), full.GetDelta())
	}
	before := []string{viewOf(a), viewOf(b)}
	sign := func(e *meshpb.Entry) *meshpb.Entry {
		e.Cert, e.Sig, err = rogueTLS.Authority().Sign(entryBytes(e))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	forged := func(st meshpb.State) *meshpb.Entry {
		return &meshpb.Entry{Addr: b.a.Addr(), Time: real.GetTime() + 100, Writer: real.GetWriter(), State: st,
			Meta: &meshpb.PeerMeta{Name: "evil"}}
	}
	victimCert := forged(meshpb.State_STATE_ALIVE)
	victimCert.Cert, victimCert.Sig = real.GetCert(), real.GetSig() // replayed credentials, new content
	mixed := sign(forged(meshpb.State_STATE_ALIVE))
	mixed.Cert = real.GetCert() // the victim's certificate, the rogue's signature
	for _, tc := range []struct {
		name string
		e    *meshpb.Entry
		want string
	}{
		{"ALIVE signed with the rogue's own certificate", sign(forged(meshpb.State_STATE_ALIVE)), "not host 127.0.0.1"},
		{"LEFT signed with the rogue's own certificate", sign(forged(meshpb.State_STATE_LEFT)), "not host 127.0.0.1"},
		{"ALIVE with the victim's certificate and signature replayed", victimCert, "signature does not verify"},
		{"ALIVE with the victim's certificate, the rogue's signature", mixed, "signature does not verify"},
		{"ALIVE with no credentials", forged(meshpb.State_STATE_ALIVE), "no certificate or signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gossip.Sync(ctxT(t), &meshpb.SyncRequest{From: rogueAddr, Full: true, Delta: []*meshpb.Entry{tc.e}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not signed by that peer") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sync = %v, want InvalidArgument: not signed by that peer: ...%s", err, tc.want)
			}
			_, err = gossip.Sync(ctxT(t), &meshpb.SyncRequest{From: rogueAddr, Push: true, Delta: []*meshpb.Entry{tc.e}})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("push: Sync = %v, want InvalidArgument", err)
			}
		})
	}
	if got := []string{viewOf(a), viewOf(b)}; !slices.Equal(got, before) {
		t.Fatalf("cluster changed after refused forgeries:\n before %v\n after  %v", before, got)
	}

	// Failure detection stays open to all: a FAILED tombstone is accepted,
	// and the victim refutes it.
	fail := &meshpb.Entry{Addr: b.a.Addr(), Time: real.GetTime() + 100, Writer: rogueAddr + "#00000001", State: meshpb.State_STATE_FAILED}
	if _, err := gossip.Sync(ctxT(t), &meshpb.SyncRequest{From: rogueAddr, Full: true, Delta: []*meshpb.Entry{fail}}); err != nil {
		t.Fatalf("FAILED tombstone refused: %v", err)
	}
	took := await(t, "the victim refutes its tombstone", func() (bool, string) {
		_, ok := a.a.Peer().GetMembers()[b.a.Addr()]
		return ok && b.a.Peer().Stats().Refutations > 0, fmt.Sprintf("%s; the victim's: %s, %+v", viewOf(a), viewOf(b), b.a.Peer().Stats())
	})
	t.Logf("victim hidden at %s for %v (%.1f periods)", a.a.Addr(), took.Round(time.Millisecond), float64(took)/float64(testPeriod))
	if name := a.a.Peer().GetMembers()[b.a.Addr()].GetName(); name != "victim" {
		t.Fatalf("after refutation the victim's name is %q, want victim", name)
	}

	// The rogue's own entry, correctly signed, is accepted: the refusals
	// above were about ownership, not about the rogue.
	own := sign(&meshpb.Entry{Addr: rogueAddr, Time: 1, Writer: rogueAddr + "#00000001", Meta: &meshpb.PeerMeta{Name: "rogue"}})
	if _, err := gossip.Sync(ctxT(t), &meshpb.SyncRequest{From: rogueAddr, Full: true, Delta: []*meshpb.Entry{own}}); err != nil {
		t.Fatalf("the rogue's own signed entry was refused: %v", err)
	}
	if _, ok := a.a.Peer().GetMembers()[rogueAddr]; !ok {
		t.Fatal("the rogue's own signed entry was not applied")
	}
}

// Rotation without downtime, as docs/SECURITY.md describes it: bundle,
// new leaves, then the new CA alone. The cluster stays converged, no member
// is ever reported failed or left, an agent with only the new CA joins,
// and at the end a certificate of the old CA is refused.
func TestTLSRotation(t *testing.T) {
	ca1, ca2 := meshtlstest.NewCA(t, "ca1"), meshtlstest.NewCA(t, "ca2")
	var agents []*running
	var dirs []string
	for i := range 3 {
		cfg, dir := tlsFiles(t, ca1, "127.0.0.1")
		cfg.Name = fmt.Sprintf("n%d", i)
		if i > 0 {
			cfg.Join = []string{agents[0].a.Addr()}
		}
		agents = append(agents, start(t, cfg))
		dirs = append(dirs, dir)
	}
	await(t, "3 agents converge on ca1", sees(agents, addrsOf(agents...)))
	var subs []*peer.Subscription
	for _, r := range agents {
		s := r.a.Peer().Subscribe(1024)
		subs = append(subs, s)
	}
	noRemovals := func(step string) {
		t.Helper()
		for i, s := range subs {
			for {
				select {
				case ev := <-s.C:
					if ev.Type == peer.EventFailed || ev.Type == peer.EventLeave {
						t.Fatalf("%s: %s saw %v of %s", step, agents[i].a.Addr(), ev.Type, ev.Addr)
					}
					continue
				default:
				}
				break
			}
		}
	}
	members := agents // who must converge
	reload := func(step string, leaf func(i int) *meshtlstest.Leaf, cas ...*meshtlstest.CA) {
		t.Helper()
		for i, r := range agents {
			meshtlstest.WriteFiles(t, dirs[i], leaf(i), cas...)
			if err := r.a.ReloadTLS(); err != nil {
				t.Fatalf("%s: reload %s: %v", step, r.a.Addr(), err)
			}
			noRemovals(step)
		}
		took := await(t, step+": converged", sees(members, addrsOf(members...)))
		t.Logf("%s: converged %v after the last reload", step, took.Round(time.Millisecond))
		noRemovals(step)
	}
	leaves := func(ca *meshtlstest.CA) func(int) *meshtlstest.Leaf {
		return func(int) *meshtlstest.Leaf { return ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}) }
	}
	reload("step 1: bundle ca1+ca2", leaves(ca1), ca1, ca2)
	reload("step 2: ca2 certificates", leaves(ca2), ca1, ca2)
	for _, r := range agents {
		if got := r.a.tls.Leaf().Issuer.CommonName; got != "ca2" {
			t.Fatalf("%s presents a certificate of %s after step 2", r.a.Addr(), got)
		}
	}

	// A newcomer that trusts only ca2 joins: every agent it dials must
	// now present its ca2 certificate.
	cfg, _ := tlsFiles(t, ca2, "127.0.0.1", ca2)
	cfg.Join, cfg.Name = []string{agents[1].a.Addr()}, "newcomer"
	newcomer := start(t, cfg)
	members = append(slices.Clone(agents), newcomer)
	await(t, "newcomer of ca2 joins", sees(members, addrsOf(members...)))
	noRemovals("newcomer")

	reload("step 3: ca2 alone", leaves(ca2), ca2)
	old, err := meshtls.New(ca1.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}).TLS, meshtlstest.Pool(ca1, ca2))
	if err != nil {
		t.Fatal(err)
	}
	conn := tlsDial(t, agents[0].a.Addr(), old.DialOption())
	if _, err := meshpb.NewMeshAdminClient(conn).Members(ctxT(t), &meshpb.MembersRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("after step 3 a ca1 certificate still works: %v", err)
	}
	noRemovals("step 3")
}

func TestTLSConfigErrors(t *testing.T) {
	ca := meshtlstest.NewCA(t, "ca")
	cfg, _ := tlsFiles(t, ca, "127.0.0.1")
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"cert alone", func(c *Config) { c.TLSKey, c.TLSCA = "", "" }, "--tls-key is missing: mutual TLS needs --tls-cert, --tls-key and --tls-ca together"},
		{"no CA", func(c *Config) { c.TLSCA = "" }, "--tls-ca is missing"},
		{"missing file", func(c *Config) { c.TLSKey = c.TLSKey + ".nope" }, "--tls-key \"" + cfg.TLSKey + ".nope\": not a readable file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.mod(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	// A certificate that does not name the agent's address is refused at
	// start, not discovered when peers refuse its entries.
	c, _ := tlsFiles(t, ca, "::1")
	c.Bind = "127.0.0.1:0"
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "not host 127.0.0.1") || !strings.Contains(err.Error(), "--advertise") {
		t.Fatalf("New with a certificate for ::1 on 127.0.0.1 = %v, want a clear refusal", err)
	}
	if a, err := New(Config{Bind: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	} else {
		if err := a.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "without --tls-cert") {
			t.Errorf("ReloadTLS without TLS = %v", err)
		}
		a.Close()
	}
}
