package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gossipmesh/mesh/meshtls"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// AdminAddr is a parsed admin address.
type AdminAddr struct {
	Network string // "unix" or "tcp"
	Address string // a socket path, or host:port
}

// ParseAdmin parses an admin address: "unix:PATH" or an absolute PATH for
// a unix socket, else "host:port" for TCP (port 0 picks one).
func ParseAdmin(s string) (AdminAddr, error) {
	path, isUnix := strings.CutPrefix(s, "unix:")
	if !isUnix && strings.HasPrefix(s, "/") {
		path, isUnix = s, true
	}
	if isUnix {
		path = strings.TrimPrefix(path, "//") // unix:///run/x, as gRPC writes it
		switch {
		case path == "":
			return AdminAddr{}, fmt.Errorf("--admin %q: no socket path; give unix:/run/mesh/mesh.sock or host:port", s)
		case len(path) > maxSocketPath:
			return AdminAddr{}, fmt.Errorf("--admin %q: the path is %d bytes, above the %d a unix socket allows; choose a shorter path", s, len(path), maxSocketPath)
		}
		return AdminAddr{Network: "unix", Address: filepath.Clean(path)}, nil
	}
	if _, _, err := splitHostPort(s, true); err != nil {
		return AdminAddr{}, fmt.Errorf("--admin: %w; or give unix:PATH for a unix socket", err)
	}
	return AdminAddr{Network: "tcp", Address: s}, nil
}

// String returns the address as --admin and gRPC targets spell it.
func (a AdminAddr) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Address
	}
	return a.Address
}

// Local reports whether only processes on this host can reach a: a unix
// socket, or TCP on a loopback address.
func (a AdminAddr) Local() bool {
	if a.Network == "unix" {
		return true
	}
	h, _, err := net.SplitHostPort(a.Address)
	if err != nil {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// listenAdmin binds the admin address. The TCP check on the bound address
// catches a "localhost" that resolves to something else.
func listenAdmin(a AdminAddr, withTLS bool) (net.Listener, error) {
	if a.Network == "unix" {
		return listenUnix(a.Address)
	}
	lis, err := listen(a.Address, "--admin")
	if err != nil {
		return nil, err
	}
	if ip := lis.Addr().(*net.TCPAddr).IP; !withTLS && !ip.IsLoopback() {
		lis.Close()
		return nil, fmt.Errorf("--admin %s: bound %s, which is not loopback; give 127.0.0.1:PORT, or require admin certificates with --admin-ca", a.Address, ip)
	}
	return lis, nil
}

// unixListener is a socket at path, removed on Close if it is still the
// file this listener created.
type unixListener struct {
	net.Listener
	path string
	st   os.FileInfo
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		if st, serr := os.Lstat(l.path); serr == nil && os.SameFile(st, l.st) {
			os.Remove(l.path)
		}
	})
	return err
}

// listenUnix listens on a unix socket at path that only this user (and
// root) can connect to: mode 0600, in place from the first moment. The
// socket is bound inside a fresh directory of mode 0700 and then renamed
// to path, so that no other user can connect in the window before the
// chmod (a umask would do it too, but it is process-wide). The directory
// of path is created (mode 0700) if missing, not its parents. A socket
// left at path by a crashed agent is replaced; one that answers, or
// anything else, is an error.
func listenUnix(path string) (net.Listener, error) {
	flag := "--admin unix:" + path
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s: cannot create directory %s: %w; create it writable by this user, or choose another --admin", flag, dir, unwrapPath(err))
	}
	if err := checkSocketDir(dir); err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s: %s exists and is not a socket; remove it or choose another --admin", flag, path)
		}
		conn, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			conn.Close()
			return nil, fmt.Errorf("%s: another process (an agent?) is serving on it; give each agent on a host its own --admin", flag)
		case errors.Is(err, syscall.ECONNREFUSED):
			// Left by an agent that did not stop cleanly: replaced below.
		default:
			return nil, fmt.Errorf("%s: a socket exists there and cannot be checked: %w; remove it if no agent uses it", flag, unwrapOp(err))
		}
	}
	tmp, err := os.MkdirTemp(dir, ".mesh-")
	if err != nil {
		return nil, fmt.Errorf("%s: cannot create a socket in %s: %w", flag, dir, unwrapPath(err))
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	if len(tmpPath) > maxSocketPath {
		return nil, fmt.Errorf("%s: the directory's path is too long to bind a socket in it (%d bytes with the temporary name, above %d); choose a shorter path", flag, len(tmpPath), maxSocketPath)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%s: cannot listen: %w", flag, unwrapOp(err))
	}
	ul.SetUnlinkOnClose(false) // the socket moves; unixListener removes it
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fail(err)
	}
	st, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &unixListener{Listener: ul, path: path, st: st}, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return unwrapPath(op.Err)
	}
	return err
}

// adminCAs holds the CAs of operators' certificates, reloaded from a file.
type adminCAs struct {
	file, memberFile string
	mu               sync.Mutex // serialises loads and guards sum
	sum              [sha256.Size]byte
	pool             atomic.Pointer[x509.CertPool]
}

func loadAdminCAs(file, memberFile string) (*adminCAs, error) {
	c := &adminCAs{file: file, memberFile: memberFile}
	if _, err := c.reload(true); err != nil {
		return nil, err
	}
	return c, nil
}

// reload re-reads the file (when force, or when its contents changed) and
// installs it if valid; on error the previous pool stays.
func (c *adminCAs) reload(force bool) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := os.ReadFile(c.file)
	if err != nil {
		return false, fmt.Errorf("--admin-ca: %w", err)
	}
	sum := sha256.Sum256(b)
	if !force && sum == c.sum {
		return false, nil
	}
	certs, err := parseCerts(b)
	if err != nil {
		return false, fmt.Errorf("--admin-ca %s: %w", c.file, err)
	}
	// A CA in both bundles would make every member's certificate an
	// admin's, which is what a separate bundle is for.
	mb, err := os.ReadFile(c.memberFile)
	if err != nil {
		return false, fmt.Errorf("--tls-ca: %w", err)
	}
	members, _ := parseCerts(mb) // the member bundle is checked by meshtls
	pool := x509.NewCertPool()
	for _, ac := range certs {
		for _, mc := range members {
			if bytes.Equal(ac.Raw, mc.Raw) {
				return false, fmt.Errorf("--admin-ca %s: CA %q is also in --tls-ca %s, so every member's certificate would be an admin's; issue admin certificates from a CA of their own", c.file, ac.Subject.String(), c.memberFile)
			}
		}
		pool.AddCert(ac)
	}
	c.pool.Store(pool)
	c.sum = sum
	return true, nil
}

func parseCerts(pemData []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
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
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

// adminTLS is the admin server's TLS configuration: the agent's current
// member certificate, and client certificates of the admin CAs only. Both
// are read at each handshake, so reloads apply to the next connection.
func adminTLS(member *meshtls.Reloader, admins *adminCAs) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: member.ClientConfig().Certificates, // the current one
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    admins.pool.Load(),
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}

// pollAdminCAs reloads the admin CAs when the file changes, until ctx is
// done, logging the outcome through report.
func (c *adminCAs) poll(ctx context.Context, every time.Duration, report func(bool, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := c.reload(false)
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if changed || (err != nil && msg != last) {
				report(changed, err)
			}
			last = msg
		}
	}
}
