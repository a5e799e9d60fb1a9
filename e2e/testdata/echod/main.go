// Command echod is the echo server the end-to-end tests run inside a distro: it
// echoes every TCP connection and UDP datagram on the addresses it is given.
// It is static Go, so it runs in the busybox test root file system.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"strings"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var tcp, udp list
	flag.Var(&tcp, "tcp", "TCP address to echo on (repeatable)")
	flag.Var(&udp, "udp", "UDP address to echo on (repeatable)")
	flag.Parse()
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
