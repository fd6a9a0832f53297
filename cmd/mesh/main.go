// Command mesh runs a mesh agent and talks to running ones.
//
//	mesh demo                                  # a cluster in one process, in a few seconds
//	mesh agent --bind 127.0.0.1:7946 --join 127.0.0.1:7947
//	mesh members [--json]                      # what the agent at --admin sees
//	mesh join ADDR...                          # more seeds
//	mesh meta set name=api-7 zone=b            # change the agent's meta
//	mesh watch [--json]                        # membership events as they happen
//	mesh wait-converged [--timeout 30s]        # for deploy scripts
//	mesh leave                                 # leave gracefully; the agent exits
//
// Run `mesh COMMAND -h` for a command's flags. Errors are one line on
// stderr; the exit code is 2 for a usage error, 1 for any other failure.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands []command

func init() {
	commands = []command{
		{"agent", "[flags]", "run a member of a cluster (gossip and health on --bind, admin API on --admin)", runAgent},
		{"members", "[--json]", "list the members the agent at --admin knows", runMembers},
		{"join", "ADDR...", "give the agent more seeds; host names stand for all their addresses", runJoin},
		{"meta", "set name=N k=v... | delete KEY...", "change the agent's name and tags", runMeta},
		{"leave", "", "make the agent leave the cluster gracefully and exit", runLeave},
		{"watch", "[--json]", "print membership events as the agent sees them", runWatch},
		{"wait-converged", "[--timeout 30s]", "wait until every member holds the agent's view (exit 1 on timeout)", runWaitConverged},
		{"demo", "[--peers 8] [--period 100ms]", "start a cluster in this process and show joins, a meta update, a leave and a crash", runDemo},
	}
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code. SIGINT and
// SIGTERM cancel the context the command sees (the agent then leaves
// gracefully); a second signal kills the process as usual.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // restore default handling: a second signal kills
			}()
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "mesh: unknown command %q (run 'mesh help')\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "mesh: gossip cluster membership over gRPC.")
	fmt.Fprintln(w, "\nUsage: mesh COMMAND [flags]; 'mesh COMMAND -h' lists a command's flags.")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nStart with 'mesh demo'.")
}
