// Package client is the Go client of subsys's REST API: the calls of the CLI
// and the dashboard as typed methods over package api's types, for programs
// that drive subsys — import and export distros, run commands (collected, or
// streamed over the exec websocket), attach terminals, expose ports, manage
// portproxy rules, wait for or cancel operations, and follow the server's
// events.
//
// A Client reaches the server over its unix socket, <data>/subsys.sock, where
// the server knows the caller by its credentials (root, or a member of the
// subsys group) and no token is sent; or over TCP at a URL with the API token
// (the file token in the server's data directory). FromEnvironment picks the
// way the subsys CLI does: SUBSYS_URL and SUBSYS_TOKEN when set, else the
// socket.
//
// Every method takes a context. An error reply of the server is an
// *api.Error (HTTP status, code, message), a failed operation an
// *api.OperationError, a server that is not running a *NotRunningError and
// one that cannot be reached otherwise an *UnreachableError: use errors.As. Messages may quote what a distro supplied (a process name, a
// file name): escape them before printing them on a terminal.
//
// A complete program, which imports a distro unless it is there, runs a
// command in it and follows the server's events for a while:
//
//	package main
//
//	import (
//		"context"
//		"errors"
//		"fmt"
//		"log"
//		"os"
//		"time"
//
//		"github.com/subsys-dev/subsys/api"
//		"github.com/subsys-dev/subsys/client"
//	)
//
//	func main() {
//		ctx := context.Background()
//		c, err := client.FromEnvironment("") // the socket in /var/lib/subsys, or SUBSYS_URL
//		if err != nil {
//			log.Fatal(err)
//		}
//		if _, err := c.Get(ctx, "deb"); err != nil {
//			var ae *api.Error
//			if !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
//				log.Fatal(err)
//			}
//			f, err := os.Open("rootfs.tar.gz")
//			if err != nil {
//				log.Fatal(err)
//			}
//			defer f.Close()
//			op, err := c.Import(ctx, "deb", f, client.ImportOptions{
//				Version:    1,
//				OnProgress: func(op api.Operation) { fmt.Printf("%s: %d bytes\n", op.Status, op.Progress.Done) },
//			})
//			if err != nil {
//				log.Fatal(err) // *api.Error (refused) or *api.OperationError (failed)
//			}
//			fmt.Printf("imported %d entries\n", op.Result.Entries)
//		}
//
//		res, err := c.Exec(ctx, "deb", api.ExecRequest{Argv: []string{"uname", "-a"}})
//		if err != nil {
//			log.Fatal(err)
//		}
//		out, _ := res.StdoutBytes()
//		fmt.Printf("exit %d: %s", res.ExitCode, out)
//
//		// Streamed, as `subsys run` does: input, output and the exit code.
//		p, err := c.ExecStream(ctx, "deb", api.ExecStart{Argv: []string{"sh", "-c", "read x; echo got $x"}})
//		if err != nil {
//			log.Fatal(err)
//		}
//		p.Write([]byte("hello\n"))
//		st, err := p.Wait(os.Stdout, os.Stderr)
//		p.Close()
//		if err != nil {
//			log.Fatal(err)
//		}
//		fmt.Println("exit", st.Code)
//
//		// Live changes: a snapshot on every (re)connect, then changes.
//		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
//		defer cancel()
//		events, err := c.Events(ctx)
//		if err != nil {
//			log.Fatal(err)
//		}
//		for e := range events.C {
//			switch e.Type {
//			case api.EventSnapshot:
//				fmt.Println(len(e.Snapshot.Distros), "distros")
//			case api.EventDistro:
//				fmt.Println(e.Distro.Name, e.Distro.State)
//			}
//		}
//	}
//
// The CLI (package cli) is a client like any other: every verb but serve is
// a few calls of this package. client imports api and nothing else of subsys.
package client
