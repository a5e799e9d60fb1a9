package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/client"
)

// newResizeCmd is `subsys resize NAME SIZE`: a version 2 distro's disk
// grows (online when it runs) or shrinks (when it is stopped).
func newResizeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resize NAME SIZE",
		Short: "Set a version 2 distro's disk size (grow online, or shrink while stopped)",
		Long: "Set a version 2 distro's disk size, e.g. 512G or 20GiB (powers of 1024).\n" +
			"A running distro's disk grows at once, and df inside shows it. A stopped distro's file system is checked\n" +
			"(e2fsck) and grown or shrunk (resize2fs) inside the utility VM; a size its files do not fit in is refused,\n" +
			"naming the minimum. Images are sparse: a larger disk takes no host space until it is written.",
		Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			name := args[0]
			size, err := parseSize(args[1])
			if err != nil {
				return fmt.Errorf("resize %s: %w", name, err)
			}
			progress, bar := operationBar(fmt.Sprintf("resizing %s", name))
			if _, err := c.Resize(ctx, name, size, progress); err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			fmt.Fprintf(stderr, "Resized %s's disk to %s.\n", sanitize(name), formatBytes(size-size%4096))
			return nil
		}),
	}
}

// newCompactCmd is `subsys compact NAME`: the distro's free blocks go back
// to the host.
func newCompactCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "compact NAME",
		Short: "Give a version 2 distro's free disk space back to the host",
		Long: "Give a version 2 distro's free disk space back to the host: fstrim inside a running distro,\n" +
			"a trim of its disk mounted in the utility VM when it is stopped. The image is sparse: freed blocks become holes.",
		Args: cobra.ExactArgs(1),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			name := args[0]
			progress, bar := operationBar(fmt.Sprintf("compacting %s", name))
			op, err := c.Compact(ctx, name, progress)
			if err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			gave := int64(0)
			if op.Result != nil {
				gave = op.Result.Bytes
			}
			msg := fmt.Sprintf("Compacted %s: %s given back", sanitize(name), formatBytes(gave))
			if d, err := c.Get(ctx, name); err == nil && d.DiskMaxBytes > 0 {
				msg += fmt.Sprintf("; its image takes %s of %s", formatBytes(d.DiskBytes), formatBytes(d.DiskMaxBytes))
			}
			fmt.Fprintln(stderr, msg+".")
			return nil
		}),
	}
}

// newMoveCmd is `subsys move NAME DIR`, as `wsl --manage NAME --move DIR`.
func newMoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "move NAME DIR",
		Short: "Move a stopped distro's files to another directory",
		Long: "Move a stopped distro's files (a version 1 tree or a version 2 disk image) to DIR, which must be empty or absent,\n" +
			"as `wsl --manage NAME --move DIR` does. Another file system is fine: the files are copied, then the old ones removed.\n" +
			"A failure moves nothing.",
		Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			name := args[0]
			dir, err := filepath.Abs(args[1])
			if err != nil {
				return fmt.Errorf("move %s: %w", name, err)
			}
			progress, bar := operationBar(fmt.Sprintf("moving %s", name))
			if _, err := c.Move(ctx, name, dir, progress); err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			fmt.Fprintf(stderr, "Moved %s to %s.\n", sanitize(name), sanitize(dir))
			return nil
		}),
	}
}
