//go:build linux

package agent

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gossipmesh/mesh/meshpb"
)

// nobody is the uid the cross-user checks connect as.
const nobody = 65534

// connectAs connects to the unix socket at path with the file-system
// identity of uid, on a thread of its own: setfsuid changes only the
// calling thread, and moving off root's fsuid drops the capabilities that
// would bypass the socket's mode. The thread is not reused afterwards.
func connectAs(uid int, path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Setfsuid(uid); err != nil {
			errc <- err
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		errc <- unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	}()
	return <-errc
}

// The admin socket is mode 0600 from its first moment, answers its owner,
// refuses other users, and is removed when the agent stops. As root the
// test shows the refusal by connecting as another user, next to a control
// socket of mode 0666 in the same directory that the same user can reach;
// as another user it checks the mode and the owner.
func TestAdminUnixSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "mesh.sock")
	r := start(t, Config{Admin: "unix:" + path})
	if got := r.a.AdminAddr(); got != "unix:"+path {
		t.Errorf("AdminAddr = %q, want unix:%s", got, path)
	}
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 || int(st.Sys().(*syscall.Stat_t).Uid) != os.Geteuid() {
		t.Errorf("admin socket: mode %v owner %d; want a socket, 0600, owned by %d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid, os.Geteuid())
	}
	if dst, err := os.Stat(dir); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("socket directory created with %v, %v; want 0700", dst.Mode(), err)
	}
	members(t, meshpb.NewMeshAdminClient(dial(t, r.a.AdminAddr()))) // the owner gets in
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".mesh-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary binding directories left: %v", leftovers)
	}

	if os.Geteuid() != 0 {
		t.Logf("not root: the refusal of another user is shown by the mode above only")
	} else {
		// Let nobody traverse the directories, so that the socket's own
		// mode is what decides.
		for d := dir; d != filepath.Clean(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		control := filepath.Join(dir, "control.sock")
		cl, err := net.Listen("unix", control)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := os.Chmod(control, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := connectAs(nobody, control); err != nil {
			t.Fatalf("control: uid %d cannot connect to a 0666 socket beside the admin one: %v", nobody, err)
		}
		if err := connectAs(nobody, path); !errors.Is(err, unix.EACCES) {
			t.Errorf("uid %d connecting to the admin socket: %v, want permission denied", nobody, err)
		}
	}

	r.stop(t)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin socket after the agent stopped: %v; want it removed", err)
	}
}

// A socket left by a crashed agent is replaced; one an agent serves on, or
// a file that is not a socket, is an error that says what to do.
func TestAdminUnixSocketInUse(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the file stays, nothing listens: a crashed agent's
	r := start(t, Config{Admin: "unix:" + stale})
	members(t, meshpb.NewMeshAdminClient(dial(t, r.a.AdminAddr())))

	_, err = New(Config{Bind: "127.0.0.1:0", Admin: "unix:" + stale})
	if err == nil || !strings.Contains(err.Error(), "another process (an agent?) is serving on it; give each agent on a host its own --admin") {
		t.Errorf("New on a served socket: %v", err)
	}
	members(t, meshpb.NewMeshAdminClient(dial(t, r.a.AdminAddr()))) // still served

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Bind: "127.0.0.1:0", Admin: "unix:" + file})
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket; remove it or choose another --admin") {
		t.Errorf("New on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("the regular file was changed: %q", b)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Bind: "127.0.0.1:0", Admin: "unix:" + filepath.Join(open, "mesh.sock")})
	if err == nil || !strings.Contains(err.Error(), "is writable by other users (mode -rwxrwxrwx) without the sticky bit") {
		t.Errorf("New in a world-writable directory: %v", err)
	}
	if os.Geteuid() == 0 {
		// A directory another user made first, as /tmp/mesh-UID could be.
		squatted := filepath.Join(dir, "squatted")
		if err := os.Mkdir(squatted, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(squatted, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		_, err = New(Config{Bind: "127.0.0.1:0", Admin: "unix:" + filepath.Join(squatted, "mesh.sock")})
		if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534, not this user (0)") {
			t.Errorf("New in a directory of another user: %v", err)
		}
	}
	_, err = New(Config{Bind: "127.0.0.1:0", Admin: "unix:" + filepath.Join(dir, "no", "such", "mesh.sock")})
	if err == nil || !strings.Contains(err.Error(), "cannot create directory") {
		t.Errorf("New with a missing parent directory: %v", err)
	}
}
