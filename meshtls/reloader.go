package meshtls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Reloader holds a peer's certificate, private key and trusted CAs, and
// swaps them atomically on Reload or Set. All methods are safe for
// concurrent use; handshakes and signatures never wait for a reload.
type Reloader struct {
	certFile, keyFile, caFile string // "" for material given in memory

	mu      sync.Mutex // serialises loads and guards sum, lastErr, notify, self
	sum     [sha256.Size]byte
	lastErr string
	notify  []func(error)
	self    string // address every new certificate must name; "" for any

	cur atomic.Pointer[material]
}

// material is one generation of certificate, key and roots, with the
// certificates verified against those roots. It is never modified after
// it is published, except for the cache, which has its own lock.
type material struct {
	cert   *tls.Certificate // Leaf set
	chain  []byte           // DER of the leaf and its intermediates, concatenated
	signer crypto.Signer
	roots  *x509.CertPool
	cas    int // certificates in roots, for logs
	cache  *verifiedCache
}

// LoadFiles reads a PEM certificate (the leaf, then any intermediates), its
// PEM private key (ECDSA, Ed25519 or RSA) and a PEM bundle of trusted CAs.
// The certificate must be signed by one of those CAs and valid for both
// server and client authentication.
func LoadFiles(certFile, keyFile, caFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// New returns a Reloader for material held in memory; Set replaces it.
func New(cert tls.Certificate, roots *x509.CertPool) (*Reloader, error) {
	m, err := newMaterial(cert, roots, 0)
	if err != nil {
		return nil, err
	}
	r := &Reloader{}
	r.cur.Store(m)
	return r, nil
}

// OnReload registers f to be called after each reload attempt that
// changed the material (err nil) or failed (err says why; the previous
// material stays). WatchFiles reports a persistent failure once.
func (r *Reloader) OnReload(f func(err error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notify = append(r.notify, f)
}

// RequireName makes every later reload or Set refuse a certificate that
// does not name addr (see the package doc), keeping the previous one:
// peers would refuse the entries it signs.
func (r *Reloader) RequireName(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.self = addr
}

func (r *Reloader) checkName(m *material) error {
	if r.self == "" {
		return nil
	}
	if err := namesAddr(m.cert.Leaf, r.self); err != nil {
		return fmt.Errorf("meshtls: %w; this peer is %s", err, r.self)
	}
	return nil
}

// Reload re-reads the files and, if they hold valid material, makes it
// current. On error the previous material stays in use.
func (r *Reloader) Reload() error {
	_, err := r.reload(true)
	return err
}

// ReloadIfChanged is Reload when the files' contents changed since the
// last successful load; it reports whether it installed new material.
func (r *Reloader) ReloadIfChanged() (bool, error) { return r.reload(false) }

func (r *Reloader) reload(force bool) (bool, error) {
	if r.certFile == "" {
		return false, errors.New("meshtls: reload: this Reloader holds material given in memory; use Set")
	}
	r.mu.Lock()
	changed, err := r.loadLocked(force)
	// Report every change and every failure of an explicit Reload, but a
	// failure found by polling only when it differs from the last one.
	report := changed || err != nil && (force || err.Error() != r.lastErr)
	r.lastErr = ""
	if err != nil {
		r.lastErr = err.Error()
	}
	notify := r.notify
	r.mu.Unlock()
	if report {
		for _, f := range notify {
			f(err)
		}
	}
	return changed, err
}

func (r *Reloader) loadLocked(force bool) (bool, error) {
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return false, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return false, fmt.Errorf("--tls-key: %w", err)
	}
	caPEM, err := os.ReadFile(r.caFile)
	if err != nil {
		return false, fmt.Errorf("--tls-ca: %w", err)
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if !force && sum == r.sum {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", r.certFile, r.keyFile, err)
	}
	roots, n, err := parseBundle(caPEM)
	if err != nil {
		return false, fmt.Errorf("--tls-ca %s: %w", r.caFile, err)
	}
	m, err := newMaterial(cert, roots, n)
	if err == nil {
		err = r.checkName(m)
	}
	if err != nil {
		return false, fmt.Errorf("--tls-cert %s: %w", r.certFile, err)
	}
	r.cur.Store(m)
	r.sum = sum
	return true, nil
}

// Set installs new material given in memory, as Reload does from files.
func (r *Reloader) Set(cert tls.Certificate, roots *x509.CertPool) error {
	m, err := newMaterial(cert, roots, 0)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if err := r.checkName(m); err != nil {
		r.mu.Unlock()
		return err
	}
	r.cur.Store(m)
	notify := r.notify
	r.mu.Unlock()
	for _, f := range notify {
		f(nil)
	}
	return nil
}

// WatchFiles checks the files every interval and reloads them when their
// contents change, until ctx is done. Errors go to the OnReload functions.
func (r *Reloader) WatchFiles(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = r.ReloadIfChanged()
		}
	}
}

// Leaf returns the current certificate.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().cert.Leaf }

// CAs returns how many CA certificates the current bundle holds (0 for
// material given in memory).
func (r *Reloader) CAs() int { return r.cur.Load().cas }

func parseBundle(pemData []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := pemData; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, 0, errors.New("no PEM CERTIFICATE block found")
	}
	return pool, n, nil
}

// newMaterial checks a certificate and key against roots.
func newMaterial(cert tls.Certificate, roots *x509.CertPool, cas int) (*material, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("meshtls: no certificate")
	}
	if roots == nil {
		return nil, errors.New("meshtls: no CA pool")
	}
	certs := make([]*x509.Certificate, len(cert.Certificate))
	var chain []byte
	for i, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("meshtls: certificate %d of the chain: %w", i, err)
		}
		certs[i] = c
		chain = append(chain, der...)
	}
	if len(chain) > maxChainBytes {
		return nil, fmt.Errorf("meshtls: certificate chain is %d bytes, above %d (peer.MaxCredentialBytes less a signature)", len(chain), maxChainBytes)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("meshtls: private key of type %T cannot sign", cert.PrivateKey)
	}
	switch signer.Public().(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PublicKey:
	default:
		return nil, fmt.Errorf("meshtls: unsupported key type %T; use ECDSA, Ed25519 or RSA", signer.Public())
	}
	if pk, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pk.Equal(certs[0].PublicKey) {
		return nil, errors.New("meshtls: private key does not match the certificate")
	}
	c := cert
	c.Leaf = certs[0]
	m := &material{cert: &c, chain: chain, signer: signer, roots: roots, cas: cas, cache: newVerifiedCache()}
	if _, err := m.verifyChain(chain, time.Now()); err != nil {
		return nil, fmt.Errorf("meshtls: own certificate (subject %q) would be refused by peers trusting this CA bundle: %w", certs[0].Subject, err)
	}
	return m, nil
}

// maxChainBytes leaves room for the largest signature (RSA-8192) within
// peer.MaxCredentialBytes, which receivers enforce.
const maxChainBytes = 16<<10 - 1024

// ServerConfig returns a TLS server configuration that presents the
// current certificate and requires a client certificate signed by a
// current CA, both read at each handshake.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := r.cur.Load()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*m.cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.roots,
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}

// ClientConfig returns a TLS client configuration with the current
// certificate and CAs; set ServerName before use. Unlike DialOption it is
// a snapshot: call it again after a reload.
func (r *Reloader) ClientConfig() *tls.Config {
	m := r.cur.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*m.cert},
		RootCAs:      m.roots,
	}
}

// ServerOption is the grpc.Creds option for a server using ServerConfig.
func (r *Reloader) ServerOption() grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(r.ServerConfig()))
}

// DialOption returns transport credentials for gRPC clients: each
// handshake presents the current certificate and checks the server's
// against the current CAs and the host dialed.
func (r *Reloader) DialOption() grpc.DialOption {
	return grpc.WithTransportCredentials(clientCreds{r})
}

// clientCreds builds gRPC's TLS credentials afresh for each handshake, so
// that a reload applies to the next connection.
type clientCreds struct{ r *Reloader }

var _ credentials.TransportCredentials = clientCreds{}

func (c clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.r.ClientConfig()).ClientHandshake(ctx, authority, conn)
}

func (c clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("meshtls: dial credentials cannot serve; use ServerOption")
}

func (c clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c clientCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is deprecated in gRPC; the host dialed is checked.
func (c clientCreds) OverrideServerName(string) error {
	return errors.New("meshtls: OverrideServerName is not supported; dial the name the certificate holds")
}
