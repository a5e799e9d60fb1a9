package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
)

// File operations. Every one runs in the distro's agent, so in the distro's
// own mount namespace and root (the agent is PID 1 there after pivot_root):
// an absolute symlink, "..", or /proc/1/root all resolve inside the distro.
// It runs as the request's user (FileRequest's User, default root): on a
// thread of its own whose file system uid, gid and supplementary groups are
// the user's (see files_linux.go), so the kernel checks every access as it
// would for that user's own programs.
//
// Wire: file-stat, file-mkdir and file-rename answer with a header carrying
// the FileInfo. file-remove answers with a header only. file-list and
// file-archive answer with a header, then data frames (the JSON list; the
// tar.gz) and a data-end frame. file-read answers with the file's FileInfo
// in the header, then data frames and a data-end frame. file-write answers
// with a header once the temporary file exists; the client then sends upload
// frames and an upload-end frame, and the agent renames the file into place
// and ends with a data-end frame carrying the FileInfo or the error.

// Wire codes of the file errors.
const (
	codeFileExists  = "file_exists"
	codeDirNotEmpty = "directory_not_empty"
	codeNotDir      = "not_a_directory"
	codeIsDir       = "is_a_directory"
	codeInvalidPath = "invalid_path"
)

// Sentinel errors of the file operations (besides ErrNoSuchFile,
// ErrPermission and ErrUserNotFound).
var (
	// ErrFileExists: the target of a mkdir or rename exists. It also
	// matches fs.ErrExist.
	ErrFileExists = errors.New("file exists")
	// ErrDirNotEmpty: a directory to remove without Recursive has entries.
	ErrDirNotEmpty = errors.New("directory not empty")
	// ErrNotDir: a path component, or a directory operation's path, is not a
	// directory.
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir: a file operation named a directory.
	ErrIsDir = errors.New("is a directory")
	// ErrInvalidPath: the path is not absolute and clean, is "/" where that
	// is refused, or names something that cannot be read as a file (a
	// device, a fifo).
	ErrInvalidPath = errors.New("invalid path")
)

// File types of a FileInfo.
const (
	FileTypeFile    = "file"
	FileTypeDir     = "dir"
	FileTypeSymlink = "symlink"
	FileTypeOther   = "other"
)

// FileInfo describes a path in a distro. Every string in it comes from the
// distro and is untrusted.
type FileInfo struct {
	// Name is the last element of Path ("/" for the root).
	Name string `json:"name"`
	// Path is the absolute path.
	Path string `json:"path"`
	// Type is a FileType constant.
	Type string `json:"type"`
	// Size in bytes.
	Size int64 `json:"size"`
	// Mode is the permission bits with setuid (04000), setgid (02000) and
	// sticky (01000).
	Mode uint32 `json:"mode"`
	// MTime is the modification time.
	MTime time.Time `json:"mtime"`
	// UID and GID are the owner; User and Group their names in the distro's
	// /etc/passwd and /etc/group, or the numbers when they have none.
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	User  string `json:"user"`
	Group string `json:"group"`
	// Target is a symlink's target, as stored.
	Target string `json:"target,omitempty"`
}

// FileRequest is the file operations' part of a request.
type FileRequest struct {
	// Path is the absolute, clean path the operation works on.
	Path string `json:"path,omitempty"`
	// To is file-rename's new path.
	To string `json:"to,omitempty"`
	// FileMode is file-write's permission bits; nil keeps a replaced file's,
	// or 0644 for a new one.
	FileMode *uint32 `json:"file_mode,omitempty"`
	// Parents: file-mkdir creates missing parents and accepts an existing
	// directory.
	Parents bool `json:"parents,omitempty"`
	// Recursive: file-remove removes a directory with everything in it.
	Recursive bool `json:"recursive,omitempty"`
	// Offset and Length are the part of the file file-read sends; Length 0
	// means to the end.
	Offset int64 `json:"offset,omitempty"`
	Length int64 `json:"length,omitempty"`
	// Follow: file-stat reports what a symlink points to (inside the
	// distro), not the link.
	Follow bool `json:"follow,omitempty"`
}

// maxListBytes bounds the JSON of one directory listing a client accepts.
const maxListBytes = 256 << 20

// CleanPath checks that p is an absolute path without "." or ".." elements,
// empty elements or NUL bytes, and returns it without a trailing slash. The
// server and the agent both check: a path that needs cleaning is refused,
// not guessed at.
func CleanPath(p string) (string, error) {
	if len(p) > 1 && strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "//") {
		p = p[:len(p)-1]
	}
	if p == "" || p[0] != '/' || strings.IndexByte(p, 0) >= 0 || path.Clean(p) != p || len(p) > 4096 {
		return "", fmt.Errorf("%w: %q is not an absolute, clean path", ErrInvalidPath, p)
	}
	return p, nil
}

// ValidFileName reports whether name can be one element of a path: not
// empty, ".", "..", and without "/" or NUL. Uploads check their names with it.
func ValidFileName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\x00")
}

// fileCall sends a file operation and reads its reply header.
func (c *Client) fileCall(ctx context.Context, op, user string, fr FileRequest) (*yamux.Stream, *dataReader, reply, error) {
	req := request{Op: op, FileRequest: fr}
	req.User = user
	st, br, rep, err := c.roundTrip(ctx, req)
	if err != nil {
		return nil, nil, reply{}, err
	}
	return st, &dataReader{op: op, st: st, br: br, buf: make([]byte, dataChunk)}, rep, nil
}

// fileInfoReply is the FileInfo of a reply header that must have one.
func fileInfoReply(op string, rep reply) (FileInfo, error) {
	if rep.File == nil {
		return FileInfo{}, fmt.Errorf("agent %s: %w: no file in the answer", op, ErrProtocol)
	}
	return *rep.File, nil
}

// StatFile describes path as user sees it: the path itself (a symlink is
// reported as one), or with follow what it points to.
func (c *Client) StatFile(ctx context.Context, user, p string, follow bool) (FileInfo, error) {
	st, _, rep, err := c.fileCall(ctx, opFileStat, user, FileRequest{Path: p, Follow: follow})
	if err != nil {
		return FileInfo{}, err
	}
	st.Close()
	return fileInfoReply(opFileStat, rep)
}

// ListFiles lists the directory p (following a symlink to it) as user: its
// entries sorted by name, and the directory's own FileInfo.
func (c *Client) ListFiles(ctx context.Context, user, p string) (FileInfo, []FileInfo, error) {
	_, d, rep, err := c.fileCall(ctx, opFileList, user, FileRequest{Path: p})
	if err != nil {
		return FileInfo{}, nil, err
	}
	defer d.Close()
	dir, err := fileInfoReply(opFileList, rep)
	if err != nil {
		return FileInfo{}, nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(d, maxListBytes+1))
	if err != nil {
		return FileInfo{}, nil, err
	}
	if len(raw) > maxListBytes {
		return FileInfo{}, nil, fmt.Errorf("agent %s: %w: listing over %d bytes", opFileList, ErrProtocol, maxListBytes)
	}
	var entries []FileInfo
	if err := json.Unmarshal(raw, &entries); err != nil {
		return FileInfo{}, nil, fmt.Errorf("agent %s: %w: bad listing: %v", opFileList, ErrProtocol, err)
	}
	return dir, entries, nil
}

// FileReader streams a file's bytes from the agent. Close it.
type FileReader struct {
	// Info is the file as opened (a symlink followed).
	Info FileInfo
	*dataReader
}

// ReadFile opens the regular file p as user (following symlinks inside the
// distro) and streams length bytes from offset (0: to the end). A
// directory fails with ErrIsDir, a device or fifo with ErrInvalidPath.
// ctx bounds the open only; Close stops the stream.
func (c *Client) ReadFile(ctx context.Context, user, p string, offset, length int64) (*FileReader, error) {
	_, d, rep, err := c.fileCall(ctx, opFileRead, user, FileRequest{Path: p, Offset: offset, Length: length})
	if err != nil {
		return nil, err
	}
	info, err := fileInfoReply(opFileRead, rep)
	if err != nil {
		d.Close()
		return nil, err
	}
	return &FileReader{Info: info, dataReader: d}, nil
}

// WriteFile creates or replaces the regular file p with what r holds, as
// user: the agent writes a temporary file in the same directory and renames
// it over p once r has ended, so a failed write (r's error, ctx ending, the
// connection breaking) leaves the old file as it was. mode nil keeps a
// replaced file's permissions, or 0644 for a new file. The parent directory
// must exist.
func (c *Client) WriteFile(ctx context.Context, user, p string, mode *uint32, r io.Reader) (FileInfo, error) {
	w, err := c.CreateFile(ctx, user, p, mode)
	if err != nil {
		return FileInfo{}, err
	}
	stop := context.AfterFunc(ctx, func() { w.st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, dataChunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				w.Abort()
				if cerr := ctx.Err(); cerr != nil {
					err = cerr
				}
				return FileInfo{}, fmt.Errorf("write %s: %w", p, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			w.Abort()
			return FileInfo{}, fmt.Errorf("write %s: %w", p, rerr)
		}
	}
	if err := ctx.Err(); err != nil {
		w.Abort()
		return FileInfo{}, fmt.Errorf("write %s: %w", p, err)
	}
	return w.Commit()
}

// FileWriter is a file being written by CreateFile: its bytes go to a
// temporary file until Commit renames it into place; Abort (or a broken
// connection) removes it. It is for one goroutine.
type FileWriter struct {
	st   *yamux.Stream
	d    *dataReader
	done bool
}

// CreateFile starts writing the regular file p as user (see WriteFile):
// the agent has created the temporary file when it returns, so permission
// and path errors come from here.
func (c *Client) CreateFile(ctx context.Context, user, p string, mode *uint32) (*FileWriter, error) {
	st, d, _, err := c.fileCall(ctx, opFileWrite, user, FileRequest{Path: p, FileMode: mode})
	if err != nil {
		return nil, err
	}
	return &FileWriter{st: st, d: d}, nil
}

// Write sends p to the file.
func (w *FileWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("agent %s: write after the end", opFileWrite)
	}
	total := 0
	for len(p) > 0 {
		n := min(len(p), dataChunk)
		if err := writeFrame(w.st, frameUpload, p[:n]); err != nil {
			return total, fmt.Errorf("agent %s: %w: %v", opFileWrite, ErrDisconnected, err)
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

// Commit ends the data and has the agent rename the file into place; it
// returns the file's FileInfo, or why it was not written (the old file is
// then as it was).
func (w *FileWriter) Commit() (FileInfo, error) {
	if w.done {
		return FileInfo{}, fmt.Errorf("agent %s: commit after the end", opFileWrite)
	}
	w.done = true
	defer w.d.Close()
	b, _ := json.Marshal(dataEnd{})
	if err := writeFrame(w.st, frameUploadEnd, b); err != nil {
		return FileInfo{}, fmt.Errorf("agent %s: %w: %v", opFileWrite, ErrDisconnected, err)
	}
	return w.d.readEnd()
}

// Abort drops the file: the agent removes the temporary file and leaves
// the old one as it was.
func (w *FileWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	b, _ := json.Marshal(dataEnd{Error: &wireError{Code: codeBadRequest, Message: "aborted"}})
	w.st.SetWriteDeadline(time.Now().Add(time.Second))
	writeFrame(w.st, frameUploadEnd, b)
	w.d.Close()
}

// readEnd reads a data stream to its end frame and returns the FileInfo
// the frame carries.
func (d *dataReader) readEnd() (FileInfo, error) {
	for {
		t, payload, err := readFrame(d.br, d.buf)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				err = fmt.Errorf("%w: %v", ErrDisconnected, err)
			}
			return FileInfo{}, fmt.Errorf("agent %s: %w", d.op, err)
		}
		if t != frameDataEnd {
			continue
		}
		var end dataEnd
		if err := json.Unmarshal(payload, &end); err != nil {
			return FileInfo{}, fmt.Errorf("agent %s: %w: bad end frame: %v", d.op, ErrProtocol, err)
		}
		if end.Error != nil {
			return FileInfo{}, &RemoteError{Op: d.op, Code: end.Error.Code, Message: end.Error.Message}
		}
		if end.File == nil {
			return FileInfo{}, fmt.Errorf("agent %s: %w: no file in the end frame", d.op, ErrProtocol)
		}
		return *end.File, nil
	}
}

// Mkdir creates the directory p as user (mode 0755 less the agent's umask);
// with parents, missing parents too, and an existing directory is no error.
func (c *Client) Mkdir(ctx context.Context, user, p string, parents bool) (FileInfo, error) {
	st, _, rep, err := c.fileCall(ctx, opFileMkdir, user, FileRequest{Path: p, Parents: parents})
	if err != nil {
		return FileInfo{}, err
	}
	st.Close()
	return fileInfoReply(opFileMkdir, rep)
}

// Rename renames from to to as user, never replacing an existing to
// (ErrFileExists), and returns to's FileInfo.
func (c *Client) Rename(ctx context.Context, user, from, to string) (FileInfo, error) {
	st, _, rep, err := c.fileCall(ctx, opFileRename, user, FileRequest{Path: from, To: to})
	if err != nil {
		return FileInfo{}, err
	}
	st.Close()
	return fileInfoReply(opFileRename, rep)
}

// RemoveFile removes p as user: a file, a symlink (not what it points to),
// an empty directory, or with recursive a directory and everything in it
// (without crossing into a file system mounted below it). "/" is refused.
func (c *Client) RemoveFile(ctx context.Context, user, p string, recursive bool) error {
	st, _, _, err := c.fileCall(ctx, opFileRemove, user, FileRequest{Path: p, Recursive: recursive})
	if err != nil {
		return err
	}
	st.Close()
	return nil
}

// ArchiveFiles streams a gzip-compressed tar of p (a directory, or one
// file) as user sees it. A failure midway reaches Read as an error, never
// as a short archive. ctx bounds the start only; Close stops it.
func (c *Client) ArchiveFiles(ctx context.Context, user, p string) (io.ReadCloser, error) {
	_, d, _, err := c.fileCall(ctx, opFileArchive, user, FileRequest{Path: p})
	if err != nil {
		return nil, err
	}
	return d, nil
}
