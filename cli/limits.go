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

// newLimitsCmd is `subsys limits NAME [--memory-max SIZE] [--cpu-max CORES]
// [--pids-max N]`: it prints a distro's limits and what it uses, or sets them.
func newLimitsCmd(g *globals) *cobra.Command {
	var memoryMax, cpuMax, pidsMax string
	cmd := &cobra.Command{
		Use:   "limits NAME",
		Short: "Show or set a distro's memory, CPU and process limits",
		Long: "Show a distro's limits and what it uses now, or set them with the flags:\n" +
			"  --memory-max SIZE   memory, e.g. 2G or 512M (powers of 1024; at least 32M)\n" +
			"  --cpu-max CORES     CPU time in cores, e.g. 0.5 or 2\n" +
			"  --pids-max N        processes and threads at once (at least 16)\n" +
			"\"0\" or \"none\" removes a limit. A running distro gets new limits at once; a memory limit below what it\n" +
			"uses makes the kernel reclaim its memory, then kill its processes (out of memory) until it fits.",
		Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			name := args[0]
			var u api.DistroUpdate
			var err error
			if memoryMax != "" {
				if u.MemoryMax, err = parseLimit(memoryMax, parseSize); err != nil {
					return fmt.Errorf("limits %s: --memory-max: %w", name, err)
				}
			}
			if cpuMax != "" {
				v, err := parseCores(cpuMax)
				if err != nil {
					return fmt.Errorf("limits %s: --cpu-max: %w", name, err)
				}
				u.CPUMax = &v
			}
			if pidsMax != "" {
				if u.PidsMax, err = parseLimit(pidsMax, parseCount); err != nil {
					return fmt.Errorf("limits %s: --pids-max: %w", name, err)
				}
			}
			var d api.Distro
			if u.MemoryMax != nil || u.CPUMax != nil || u.PidsMax != nil {
				d, err = c.Update(ctx, name, u)
			} else {
				d, err = c.Get(ctx, name)
			}
			if err != nil {
				return err
			}
			printLimits(stdout, d)
			return nil
		}),
	}
	cmd.Flags().StringVar(&memoryMax, "memory-max", "", "memory limit: SIZE (2G, 512M), or 0/none to remove it")
	cmd.Flags().StringVar(&cpuMax, "cpu-max", "", "CPU limit in cores (0.5, 2), or 0/none to remove it")
	cmd.Flags().StringVar(&pidsMax, "pids-max", "", "process limit, or 0/none to remove it")
	return cmd
}

// parseLimit reads "0" or "none" as no limit, anything else with parse.
func parseLimit(s string, parse func(string) (int64, error)) (*int64, error) {
	var v int64
	if t := strings.ToLower(strings.TrimSpace(s)); t != "0" && t != "none" {
		var err error
		if v, err = parse(s); err != nil {
			return nil, err
		}
	}
	return &v, nil
}

// parseCount reads a positive whole number.
func parseCount(s string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q: want a positive whole number", s)
	}
	return v, nil
}

// parseCores reads a number of cores ("0.5"), "0" or "none" for no limit.
func parseCores(s string) (float64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "none" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q: want a number of cores (0.5, 2)", s)
	}
	return v, nil
}

// printLimits prints d's limits beside its use. The server's strings are
// escaped; the figures are numbers.
func printLimits(w io.Writer, d api.Distro) {
	running := d.State == api.StateRunning
	use := func(s string) string {
		if !running {
			return "-"
		}
		return s
	}
	limit := func(set bool, s string) string {
		if !set {
			return "none"
		}
		return s
	}
	fmt.Fprintf(w, "%s (%s)\n", sanitize(d.Name), sanitize(string(d.State)))
	fmt.Fprintf(w, "%-8s %-12s %s\n", "", "LIMIT", "USE")
	fmt.Fprintf(w, "%-8s %-12s %s\n", "memory", limit(d.MemoryMax > 0, formatBytes(d.MemoryMax)), use(formatBytes(d.MemoryBytes)))
	fmt.Fprintf(w, "%-8s %-12s %s\n", "cpu", limit(d.CPUMax > 0, strconv.FormatFloat(d.CPUMax, 'g', 4, 64)+" cores"), use(fmt.Sprintf("%.1f%% of a core", d.CPUPercent)))
	fmt.Fprintf(w, "%-8s %-12s %s\n", "pids", limit(d.PidsMax > 0, strconv.FormatInt(d.PidsMax, 10)), use(strconv.FormatInt(d.Pids, 10)))
	if running && d.OOMKills > 0 {
		at := ""
		if !d.LastOOMAt.IsZero() {
			at = ", the latest at " + d.LastOOMAt.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(w, "Out of memory: %d process(es) killed since it started%s.\n", d.OOMKills, at)
	}
}
