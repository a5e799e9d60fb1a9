// Command poweroff is the init of the benchmark's bare VM: it powers the
// machine off at once, so a boot to it measures the kernel and QEMU alone.
package main

import "golang.org/x/sys/unix"

func main() {
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
