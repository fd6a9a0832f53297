package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/meshtls"
	"github.com/gossipmesh/mesh/meshtls/meshtlstest"
)

// adminCalls calls every MeshAdmin method once and returns each error by
// method name. Watch's error arrives with the first Recv.
func adminCalls(ctx context.Context, conn *grpc.ClientConn) map[string]error {
	c := meshpb.NewMeshAdminClient(conn)
	errs := map[string]error{}
	_, errs["Members"] = c.Members(ctx, &meshpb.MembersRequest{})
	_, errs["Join"] = c.Join(ctx, &meshpb.JoinRequest{Addrs: []string{"127.0.0.1:1"}})
	name := "hijacked"
	_, errs["SetMeta"] = c.SetMeta(ctx, &meshpb.SetMetaRequest{Name: &name})
	_, errs["Leave"] = c.Leave(ctx, &meshpb.LeaveRequest{})
	w, err := c.Watch(ctx, &meshpb.WatchRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	errs["Watch"] = err
	return errs
}

// A stranger on the gossip port cannot call any admin method, with or
// without mutual TLS (and then even with a member's certificate): the
// port does not serve MeshAdmin. The agent neither leaves nor changes.
func TestAdminNotOnGossipPort(t *testing.T) {
	ca := meshtlstest.NewCA(t, "cluster ca")
	tlsCfg, _ := tlsFiles(t, ca, "127.0.0.1")
	tlsCfg.Name = "tls"
	plain := start(t, Config{Name: "plain"})
	secure := start(t, tlsCfg)
	member, err := meshtls.New(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}).TLS, meshtlstest.Pool(ca))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		r     *running
		creds grpc.DialOption
	}{
		{"plaintext agent, stranger", plain, grpc.WithTransportCredentials(insecure.NewCredentials())},
		{"mTLS agent, member certificate", secure, member.DialOption()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := viewOf(tc.r)
			conn := tlsDial(t, tc.r.a.Addr(), tc.creds)
			if _, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("health on the gossip port: %v; want it served (the calls below must reach the server)", err)
			}
			for method, err := range adminCalls(ctxT(t), conn) {
				if status.Code(err) != codes.Unimplemented {
					t.Errorf("%s on the gossip port = %v, want Unimplemented", method, err)
				}
			}
			if got := viewOf(tc.r); got != before {
				t.Errorf("agent changed:\n before %s\n after  %s", before, got)
			}
			select {
			case err := <-tc.r.done:
				t.Fatalf("agent stopped (Run returned %v) after calls on its gossip port", err)
			default:
			}
		})
	}
}

// adminCluster is an agent with mutual TLS whose admin API, on loopback
// TCP, takes certificates of adminCA only.
func adminAgent(t *testing.T, memberCA, adminCA *meshtlstest.CA) *running {
	t.Helper()
	cfg, dir := tlsFiles(t, memberCA, "127.0.0.1")
	cfg.AdminCA = filepath.Join(dir, "admin-ca.pem")
	if err := os.WriteFile(cfg.AdminCA, adminCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Admin = "127.0.0.1:0"
	return start(t, cfg)
}

// clientTLS is what an admin client presents: its certificate, and the
// member CA to check the agent's certificate.
func clientTLS(leaf *meshtlstest.Leaf, serverCA *meshtlstest.CA) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{leaf.TLS},
		RootCAs:      meshtlstest.Pool(serverCA),
	}))
}

// With --admin-ca, a member's certificate cannot make another agent leave
// (nor call anything else on its admin API), a client without a
// certificate neither; an admin certificate can.
func TestAdminCertificateRole(t *testing.T) {
	memberCA, adminCA := meshtlstest.NewCA(t, "member ca"), meshtlstest.NewCA(t, "operator ca")
	a := adminAgent(t, memberCA, adminCA)
	b := adminAgent(t, memberCA, adminCA)
	b.a.peer.AddSeed(a.a.Addr())
	await(t, "a and b see each other", sees([]*running{a, b}, addrsOf(a, b)))
	if !strings.HasPrefix(a.a.AdminAddr(), "127.0.0.1:") {
		t.Fatalf("AdminAddr = %q, want 127.0.0.1:PORT", a.a.AdminAddr())
	}

	// b's own member certificate, as a rogue member would use it.
	bMember, err := meshtls.LoadFiles(b.a.cfg.TLSCert, b.a.cfg.TLSKey, b.a.cfg.TLSCA)
	if err != nil {
		t.Fatal(err)
	}
	before := viewOf(a)
	for _, tc := range []struct {
		name  string
		creds grpc.DialOption
	}{
		{"member certificate", bMember.DialOption()},
		{"member certificate, admin CA trusted for the server", clientTLS(memberCA.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), memberCA)},
		{"no client certificate", grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: meshtlstest.Pool(memberCA)}))},
		{"plaintext", grpc.WithTransportCredentials(insecure.NewCredentials())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := tlsDial(t, a.a.AdminAddr(), tc.creds)
			for method, err := range adminCalls(ctxT(t), conn) {
				if status.Code(err) != codes.Unavailable {
					t.Errorf("%s with a %s = %v, want Unavailable (handshake refused)", method, tc.name, err)
				}
			}
		})
	}
	if got := viewOf(a); got != before {
		t.Errorf("a changed after refused admin calls:\n before %s\n after  %s", before, got)
	}
	select {
	case err := <-a.done:
		t.Fatalf("a stopped (Run returned %v) after refused admin calls", err)
	default:
	}

	operator := adminCA.Issue(t, meshtlstest.Spec{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	c := meshpb.NewMeshAdminClient(tlsDial(t, a.a.AdminAddr(), clientTLS(operator, memberCA)))
	if m, err := c.Members(ctxT(t), &meshpb.MembersRequest{}); err != nil || len(m.GetMembers()) != 2 {
		t.Fatalf("Members with an admin certificate = %v, %v; want 2 members", m, err)
	}
	lr, err := c.Leave(ctxT(t), &meshpb.LeaveRequest{})
	if err != nil || lr.GetMembers() != 1 {
		t.Fatalf("Leave with an admin certificate = %v, %v; want 1 member told", lr, err)
	}
	if err := a.wait(t); err != nil {
		t.Errorf("a's Run after Leave: %v", err)
	}
	await(t, "b sees a left", func() (bool, string) {
		for _, m := range b.a.Peer().Members() {
			if m.Addr == a.a.Addr() {
				return m.State == meshpb.State_STATE_LEFT, m.State.String()
			}
		}
		return false, "absent"
	})
}

// Bad admin configurations fail in Validate or New, naming the flag and the
// fix, and bind nothing.
func TestAdminConfigErrors(t *testing.T) {
	ca := meshtlstest.NewCA(t, "ca")
	cfg, dir := tlsFiles(t, ca, "127.0.0.1")
	caFile := cfg.TLSCA
	otherCA := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(otherCA, meshtlstest.NewCA(t, "ops").PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	long := "unix:/" + strings.Repeat("x", 120)
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"non-loopback TCP without admin certificates", func(c *Config) { c.Admin = "0.0.0.0:7373" }, "--admin 0.0.0.0:7373 is not a loopback address"},
		{"LAN address", func(c *Config) { c.Admin = "10.1.2.3:7373" }, "require admin certificates with --admin-ca"},
		{"admin CA on a unix socket", func(c *Config) { c.Admin = "unix:/tmp/x.sock"; c.AdminCA = otherCA }, "--admin-ca applies to a TCP --admin address"},
		{"admin CA without TLS", func(c *Config) {
			c.TLSCert, c.TLSKey, c.TLSCA = "", "", ""
			c.Admin = "127.0.0.1:0"
			c.AdminCA = otherCA
		}, "needs --tls-cert, --tls-key and --tls-ca"},
		{"admin CA without admin address", func(c *Config) { c.Admin = ""; c.AdminCA = otherCA }, "no admin address"},
		{"missing admin CA file", func(c *Config) { c.Admin = "127.0.0.1:0"; c.AdminCA = filepath.Join(dir, "nope.pem") }, "not a readable file"},
		{"not host:port", func(c *Config) { c.Admin = "localhost" }, "--admin: \"localhost\" is not host:port"},
		{"socket path too long", func(c *Config) { c.Admin = long }, "above the 107 a unix socket allows"},
		{"the gossip address", func(c *Config) { c.Bind = "127.0.0.1:7946"; c.Admin = "127.0.0.1:7946" }, "needs an address of its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}

	// The member CA given as the admin CA passes Validate (both files
	// exist) but New refuses it, and releases the ports it bound.
	bind := freeTCP(t)
	c := cfg
	c.Bind, c.Admin, c.AdminCA = bind, "127.0.0.1:0", caFile
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := New(c)
	if err == nil || !strings.Contains(err.Error(), "is also in --tls-ca") || !strings.Contains(err.Error(), "issue admin certificates from a CA of their own") {
		t.Fatalf("New with --admin-ca = --tls-ca: %v; want the shared CA named", err)
	}
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		t.Fatalf("--bind port still held after New failed: %v", err)
	}
	lis.Close()
}

func freeTCP(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

func TestParseAdmin(t *testing.T) {
	for in, want := range map[string]AdminAddr{
		"unix:/run/mesh/mesh.sock":   {"unix", "/run/mesh/mesh.sock"},
		"unix:///run/mesh/mesh.sock": {"unix", "/run/mesh/mesh.sock"},
		"/run/mesh/mesh.sock":        {"unix", "/run/mesh/mesh.sock"},
		"unix:rel/mesh.sock":         {"unix", "rel/mesh.sock"},
		"127.0.0.1:7373":             {"tcp", "127.0.0.1:7373"},
		"[::1]:0":                    {"tcp", "[::1]:0"},
	} {
		got, err := ParseAdmin(in)
		if err != nil || got != want {
			t.Errorf("ParseAdmin(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, local := range map[string]bool{
		"unix:/x": true, "127.0.0.1:1": true, "127.8.0.1:1": true, "[::1]:1": true, "localhost:1": true,
		"0.0.0.0:1": false, "10.0.0.1:1": false, "[::]:1": false, "mesh.example:1": false,
	} {
		a, err := ParseAdmin(in)
		if err != nil || a.Local() != local {
			t.Errorf("ParseAdmin(%q).Local() = %v (%v), want %v", in, a.Local(), err, local)
		}
	}
	for _, bad := range []string{"", "unix:", "nope", "127.0.0.1:99999"} {
		if _, err := ParseAdmin(bad); err == nil || !strings.Contains(err.Error(), "--admin") {
			t.Errorf("ParseAdmin(%q) = %v, want an error naming --admin", bad, err)
		}
	}
}

// Replacing the --admin-ca file and reloading (SIGHUP in mesh agent)
// moves admin access to the new CA's certificates at the next connection.
func TestAdminCAReload(t *testing.T) {
	memberCA, ops1, ops2 := meshtlstest.NewCA(t, "member ca"), meshtlstest.NewCA(t, "ops 1"), meshtlstest.NewCA(t, "ops 2")
	a := adminAgent(t, memberCA, ops1)
	clientOnly := meshtlstest.Spec{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	cert1, cert2 := ops1.Issue(t, clientOnly), ops2.Issue(t, clientOnly)
	call := func(leaf *meshtlstest.Leaf) error {
		conn, err := grpc.NewClient(a.a.AdminAddr(), clientTLS(leaf, memberCA))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = meshpb.NewMeshAdminClient(conn).Members(ctxT(t), &meshpb.MembersRequest{})
		return err
	}
	if err := call(cert1); err != nil {
		t.Fatalf("ops 1 before the reload: %v", err)
	}
	if err := call(cert2); status.Code(err) != codes.Unavailable {
		t.Fatalf("ops 2 before the reload: %v, want Unavailable", err)
	}
	if err := os.WriteFile(a.a.cfg.AdminCA, ops2.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.a.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if err := call(cert2); err != nil {
		t.Errorf("ops 2 after the reload: %v", err)
	}
	if err := call(cert1); status.Code(err) != codes.Unavailable {
		t.Errorf("ops 1 after the reload: %v, want Unavailable", err)
	}
	// A bundle that shares the member CA is refused; the previous stays.
	if err := os.WriteFile(a.a.cfg.AdminCA, memberCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.a.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "is also in --tls-ca") {
		t.Errorf("reload of an admin CA equal to the member CA: %v", err)
	}
	if err := call(cert2); err != nil {
		t.Errorf("ops 2 after a refused reload: %v", err)
	}
}
