package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// oneLine reports whether s is exactly one line.
func oneLine(s string) bool { return strings.Count(s, "\n") == 1 && strings.HasSuffix(s, "\n") }

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `mesh: unknown command "frob"`},
		{[]string{"agent", "--bogus"}, "mesh agent: flag provided but not defined: -bogus (see 'mesh agent -h')"},
		{[]string{"members", "--admin", "nope"}, `mesh members: --admin: "nope" is not host:port (IPv6 as [::1]:7946); or give unix:PATH for a unix socket`},
		{[]string{"members", "--admin", "unix:/x", "--tls-ca", "ca.pem"}, "--tls-cert, --tls-key and --tls-ca apply to a TCP --admin address"},
		{[]string{"agent", "--admin", "unix:/x", "--admin-ca", "ca.pem"}, "--admin-ca applies to a TCP --admin address"},
		{[]string{"members", "extra"}, `unexpected argument "extra"`},
		{[]string{"join"}, "mesh join: no address to join"},
		{[]string{"meta", "set", "zone"}, `want key=value, got "zone"`},
		{[]string{"demo", "--peers", "2"}, "--peers 2: want 3..64"},
	} {
		code, out, errOut := runCmd(tc.args...)
		if code != exitUsage || out != "" || !oneLine(errOut) || !strings.Contains(errOut, tc.want) {
			t.Errorf("mesh %q: exit %d, stdout %q, stderr %q; want exit 2 and one line containing %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

func TestRunHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"agent", "-h"}, {"members", "--help"}, {"wait-converged", "-h"}, {"demo", "-h"}} {
		code, out, errOut := runCmd(args...)
		if code != exitOK || !strings.Contains(out, "mesh") || errOut != "" {
			t.Errorf("mesh %q: exit %d, stdout %q, stderr %q; want usage on stdout, exit 0", args, code, out, errOut)
		}
	}
}

func TestRunUnreachableAddr(t *testing.T) {
	addr := freeAddr(t)
	code, out, errOut := runCmd("members", "--admin", addr, "--timeout", "5s")
	want := "mesh members: cannot reach an agent at " + addr + ": connect: connection refused\n"
	if code != exitFail || out != "" || errOut != want {
		t.Errorf("members --admin %s: exit %d, stdout %q, stderr %q; want exit 1, %q", addr, code, out, errOut, want)
	}
}

func TestDemo(t *testing.T) {
	code, out, errOut := runCmd("demo", "--peers", "4", "--period", "50ms")
	if code != exitOK || errOut != "" {
		t.Fatalf("demo: exit %d, stderr %q\n%s", code, errOut, out)
	}
	for _, want := range []string{"every peer sees all 4 members", "4 of 4 peers report converged", "list peer-3 as left", "list peer-4 as failed", "Summary: 4 peers"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
