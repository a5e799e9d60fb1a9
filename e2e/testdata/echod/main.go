// Command echod is the echo server the end-to-end tests run inside a distro: it
// echoes every TCP connection and UDP datagram on the addresses it is given.
// It is static Go, so it runs in the busybox test root file system.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var tcp, udp list
	flag.Var(&tcp, "tcp", "TCP address to echo on (repeatable)")
	flag.Var(&udp, "udp", "UDP address to echo on (repeatable)")
	dial := flag.String("dial", "", "client mode: network (tcp, udp, or udp-unconnected: an unconnected socket that waits a second and a half first) to send one ping over to -to and await its echo")
	to := flag.String("to", "", "client mode: the echo server's address")
	nested := flag.Bool("nested-pidns", false, "run the server in a new PID namespace of its own, as a container in the distro would")
	flag.Parse()
	if *nested {
		args := []string{}
		for _, a := range os.Args[1:] {
			if a != "-nested-pidns" {
				args = append(args, a)
			}
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
		if err := cmd.Run(); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *dial == "udp-unconnected" {
		// A resolver's or NTP client's socket: bound, unconnected, long
		// enough for the network manager to list it as a UDP port.
		pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			log.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		dst, err := net.ResolveUDPAddr("udp4", *to)
		if err != nil {
			log.Fatal(err)
		}
		pc.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := pc.WriteTo([]byte("ping"), dst); err != nil {
			log.Fatal(err)
		}
		buf := make([]byte, 16)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf[:n]))
		return
	}
	if *dial != "" {
		c, err := net.DialTimeout(*dial, *to, 3*time.Second)
		if err != nil {
			log.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 4)
		if _, err := c.Write([]byte("ping")); err != nil {
			log.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf))
		return
	}
	for _, a := range tcp {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					log.Fatal(err)
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
	}
	for _, a := range udp {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					log.Fatal(err)
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
	}
	select {}
}
