package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// wait bounds every wait on a process: generous, the machine is shared.
const wait = 30 * time.Second

// meshBin is the agent built as operators are told to build it (README,
// "A static binary"), once for all tests.
var meshBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mesh-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	meshBin = filepath.Join(dir, "mesh")
	cmd := exec.Command("go", "build", "-trimpath", "-o", meshBin, "./cmd/mesh")
	cmd.Dir = ".." // the mesh module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "CGO_ENABLED=0 go build ./cmd/mesh: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The CGO_ENABLED=0 build is static: no program interpreter and no shared
// library, so it runs in a scratch or distroless image.
func TestStaticBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("checks an ELF binary; this is %s", runtime.GOOS)
	}
	f, err := elf.Open(meshBin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("static build has a %v program header: it needs a dynamic loader", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("static build imports libraries %v (%v)", libs, err)
	}
}

// agentProc is a `mesh agent` process started from a deployment file's
// command line.
type agentProc struct {
	cmd    *exec.Cmd
	stderr string // file
	done   chan error
	addr   string // from its "agent started" line
	admin  string
}

// startAgent runs argv (argv[0] is replaced by the built binary) with env
// added to this process's, and waits for it to log that it started.
func startAgent(t *testing.T, argv []string, env []string) *agentProc {
	t.Helper()
	p := &agentProc{stderr: filepath.Join(t.TempDir(), "stderr"), done: make(chan error, 1)}
	errf, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	p.cmd = exec.Command(meshBin, argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = errf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", argv, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.stderr)
			t.Logf("agent %q stderr:\n%s", argv, b)
		}
	})
	deadline := time.Now().Add(wait)
	for {
		b, _ := os.ReadFile(p.stderr)
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var l struct{ Msg, Addr, Admin string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "agent started" {
				p.addr, p.admin = l.Addr, l.Admin
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup
			t.Fatalf("agent %q exited before starting: %v\n%s", argv, err, b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %q did not start within %v:\n%s", argv, wait, b)
		}
	}
}

// exited waits for the agent to exit and returns its error (nil: exit 0).
func (p *agentProc) exited(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(wait):
		t.Fatalf("agent did not exit within %v", wait)
		return nil
	}
}

// run runs a client command line (argv[0] replaced by the built binary).
func run(t *testing.T, argv []string, env []string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshBin, argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// flagValue returns the value of --name in args ("--name=v" or "--name v").
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// setFlag replaces the value of --name in args, in either form.
func setFlag(args []string, name, value string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		if strings.HasPrefix(a, "--"+name+"=") {
			out[i] = "--" + name + "=" + value
		} else if a == "--"+name && i+1 < len(out) {
			out[i+1] = value
		}
	}
	return out
}

var kubeVar = regexp.MustCompile(`\$\(([A-Z_]+)\)`)

// expand substitutes Kubernetes' $(VAR) references as the kubelet does.
func expand(s string, vars map[string]string) string {
	return kubeVar.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s: %v\n%s", what, err, ee.Stderr)
		}
		t.Fatalf("%s: %v", what, err)
	}
}
