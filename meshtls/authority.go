package meshtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gossipmesh/mesh/peer"
)

// Authority signs this peer's own entries with its TLS key and checks the
// signatures on others' entries; see the package doc. It reads the
// Reloader's current material, so a reload applies to the next entry.
type Authority struct{ r *Reloader }

var _ peer.Authority = (*Authority)(nil)

// Authority returns the peer.Authority built on r's certificates.
func (r *Reloader) Authority() *Authority { return &Authority{r} }

// signContext separates entry signatures from anything else the key signs
// (TLS handshakes sign with their own context strings).
const signContext = "mesh entry signature v1\x00"

// Sign returns the current certificate chain (DER, concatenated) and a
// signature of data: ECDSA or RSA-PSS over SHA-256, or Ed25519.
func (a *Authority) Sign(data []byte) (cert, sig []byte, err error) {
	m := a.r.cur.Load()
	msg := append([]byte(signContext), data...)
	switch m.signer.Public().(type) {
	case ed25519.PublicKey:
		sig, err = m.signer.Sign(rand.Reader, msg, crypto.Hash(0))
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		sig, err = m.signer.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	default: // ECDSA; newMaterial admits nothing else
		d := sha256.Sum256(msg)
		sig, err = m.signer.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("meshtls: sign own entry: %w", err)
	}
	return m.chain, sig, nil
}

// Verify checks that cert is a chain to a trusted CA, valid now for server
// and client authentication, whose leaf names addr (see the package doc),
// and that sig is the leaf's signature of data. Chains are verified once
// per trusted-CA generation and cached by their hash.
func (a *Authority) Verify(addr string, data, cert, sig []byte) error {
	if len(cert) == 0 || len(sig) == 0 {
		return errors.New("no certificate or signature")
	}
	m := a.r.cur.Load()
	now := time.Now()
	v, err := m.cache.get(cert, func() (*verified, error) { return m.verifyChain(cert, now) })
	if err != nil {
		return err
	}
	if now.Before(v.notBefore) || now.After(v.notAfter) {
		return fmt.Errorf("certificate (subject %q) is not valid now: chain valid from %v to %v",
			v.leaf.Subject.String(), v.notBefore.UTC(), v.notAfter.UTC())
	}
	if err := namesAddr(v.leaf, addr); err != nil {
		return err
	}
	msg := append([]byte(signContext), data...)
	d := sha256.Sum256(msg)
	ok := false
	switch pub := v.leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, d[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, msg, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	default:
		return fmt.Errorf("certificate (subject %q) has an unsupported key type %T", v.leaf.Subject.String(), v.leaf.PublicKey)
	}
	if !ok {
		return fmt.Errorf("signature does not verify with the key of certificate (subject %q)", v.leaf.Subject.String())
	}
	return nil
}

// verified is a chain that verified against a material's roots.
type verified struct {
	leaf                *x509.Certificate
	notBefore, notAfter time.Time // of the whole verified chain
}

// verifyChain parses a concatenated DER chain (leaf first) and verifies it
// against m's roots for both server and client authentication: a peer's
// certificate serves both ends of its connections.
func (m *material) verifyChain(der []byte, now time.Time) (*verified, error) {
	certs, err := x509.ParseCertificates(der)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("certificate does not parse: %v", err)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	v := &verified{leaf: certs[0], notBefore: certs[0].NotBefore, notAfter: certs[0].NotAfter}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		chains, err := certs[0].Verify(x509.VerifyOptions{Roots: m.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			return nil, fmt.Errorf("certificate (subject %q) is not trusted: %w", certs[0].Subject.String(), err)
		}
		for _, c := range chains[0] {
			if c.NotBefore.After(v.notBefore) {
				v.notBefore = c.NotBefore
			}
			if c.NotAfter.Before(v.notAfter) {
				v.notAfter = c.NotAfter
			}
		}
	}
	return v, nil
}

// namesAddr checks that the certificate names addr: exactly, by a
// mesh://host:port URI SAN if it has any, else by host, as an IP SAN or a
// DNS SAN (no wildcard, no common name).
func namesAddr(c *x509.Certificate, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("entry address %q: %w", addr, err)
	}
	var pinned []string
	for _, u := range c.URIs {
		if u.Scheme == "mesh" {
			if strings.EqualFold(u.Host, addr) {
				return nil
			}
			pinned = append(pinned, u.String())
		}
	}
	if len(pinned) > 0 {
		return fmt.Errorf("certificate (subject %q) is for %s only, not %s", c.Subject.String(), strings.Join(pinned, ", "), addr)
	}
	if ip := net.ParseIP(host); ip != nil {
		for _, cip := range c.IPAddresses {
			if cip.Equal(ip) {
				return nil
			}
		}
	} else {
		h := strings.TrimSuffix(host, ".")
		for _, d := range c.DNSNames {
			if strings.EqualFold(strings.TrimSuffix(d, "."), h) {
				return nil
			}
		}
	}
	var names []string
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	names = append(names, c.DNSNames...)
	return fmt.Errorf("certificate (subject %q) names %s, not host %s", c.Subject.String(), strings.Join(names, ", "), host)
}

// verifiedCache remembers chains that verified, by the SHA-256 of their
// DER, so that the chain check runs once per certificate rather than once
// per entry. Each material has its own, so a reload that drops a CA
// forgets what that CA vouched for. Failures are not cached: a sender of
// bad certificates gets its message refused at the first one.
type verifiedCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*verified
}

// maxCached bounds the cache; when full it starts over.
const maxCached = 4096

func newVerifiedCache() *verifiedCache {
	return &verifiedCache{m: map[[sha256.Size]byte]*verified{}}
}

func (c *verifiedCache) get(der []byte, verify func() (*verified, error)) (*verified, error) {
	key := sha256.Sum256(der)
	c.mu.Lock()
	v := c.m[key]
	c.mu.Unlock()
	if v != nil {
		return v, nil
	}
	v, err := verify()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	c.m[key] = v
	c.mu.Unlock()
	return v, nil
}

// cached reports how many chains the current material has verified.
func (r *Reloader) cached() int {
	c := r.cur.Load().cache
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
