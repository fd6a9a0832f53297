package meshtls

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/meshtls/meshtlstest"
	"github.com/gossipmesh/mesh/peer"
)

// A reload that finds bad files says why, naming the flag, and keeps the
// material in use.
func TestReloadKeepsMaterialOnError(t *testing.T) {
	ca, other := meshtlstest.NewCA(t, "ca"), meshtlstest.NewCA(t, "other")
	dir := t.TempDir()
	f := meshtlstest.WriteFiles(t, dir, ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), ca)
	r, err := LoadFiles(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	r.RequireName("127.0.0.1:7946")
	var reports []error
	r.OnReload(func(err error) { reports = append(reports, err) })
	serial := r.Leaf().SerialNumber
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stranger := other.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}})
	another := ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}})
	elsewhere := ca.Issue(t, meshtlstest.Spec{Hosts: []string{"::1"}})
	cases := []struct {
		name  string
		setup func()
		want  string
	}{
		{"key of another certificate", func() { write(f.Key, stranger.KeyPEM) }, "private key does not match"},
		{"certificate of a CA not in the bundle", func() { write(f.Cert, stranger.CertPEM); write(f.Key, stranger.KeyPEM) }, "would be refused by peers"},
		{"certificate for another host", func() { write(f.Cert, elsewhere.CertPEM); write(f.Key, elsewhere.KeyPEM) }, "names ::1, not host 127.0.0.1; this peer is 127.0.0.1:7946"},
		{"empty CA file", func() { write(f.CA, nil) }, "--tls-ca " + f.CA + ": no PEM CERTIFICATE"},
		{"missing key file", func() { os.Remove(f.Key) }, "--tls-key: open"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			meshtlstest.WriteFiles(t, dir, another, ca) // valid files, not yet loaded
			tc.setup()
			err := r.Reload()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload = %v, want an error containing %q", err, tc.want)
			}
			if r.Leaf().SerialNumber.Cmp(serial) != 0 {
				t.Fatal("a failed reload replaced the certificate")
			}
		})
	}
	if len(reports) != len(cases) {
		t.Fatalf("OnReload saw %d reports, want %d: %v", len(reports), len(cases), reports)
	}
	if _, err := LoadFiles(filepath.Join(dir, "nope"), f.Key, f.CA); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("LoadFiles of a missing file = %v, want an error naming --tls-cert", err)
	}
}

// WatchFiles installs files rewritten in place, once.
func TestWatchFilesReloadsChangedFiles(t *testing.T) {
	ca := meshtlstest.NewCA(t, "ca")
	dir := t.TempDir()
	f := meshtlstest.WriteFiles(t, dir, ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), ca)
	r, err := LoadFiles(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	var reloads atomic.Int32
	r.OnReload(func(err error) {
		if err == nil {
			reloads.Add(1)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.WatchFiles(ctx, 5*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	next := ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}})
	meshtlstest.WriteFiles(t, dir, next, ca)
	for deadline := time.Now().Add(30 * time.Second); r.Leaf().SerialNumber.Cmp(next.TLS.Leaf.SerialNumber) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("WatchFiles did not pick up the new certificate within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // ten more polls of unchanged files
	if n := reloads.Load(); n != 1 {
		t.Fatalf("%d reloads reported, want 1", n)
	}
}

// serve runs a peer over gRPC with r's server credentials.
func serve(t *testing.T, r *Reloader, host string) (*peer.Peer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := peer.NewPeer(peer.PeerConfig{SelfEndpoint: lis.Addr().String(), PingPeriod: time.Second, Authority: r.Authority(),
		DialOptions: []grpc.DialOption{r.DialOption()}})
	srv := grpc.NewServer(r.ServerOption())
	meshpb.RegisterGossipServiceServer(srv, p)
	go srv.Serve(lis)
	t.Cleanup(func() { p.Stop(); srv.Stop() })
	return p, lis.Addr().String()
}

// callSync makes one Sync call to addr with the given credentials.
func callSync(t *testing.T, addr string, creds grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = meshpb.NewGossipServiceClient(conn).Sync(ctx, &meshpb.SyncRequest{})
	return err
}

func tlsCreds(c *tls.Config) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(c))
}

// Both sides must hold a certificate of a trusted CA, and the server's must
// name the host dialed; a reload takes effect at the next handshake.
func TestMutualTLS(t *testing.T) {
	ca, other, next := meshtlstest.NewCA(t, "ca"), meshtlstest.NewCA(t, "other"), meshtlstest.NewCA(t, "next")
	srv := mustNew(t, ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), ca)
	_, addr := serve(t, srv, "127.0.0.1")
	_, port, _ := net.SplitHostPort(addr)

	client := mustNew(t, ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), ca)
	if err := callSync(t, addr, client.DialOption()); err != nil {
		t.Fatalf("client with a certificate of the CA: %v", err)
	}
	strangerLeaf := other.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}})
	for _, tc := range []struct {
		name  string
		creds grpc.DialOption
	}{
		{"plaintext", grpc.WithTransportCredentials(insecure.NewCredentials())},
		{"no client certificate", tlsCreds(&tls.Config{RootCAs: meshtlstest.Pool(ca)})},
		{"certificate of another CA", tlsCreds(&tls.Config{RootCAs: meshtlstest.Pool(ca), Certificates: []tls.Certificate{strangerLeaf.TLS}})},
		{"client trusting another CA", mustNew(t, strangerLeaf, other).DialOption()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := callSync(t, addr, tc.creds)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("Sync = %v, want Unavailable (handshake refused)", err)
			}
		})
	}
	t.Run("server certificate for another host", func(t *testing.T) {
		err := callSync(t, net.JoinHostPort("localhost", port), client.DialOption())
		if err == nil || !strings.Contains(err.Error(), "localhost") {
			t.Fatalf("Sync to localhost with a certificate for 127.0.0.1 = %v, want a name mismatch", err)
		}
	})

	// Rotation: the server trusts ca+next and presents a next certificate.
	if err := srv.Set(next.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}).TLS, meshtlstest.Pool(ca, next)); err != nil {
		t.Fatal(err)
	}
	nextClient := mustNew(t, next.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), next)
	if err := callSync(t, addr, nextClient.DialOption()); err != nil {
		t.Fatalf("after rotation, client of the new CA: %v", err)
	}
	if err := callSync(t, addr, client.DialOption()); status.Code(err) != codes.Unavailable {
		t.Fatalf("after rotation, client trusting only the old CA: %v, want Unavailable", err)
	}
	if err := client.Set(*client.cur.Load().cert, meshtlstest.Pool(ca, next)); err != nil {
		t.Fatal(err)
	}
	if err := callSync(t, addr, client.DialOption()); err != nil {
		t.Fatalf("after rotation, old-CA client trusting the bundle: %v", err)
	}
}
