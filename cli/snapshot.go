package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/client"
)

// newSnapshotCmd is `subsys snapshot NAME [SNAP]` and its verbs list,
// restore and delete.
func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot NAME [SNAP]",
		Short: "Take a snapshot of a stopped distro's files; list, restore and delete snapshots",
		Long: "Take a snapshot of a stopped distro's files (a version 1 tree, a version 2 disk image; a reflink where\n" +
			"the file system can, a sparse copy otherwise), named SNAP or by the time. `subsys snapshot list NAME`,\n" +
			"`subsys snapshot restore NAME SNAP` (replaces the distro's files in one step; a failure leaves them) and\n" +
			"`subsys snapshot delete NAME SNAP` manage them.",
		Args: cobra.RangeArgs(1, 2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			snap := ""
			if len(args) == 2 {
				snap = args[1]
			}
			progress, bar := operationBar("snapshot of " + args[0])
			op, err := c.TakeSnapshot(ctx, args[0], snap, progress)
			if err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			list, _ := c.Snapshots(ctx, args[0])
			name := snap
			if name == "" && len(list) > 0 {
				name = list[len(list)-1].Name
			}
			fmt.Fprintf(stderr, "Took snapshot %s of %s.\n", sanitize(name), sanitize(op.Distro))
			return nil
		}),
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list NAME",
		Short: "List a distro's snapshots",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			list, err := c.Snapshots(ctx, args[0])
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SNAPSHOT\tVERSION\tSIZE\tTAKEN")
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", sanitize(s.Name), s.Version, formatBytes(s.Bytes), s.CreatedAt.Local().Format("2006-01-02 15:04:05"))
			}
			return w.Flush()
		}),
	}, &cobra.Command{
		Use:   "restore NAME SNAP",
		Short: "Put a snapshot's files in place of a stopped distro's",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			progress, bar := operationBar(fmt.Sprintf("restoring %s to %s", args[0], args[1]))
			if _, err := c.RestoreSnapshot(ctx, args[0], args[1], progress); err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			fmt.Fprintf(stderr, "Restored %s to snapshot %s.\n", sanitize(args[0]), sanitize(args[1]))
			return nil
		}),
	}, &cobra.Command{
		Use:   "delete NAME SNAP",
		Short: "Delete a snapshot",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			if err := c.DeleteSnapshot(ctx, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "Deleted snapshot %s of %s.\n", sanitize(args[1]), sanitize(args[0]))
			return nil
		}),
	})
	return cmd
}
