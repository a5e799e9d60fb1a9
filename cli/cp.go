package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

// distroRef matches DISTRO:/path, the distro side of `subsys cp`.
var distroRef = regexp.MustCompile(`^([a-zA-Z0-9][a-zA-Z0-9._-]{0,63}):(/.*)$`)

// splitRef splits "DISTRO:/path" into its parts; ok is false for a local
// path (write ./a:/b for a local file named like that).
func splitRef(s string) (distro, p string, ok bool) {
	m := distroRef.FindStringSubmatch(s)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// cleanDistroPath cleans a distro path the user typed: the API takes only
// clean absolute paths.
func cleanDistroPath(p string) string { return path.Clean("/" + p) }

// newCpCmd is `subsys cp [-u USER] [-r] SRC DST`.
func newCpCmd(g *globals) *cobra.Command {
	var user string
	var recursive bool
	cmd := &cobra.Command{
		Use:   "cp [-u USER] [-r] SRC DST",
		Short: "Copy files between this machine and a distro (one side is DISTRO:/path)",
		Long: "Copy a file between this machine and a distro: `subsys cp notes.txt debian:/home/me/` or\n" +
			"`subsys cp debian:/etc/os-release .`. With -r, copy a directory. The distro side runs as USER\n" +
			"(default: the distro's default user), with that user's permissions. A file written into a\n" +
			"distro appears whole or not at all.",
		Args: cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			sd, sp, sIn := splitRef(args[0])
			dd, dp, dIn := splitRef(args[1])
			switch {
			case sIn && dIn:
				return errors.New("cp: copy between two distros is not supported: copy through this machine")
			case !sIn && !dIn:
				return errors.New("cp: one of SRC and DST must be DISTRO:/path")
			case sIn:
				return cpFromDistro(ctx, c, sd, user, cleanDistroPath(sp), args[1], recursive)
			default:
				return cpToDistro(ctx, c, dd, user, args[0], cleanDistroPath(dp), recursive)
			}
		}),
	}
	cmd.Flags().StringVarP(&user, "user", "u", "", "the distro user to act as (default: the distro's default user)")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy a directory and everything in it")
	return cmd
}

// cpFromDistro copies distro:src to the local dst.
func cpFromDistro(ctx context.Context, c *client.Client, distro, user, src, dst string, recursive bool) error {
	fi, err := c.StatFile(ctx, distro, user, src)
	if err != nil {
		return err
	}
	if fi.Type == api.FileTypeSymlink || fi.Type == api.FileTypeDir {
		// What a symlink points to decides: list it to tell a directory.
		if _, lerr := c.ListFiles(ctx, distro, user, src); lerr == nil {
			fi.Type = api.FileTypeDir
		} else {
			fi.Type = api.FileTypeFile
		}
	}
	if local, err := os.Stat(dst); err == nil && local.IsDir() {
		dst = filepath.Join(dst, path.Base(src))
	}
	if fi.Type == api.FileTypeDir {
		if !recursive {
			return fmt.Errorf("cp: %s:%s is a directory (use -r)", distro, sanitize(src))
		}
		rc, err := c.DownloadArchive(ctx, distro, user, src)
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		return extractTarGz(rc, dst)
	}
	rc, err := c.ReadFile(ctx, distro, user, src)
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, rc); err != nil {
		out.Close()
		return fmt.Errorf("cp: %s: %w", dst, err)
	}
	return out.Close()
}

// extractTarGz unpacks a tar.gz of the files API into dir. os.Root keeps
// every entry inside dir, whatever names and symlinks the distro made.
func extractTarGz(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("cp: read archive: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cp: read archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "" {
			continue
		}
		mode := fs.FileMode(h.Mode & 0o777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("cp: %s: %w", sanitize(name), err)
			}
			root.Chmod(name, mode|0o700)
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
			if err != nil {
				return fmt.Errorf("cp: %s: %w", sanitize(name), err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("cp: %s: %w", sanitize(name), err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("cp: %s: %w", sanitize(name), err)
			}
		case tar.TypeLink:
			if err := root.Link(path.Clean(strings.TrimPrefix(h.Linkname, "./")), name); err != nil {
				return fmt.Errorf("cp: %s: %w", sanitize(name), err)
			}
		default:
			// Devices, fifos: not copied out of a distro.
		}
	}
}

// cpToDistro copies the local src to distro:dst.
func cpToDistro(ctx context.Context, c *client.Client, distro, user, src, dst string, recursive bool) error {
	local, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi, err := c.StatFile(ctx, distro, user, dst); err == nil && (fi.Type == api.FileTypeDir ||
		fi.Type == api.FileTypeSymlink && isDistroDir(ctx, c, distro, user, dst)) {
		dst = path.Join(dst, filepath.Base(src))
	}
	if !local.IsDir() {
		return putFile(ctx, c, distro, user, src, dst, local.Mode())
	}
	if !recursive {
		return fmt.Errorf("cp: %s is a directory (use -r)", src)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			_, err := c.Mkdir(ctx, distro, user, target, true)
			return err
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return putFile(ctx, c, distro, user, p, target, info.Mode())
		default:
			fmt.Fprintf(stderr, "cp: skipping %s: not a regular file or directory\n", sanitize(p))
			return nil
		}
	})
}

func isDistroDir(ctx context.Context, c *client.Client, distro, user, p string) bool {
	_, err := c.ListFiles(ctx, distro, user, p)
	return err == nil
}

// putFile uploads one local file with its permission bits.
func putFile(ctx context.Context, c *client.Client, distro, user, src, dst string, mode fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = c.WriteFile(ctx, distro, user, dst, fmt.Sprintf("%04o", uint32(mode.Perm())|setBits(mode)), f)
	return err
}

// setBits is mode's setuid, setgid and sticky bits in their octal places.
func setBits(m fs.FileMode) uint32 {
	var b uint32
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// newFilesCmd is `subsys files NAME [PATH]`: ls -l of a distro's directory.
func newFilesCmd(g *globals) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "files [-u USER] NAME [PATH]",
		Short: "List a directory of a distro (ls -l style; default /)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			p := "/"
			if len(args) == 2 {
				p = cleanDistroPath(args[1])
			}
			l, err := c.ListFiles(ctx, args[0], user, p)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdout, 0, 4, 1, ' ', 0)
			for _, e := range l.Entries {
				fmt.Fprintln(w, lsLine(e))
			}
			return w.Flush()
		}),
	}
	cmd.Flags().StringVarP(&user, "user", "u", "", "the distro user to list as (default: the distro's default user)")
	return cmd
}

// lsLine is one entry as ls -l shows it; every string from the distro is
// sanitized.
func lsLine(e api.FileInfo) string {
	name := sanitize(e.Name)
	if e.Type == api.FileTypeSymlink {
		name += " -> " + sanitize(e.Target)
	}
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s", lsMode(e.Type, e.Mode), sanitize(e.User), sanitize(e.Group),
		e.Size, e.MTime.Local().Format("2006-01-02 15:04"), name)
}

// lsMode renders a type and an octal mode ("4755") as ls does ("-rwsr-xr-x").
func lsMode(typ, mode string) string {
	var m uint32
	fmt.Sscanf(mode, "%o", &m)
	b := []byte("----------")
	switch typ {
	case api.FileTypeDir:
		b[0] = 'd'
	case api.FileTypeSymlink:
		b[0] = 'l'
	case api.FileTypeOther:
		b[0] = '?'
	}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m&(1<<(8-i)) != 0 {
			b[1+i] = rwx[i]
		}
	}
	special := func(pos int, bit uint32, set, unset byte) {
		if m&bit == 0 {
			return
		}
		if b[pos] == '-' {
			b[pos] = unset
		} else {
			b[pos] = set
		}
	}
	special(3, 0o4000, 's', 'S')
	special(6, 0o2000, 's', 'S')
	special(9, 0o1000, 't', 'T')
	return string(b)
}
