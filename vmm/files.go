package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// Files is a distro's files as one of its users sees them: every call runs
// in the distro's agent (version 1 and 2 alike) as that user. Get one from
// Manager.Files; it holds no resources.
type Files struct {
	c      *agent.Client
	distro string
	user   string
}

// Files resolves distro name and user (empty: the distro's default user),
// starting the distro when it is stopped, as Exec does.
func (m *Manager) Files(ctx context.Context, name, user string) (*Files, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	if user == "" {
		user = d.DefaultUser
	} else if err := ValidateUser(user); err != nil {
		return nil, err
	}
	c, err := m.ensureRunning(ctx, d)
	if err != nil {
		return nil, err
	}
	return &Files{c: c, distro: d.Name, user: user}, nil
}

// Distro is the distro's name.
func (f *Files) Distro() string { return f.distro }

// User is the user the calls run as.
func (f *Files) User() string { return f.user }

// wrap names the distro and turns an older agent's unknown-op answer into
// an error that says what to do.
func (f *Files) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("%w: distro %s runs an agent without file operations: restart the distro to update its agent", ErrUnsupported, f.distro)
	}
	return fmt.Errorf("distro %s: %w", f.distro, err)
}

// Stat describes path; see agent.Client.StatFile.
func (f *Files) Stat(ctx context.Context, path string, follow bool) (agent.FileInfo, error) {
	fi, err := f.c.StatFile(ctx, f.user, path, follow)
	return fi, f.wrap(err)
}

// List lists the directory path; see agent.Client.ListFiles.
func (f *Files) List(ctx context.Context, path string) (agent.FileInfo, []agent.FileInfo, error) {
	dir, entries, err := f.c.ListFiles(ctx, f.user, path)
	return dir, entries, f.wrap(err)
}

// Write creates or replaces the file path atomically; see
// agent.Client.WriteFile.
func (f *Files) Write(ctx context.Context, path string, mode *uint32, r io.Reader) (agent.FileInfo, error) {
	fi, err := f.c.WriteFile(ctx, f.user, path, mode, r)
	return fi, f.wrap(err)
}

// Mkdir creates the directory path; see agent.Client.Mkdir.
func (f *Files) Mkdir(ctx context.Context, path string, parents bool) (agent.FileInfo, error) {
	fi, err := f.c.Mkdir(ctx, f.user, path, parents)
	return fi, f.wrap(err)
}

// Rename renames from to to, never replacing to; see agent.Client.Rename.
func (f *Files) Rename(ctx context.Context, from, to string) (agent.FileInfo, error) {
	fi, err := f.c.Rename(ctx, f.user, from, to)
	return fi, f.wrap(err)
}

// Remove removes path; see agent.Client.RemoveFile.
func (f *Files) Remove(ctx context.Context, path string, recursive bool) error {
	return f.wrap(f.c.RemoveFile(ctx, f.user, path, recursive))
}

// Archive streams a tar.gz of path; see agent.Client.ArchiveFiles.
func (f *Files) Archive(ctx context.Context, path string) (io.ReadCloser, error) {
	rc, err := f.c.ArchiveFiles(ctx, f.user, path)
	return rc, f.wrap(err)
}

// Open opens the regular file path for reading at any offset; a directory
// fails with agent.ErrIsDir. ctx bounds every read the returned file makes.
func (f *Files) Open(ctx context.Context, path string) (*FileReader, error) {
	r, err := f.c.ReadFile(ctx, f.user, path, 0, 0)
	if err != nil {
		return nil, f.wrap(err)
	}
	return &FileReader{f: f, ctx: ctx, path: path, info: r.Info, r: r}, nil
}

// FileReader is an open file of a distro: an io.ReadSeeker (for Range
// requests and WebDAV) that streams from the agent from wherever it was
// last sought, reopening the stream only when a seek moved it.
type FileReader struct {
	f    *Files
	ctx  context.Context
	path string
	info agent.FileInfo

	mu   sync.Mutex
	r    *agent.FileReader // the stream, at offset rpos; nil when closed
	rpos int64
	pos  int64
}

// Info is the file as opened.
func (r *FileReader) Info() agent.FileInfo { return r.info }

// Read reads from the current offset.
func (r *FileReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r != nil && r.rpos != r.pos {
		r.r.Close()
		r.r = nil
	}
	if r.r == nil {
		if r.pos >= r.info.Size {
			// Past the size seen at the open: no round trip for the EOF
			// that ServeContent and WebDAV clients probe for.
			return 0, io.EOF
		}
		nr, err := r.f.c.ReadFile(r.ctx, r.f.user, r.path, r.pos, 0)
		if err != nil {
			return 0, r.f.wrap(err)
		}
		r.r, r.rpos = nr, r.pos
	}
	n, err := r.r.Read(p)
	r.pos += int64(n)
	r.rpos += int64(n)
	if err != nil && err != io.EOF {
		err = r.f.wrap(err)
	}
	return n, err
}

// Seek moves the offset; io.SeekEnd counts from the size at the open.
func (r *FileReader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.info.Size
	default:
		return 0, fmt.Errorf("%w: seek whence %d", ErrInvalid, whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("%w: seek to a negative offset", ErrInvalid)
	}
	r.pos = offset
	return offset, nil
}

// Close ends the stream.
func (r *FileReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r != nil {
		r.r.Close()
		r.r = nil
	}
	return nil
}

// Create starts writing the file path; see agent.Client.CreateFile. The
// caller Commits or Aborts the writer.
func (f *Files) Create(ctx context.Context, path string, mode *uint32) (*agent.FileWriter, error) {
	w, err := f.c.CreateFile(ctx, f.user, path, mode)
	return w, f.wrap(err)
}

// Wrap names the distro in err and explains an outdated agent, as the
// other methods do; for errors of the writers Create returns.
func (f *Files) Wrap(err error) error { return f.wrap(err) }
