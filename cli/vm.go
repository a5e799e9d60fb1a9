package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

// newVMCmd is `subsys vm` (the utility VM's status) and `subsys vm console`.
func newVMCmd(g *globals) *cobra.Command {
	cmd := simple(g, "vm", "Show the utility VM that runs version 2 distros", 0, func(ctx context.Context, c *client.Client, _ []string) error {
		st, err := c.VM(ctx)
		if err != nil {
			return err
		}
		printVM(stdout, st, time.Now())
		return nil
	})
	cmd.AddCommand(simple(g, "console", "Print the utility VM's serial console (the last 1 MiB), escaped", 0,
		func(ctx context.Context, c *client.Client, _ []string) error {
			b, err := c.VMConsole(ctx)
			if err != nil {
				return err
			}
			writeEscapedLines(stdout, b)
			return nil
		}))
	cmd.AddCommand(simple(g, "reclaim", "Give the utility VM's page cache back to the host now", 0,
		func(ctx context.Context, c *client.Client, _ []string) error {
			r, err := c.ReclaimVM(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "The VM dropped %s of page cache; it uses %s, caches %s. QEMU's resident memory (%s now) falls over the next seconds.\n",
				formatBytes(r.DroppedBytes), formatBytes(r.Memory.UsedBytes), formatBytes(r.Memory.CachedBytes), formatBytes(r.RSSBytes))
			return nil
		}))
	return cmd
}

// printVM writes the VM's status for people, every string of the server's
// (and so maybe of the guest's) sanitized.
func printVM(w io.Writer, st api.VMStatus, now time.Time) {
	if !st.Available {
		fmt.Fprintln(w, "VM: not available (this server has no version 2 backend)")
		return
	}
	line := "VM: " + sanitize(string(st.State))
	if st.Accel != "" {
		line += " (" + sanitize(st.Accel) + ")"
	}
	if st.State == api.VMRunning && !st.StartedAt.IsZero() {
		line += ", up " + now.Sub(st.StartedAt).Truncate(time.Second).String()
	}
	if st.PID != 0 {
		line += fmt.Sprintf(", pid %d", st.PID)
	}
	fmt.Fprintln(w, line)
	if st.AccelNote != "" {
		fmt.Fprintf(w, "  note: %s\n", sanitize(st.AccelNote))
	}
	mem := fmt.Sprintf("  memory: %d MiB", st.MemoryMiB)
	if st.RSSBytes > 0 {
		mem += fmt.Sprintf(" (QEMU resident: %s)", formatBytes(st.RSSBytes))
	}
	fmt.Fprintf(w, "%s, CPUs: %d\n", mem, st.CPUs)
	if m := st.Memory; m != nil {
		fmt.Fprintf(w, "  guest memory: %s used, %s cache, %s available of %s; reclaim (%s) gave back %s\n",
			formatBytes(m.UsedBytes), formatBytes(m.CachedBytes), formatBytes(m.AvailableBytes), formatBytes(m.TotalBytes),
			sanitize(st.MemoryReclaim), formatBytes(m.ReclaimedBytes))
	}
	if st.Kernel != "" || st.KernelRelease != "" {
		k := sanitize(st.Kernel)
		if st.KernelRelease != "" {
			k = strings.TrimSpace(k + " (" + sanitize(st.KernelRelease) + ")")
		}
		fmt.Fprintf(w, "  kernel: %s\n", k)
	}
	if len(st.Addresses) > 0 {
		addrs := make([]string, len(st.Addresses))
		for i, a := range st.Addresses {
			addrs[i] = sanitize(a)
		}
		fmt.Fprintf(w, "  addresses: %s (the host: host.subsys.internal)\n", strings.Join(addrs, ", "))
	}
	if st.Network != "" {
		fmt.Fprintf(w, "  network: %s\n", sanitize(st.Network))
	}
	if st.HostFiles != "" {
		fmt.Fprintf(w, "  host files (/mnt/host): %s\n", sanitize(st.HostFiles))
	}
	if st.HostFilesNote != "" {
		fmt.Fprintf(w, "  host files note: %s\n", sanitize(st.HostFilesNote))
	}
	fmt.Fprintf(w, "  version 2 distros running: %d\n", len(st.Distros))
	if st.IdleTimeoutS < 0 {
		fmt.Fprintln(w, "  idle timeout: none (stays up)")
	} else {
		fmt.Fprintf(w, "  idle timeout: %s\n", time.Duration(st.IdleTimeoutS)*time.Second)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", sanitize(st.Error))
	}
}

// writeEscapedLines writes b (untrusted bytes: a guest's console) one line at
// a time, each sanitized, so that escape sequences, bidi characters and
// invalid UTF-8 show as escapes while the console's own line breaks stay; a
// CR before a LF (serial consoles end lines with both) is dropped.
func writeEscapedLines(w io.Writer, b []byte) {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return
	}
	var out strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		out.WriteString(sanitize(strings.TrimSuffix(line, "\r")))
		out.WriteByte('\n')
	}
	io.WriteString(w, out.String())
}

// formatBytes is n in binary units with one decimal (3.5 GiB).
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// parseSize reads a size as people write it: bytes ("1073741824"), or a
// number with a binary unit, K, M, G or T, optionally followed by B or iB
// and in any case ("256G", "512MB", "1.5TiB"). Units are powers of 1024, as
// disk sizes are given in wsl's settings.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1.0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			t = t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, or one with K, M, G or T (256G, 512M)", s)
	}
	return int64(f * mult), nil
}

// newSetVersionCmd is `subsys set-version NAME 1|2`, as `wsl --set-version`:
// it converts the distro and waits, showing the conversion's progress.
func newSetVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set-version NAME 1|2",
		Short: "Convert a distro to version 1 (shared kernel) or 2 (utility VM)",
		Long: "Convert a distro to version 1 (shared kernel, files in a directory) or 2 (utility VM, files in an ext4 disk image),\n" +
			"as `wsl --set-version` does. The distro is stopped first; its files are copied, so the conversion needs room for a second copy.\n" +
			"Ctrl-C stops the waiting, not the conversion (cancel it through the API's DELETE /operations/ID).",
		Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			name := args[0]
			version, err := strconv.Atoi(args[1])
			if err != nil || (version != 1 && version != 2) {
				return fmt.Errorf("set-version %s: the version is 1 or 2, not %q", name, args[1])
			}
			progress, bar := operationBar(fmt.Sprintf("converting %s to version %d", name, version))
			_, err = c.SetVersion(ctx, name, version, progress)
			if err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			fmt.Fprintf(stderr, "Converted %s to version %d.\n", sanitize(name), version)
			return nil
		}),
	}
}
