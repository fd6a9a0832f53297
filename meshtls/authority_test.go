package meshtls

import (
	"crypto"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gossipmesh/mesh/meshtls/meshtlstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustNew(t *testing.T, leaf *meshtlstest.Leaf, cas ...*meshtlstest.CA) *Reloader {
	t.Helper()
	r, err := New(leaf.TLS, meshtlstest.Pool(cas...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Each key type signs entries that every peer trusting the CA accepts for
// the hosts the certificate names, IPv4, IPv6 and DNS alike.
func TestAuthoritySignsAndVerifies(t *testing.T) {
	ca := meshtlstest.NewCA(t, "ca")
	verifier := mustNew(t, ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.9"}}), ca).Authority()
	for _, key := range []string{"ecdsa", "ed25519", "rsa"} {
		t.Run(key, func(t *testing.T) {
			leaf := ca.Issue(t, meshtlstest.Spec{Key: key, Hosts: []string{"127.0.0.1", "::1", "node1.example"}})
			a := mustNew(t, leaf, ca).Authority()
			data := []byte("entry bytes")
			cert, sig, err := a.Sign(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, addr := range []string{"127.0.0.1:7946", "[::1]:7946", "node1.example:1", "NODE1.example.:2"} {
				if err := verifier.Verify(addr, data, cert, sig); err != nil {
					t.Errorf("Verify(%s) = %v, want nil", addr, err)
				}
			}
		})
	}
}

func TestAuthorityRefuses(t *testing.T) {
	ca, other := meshtlstest.NewCA(t, "ca"), meshtlstest.NewCA(t, "other ca")
	verifier := mustNew(t, ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.9"}}), ca).Authority()
	data := []byte("entry bytes")
	// signed signs data with l as Sign would, whether or not l is valid.
	signed := func(l *meshtlstest.Leaf) ([]byte, []byte) {
		t.Helper()
		r := &Reloader{}
		r.cur.Store(&material{cert: &l.TLS, chain: l.TLS.Certificate[0], signer: l.TLS.PrivateKey.(crypto.Signer)})
		c, s, err := r.Authority().Sign(data)
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	good := ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1", "node1.example"}})
	goodCert, goodSig := signed(good)
	otherCert, otherSig := signed(other.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}))
	expCert, expSig := signed(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}, NotBefore: time.Now().Add(-3 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
	serverOnlyCert, serverOnlySig := signed(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}))
	pinnedCert, pinnedSig := signed(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}, URIs: []string{"mesh://127.0.0.1:7000"}}))
	wildCert, wildSig := signed(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"*.example"}}))
	_, thirdSig := signed(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}))

	cases := []struct {
		name            string
		addr            string
		data, cert, sig []byte
		want            string
	}{
		{"another host", "127.0.0.2:7946", data, goodCert, goodSig, "not host 127.0.0.2"},
		{"another DNS name", "node2.example:7946", data, goodCert, goodSig, "not host node2.example"},
		{"IPv6 host", "[::1]:7946", data, goodCert, goodSig, "not host ::1"},
		{"another CA", "127.0.0.1:7946", data, otherCert, otherSig, "not trusted"},
		{"expired", "127.0.0.1:7946", data, expCert, expSig, "not trusted"},
		{"server auth only", "127.0.0.1:7946", data, serverOnlyCert, serverOnlySig, "not trusted"},
		{"pinned to another port", "127.0.0.1:7001", data, pinnedCert, pinnedSig, "mesh://127.0.0.1:7000 only"},
		{"wildcard", "a.example:1", data, wildCert, wildSig, "not host a.example"},
		{"tampered data", "127.0.0.1:7946", []byte("entry bytez"), goodCert, goodSig, "does not verify"},
		{"signature by another key", "127.0.0.1:7946", data, goodCert, thirdSig, "does not verify"},
		{"no signature", "127.0.0.1:7946", data, goodCert, nil, "no certificate or signature"},
		{"garbage certificate", "127.0.0.1:7946", data, []byte("not DER"), goodSig, "does not parse"},
		{"bad address", "127.0.0.1", data, goodCert, goodSig, "missing port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := verifier.Verify(tc.addr, tc.data, tc.cert, tc.sig)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := verifier.Verify("127.0.0.1:7000", data, pinnedCert, pinnedSig); err != nil {
		t.Fatalf("pinned certificate refused for its own address: %v", err)
	}
}

// A chain is verified once per CA generation, not once per entry; a reload
// forgets it, so a dropped CA vouches for nothing any more.
func TestVerifyCachesChainsPerGeneration(t *testing.T) {
	ca1, ca2 := meshtlstest.NewCA(t, "ca1"), meshtlstest.NewCA(t, "ca2")
	signer := mustNew(t, ca1.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), ca1, ca2).Authority()
	v := mustNew(t, ca2.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.9"}}), ca1, ca2)
	for i := range 100 {
		data := []byte{byte(i)}
		cert, sig, err := signer.Sign(data)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Authority().Verify("127.0.0.1:7946", data, cert, sig); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cached(); n != 1 {
		t.Fatalf("%d chains cached after 100 entries of one certificate, want 1", n)
	}
	if err := v.Set(ca2.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.9"}}).TLS, meshtlstest.Pool(ca2)); err != nil {
		t.Fatal(err)
	}
	if n := v.cached(); n != 0 {
		t.Fatalf("%d chains cached after a reload, want 0", n)
	}
	cert, sig, _ := signer.Sign([]byte("x"))
	if err := v.Authority().Verify("127.0.0.1:7946", []byte("x"), cert, sig); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("certificate of a dropped CA: Verify = %v, want not trusted", err)
	}
}
