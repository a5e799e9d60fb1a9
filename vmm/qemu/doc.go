// Package qemu runs one QEMU virtual machine as a child process and controls it
// through QMP, the QEMU Machine Protocol. It is the groundwork of version 2
// distros' utility VM on Linux; nothing in the server uses it yet.
//
// A VM is started from a Config: Config.Args turns it into QEMU's argv without
// touching the machine, so the command line is tested as a table. Start
// creates the run directory (mode 0700, because whoever can reach the QMP
// socket owns the VM), starts qemu-system-x86_64, attaches to the serial
// console and to QMP through unix sockets in that directory, and returns once
// QMP has answered. QEMU is the server of both sockets, so that a later
// subsys could attach again to a VM that outlived it.
//
// QMP is spoken by a small client of this package (qmp.go) rather than by
// github.com/digitalocean/go-qemu/qmp: that package's SocketMonitor takes no
// context in Connect or Run, cannot abandon a command, matches replies by
// order instead of by id, stalls command replies when an event is not read,
// and ends on a reply longer than 64 KiB; each is a blocking call without a
// way out, which this project does not allow.
package qemu
