package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gossipmesh/mesh/meshtls/meshtlstest"
)

// TestBinaryTLS runs `mesh agent` with mutual TLS as separate processes:
// two agents converge; client commands work with --tls-* and fail clearly
// without; SIGHUP reloads rewritten certificate files.
func TestBinaryTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildMesh(t)
	ca := meshtlstest.NewCA(t, "mesh test ca")
	files := func() meshtlstest.Files {
		return meshtlstest.WriteFiles(t, t.TempDir(), ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), ca)
	}
	tlsArgs := func(f meshtlstest.Files) []string {
		return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
	}
	fa, fb, fc := files(), files(), files()
	a := startAgent(t, bin, "a", tlsArgs(fa)...)
	b := startAgent(t, bin, "b", append(tlsArgs(fb), "--join", a.addr)...)

	members := func(f meshtlstest.Files, addr string) (membersJSON, int, string) {
		code, out, errOut := cli(bin, append([]string{"members", "--json", "--addr", addr}, tlsArgs(f)...)...)
		var m membersJSON
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("members --json: %v in %q", err, out)
			}
		}
		return m, code, errOut
	}
	for deadline := time.Now().Add(binWait); ; time.Sleep(50 * time.Millisecond) {
		m, code, errOut := members(fc, a.addr)
		if code == 0 && m.alive() == 2 && m.Converged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mTLS agents did not converge: exit %d %s %+v", code, errOut, m)
		}
	}
	if _, code, _ := members(fc, b.addr); code != 0 {
		t.Fatalf("members --addr %s with TLS: exit %d", b.addr, code)
	}

	code, _, errOut := cli(bin, "members", "--addr", a.addr, "--timeout", "5s")
	t.Logf("plaintext client: %s", errOut)
	if !strings.Contains(errOut, "pass --tls-cert") {
		t.Errorf("no TLS hint in %q", errOut)
	}
	if code != exitFail || !oneLine(errOut) || !strings.Contains(errOut, a.addr) {
		t.Errorf("members without --tls-* against an mTLS agent: exit %d, %q; want exit 1 and one line naming the agent", code, errOut)
	}
	code, _, errOut = cli(bin, "members", "--addr", a.addr, "--tls-cert", fc.Cert)
	if code != exitUsage || !strings.Contains(errOut, "--tls-cert, --tls-key and --tls-ca go together") {
		t.Errorf("members with --tls-cert alone: exit %d, %q; want a usage error", code, errOut)
	}
	code, _, errOut = cli(bin, "agent", "--bind", "127.0.0.1:0", "--tls-cert", fc.Cert)
	if code != exitUsage || !strings.Contains(errOut, "--tls-key is missing") {
		t.Errorf("agent with --tls-cert alone: exit %d, %q; want a usage error", code, errOut)
	}

	// Rotation: rewrite a's files with a new certificate, then SIGHUP.
	next := ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}})
	meshtlstest.WriteFiles(t, dirOf(fa.Cert), next, ca)
	a.signal(t, syscall.SIGHUP)
	serial := next.TLS.Leaf.SerialNumber.String()
	for deadline := time.Now().Add(binWait); !strings.Contains(readFile(a.err), `"serial":"`+serial+`"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not log the reload of serial %s:\n%s", serial, readFile(a.err))
		}
	}
	if m, code, errOut := members(fc, a.addr); code != 0 || m.alive() != 2 {
		t.Fatalf("after SIGHUP: exit %d %s %+v", code, errOut, m)
	}
	a.signal(t, syscall.SIGTERM)
	if st := a.wait(t); st.ExitCode() != 0 {
		t.Fatalf("agent exit %v after SIGTERM", st)
	}
}

func dirOf(path string) string { return path[:strings.LastIndexByte(path, '/')] }
