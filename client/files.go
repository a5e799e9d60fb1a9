package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/subsys-dev/subsys/api"
)

// filesPath is the API path of p (an absolute path) in distro name: each
// element percent-encoded, the slashes kept.
func filesPath(name, p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return distroPath(name) + "/files/" + strings.Join(parts, "/")
}

// userQuery is ?user= when user is set; empty user means the distro's
// default user.
func userQuery(user string) url.Values {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	return q
}

// ListFiles lists the directory p of distro name as user (empty: the
// distro's default user); a symlink to a directory is followed.
func (c *Client) ListFiles(ctx context.Context, name, user, p string) (api.FileList, error) {
	var l api.FileList
	rc, typ, err := c.getFile(ctx, name, user, p, nil)
	if err != nil {
		return l, err
	}
	defer rc.Close()
	if typ != api.FileTypeDir {
		return l, &api.Error{Status: http.StatusBadRequest, Code: api.CodeNotADirectory, Message: p + " is not a directory"}
	}
	if err := json.NewDecoder(rc).Decode(&l); err != nil {
		return l, fmt.Errorf("decode the listing of %s: %w", p, err)
	}
	return l, nil
}

// StatFile describes p itself (a symlink is reported as one).
func (c *Client) StatFile(ctx context.Context, name, user, p string) (api.FileInfo, error) {
	q := userQuery(user)
	q.Set("stat", "1")
	return get[api.FileInfo](ctx, c, filesPath(name, p), q)
}

// ReadFile opens the regular file p (symlinks followed inside the distro)
// for reading; the caller closes it. A directory fails with an *api.Error
// of code is_a_directory. A failure midway breaks the transfer (Read
// returns an error), never a short file.
func (c *Client) ReadFile(ctx context.Context, name, user, p string) (io.ReadCloser, error) {
	rc, typ, err := c.getFile(ctx, name, user, p, nil)
	if err != nil {
		return nil, err
	}
	if typ != api.FileTypeFile {
		rc.Close()
		return nil, &api.Error{Status: http.StatusBadRequest, Code: api.CodeIsADirectory, Message: p + " is a directory"}
	}
	return rc, nil
}

// getFile GETs p's contents and reports their X-Subsys-File-Type.
func (c *Client) getFile(ctx context.Context, name, user, p string, q url.Values) (io.ReadCloser, string, error) {
	if q == nil {
		q = userQuery(user)
	}
	req, err := c.request(ctx, http.MethodGet, filesPath(name, p), q, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, "", err
	}
	return resp.Body, resp.Header.Get(api.HeaderFileType), nil
}

// WriteFile creates or replaces the regular file p with r's bytes; the
// server writes a temporary file and renames it into place, so a failed
// upload leaves the old file. mode "" keeps a replaced file's permissions
// (0644 for a new one), else octal ("0755").
func (c *Client) WriteFile(ctx context.Context, name, user, p, mode string, r io.Reader) (api.FileInfo, error) {
	q := userQuery(user)
	if mode != "" {
		q.Set("mode", mode)
	}
	req, err := c.request(ctx, http.MethodPut, filesPath(name, p), q, r)
	if err != nil {
		return api.FileInfo{}, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	var fi api.FileInfo
	return fi, c.doJSON(req, &fi)
}

// doJSON sends req and decodes its JSON reply into out.
func (c *Client) doJSON(req *http.Request, out any) error {
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode the reply of %s %s: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// Mkdir creates the directory p; with parents, missing parents too (and an
// existing directory is fine).
func (c *Client) Mkdir(ctx context.Context, name, user, p string, parents bool) (api.FileInfo, error) {
	var fi api.FileInfo
	err := c.call(ctx, http.MethodPost, filesPath(name, p), userQuery(user), api.FileAction{Action: api.FileActionMkdir, Parents: parents}, &fi)
	return fi, err
}

// RenameFile renames p to the absolute path to, never replacing an existing
// one (an *api.Error of code file_exists).
func (c *Client) RenameFile(ctx context.Context, name, user, p, to string) (api.FileInfo, error) {
	var fi api.FileInfo
	err := c.call(ctx, http.MethodPost, filesPath(name, p), userQuery(user), api.FileAction{Action: api.FileActionRename, To: to}, &fi)
	return fi, err
}

// RemoveFile removes p; a non-empty directory needs recursive.
func (c *Client) RemoveFile(ctx context.Context, name, user, p string, recursive bool) error {
	q := userQuery(user)
	if recursive {
		q.Set("recursive", "1")
	}
	return c.call(ctx, http.MethodDelete, filesPath(name, p), q, nil, nil)
}

// DownloadArchive streams a gzip-compressed tar of the directory (or file)
// p; the caller closes it. A failure midway breaks the transfer.
func (c *Client) DownloadArchive(ctx context.Context, name, user, p string) (io.ReadCloser, error) {
	q := userQuery(user)
	q.Set("archive", "tar.gz")
	rc, _, err := c.getFile(ctx, name, user, p, q)
	return rc, err
}

// UploadFile is one file of an UploadFiles call.
type UploadFile struct {
	// Name is the file's name in the directory: one path element.
	Name string
	// Body is its contents.
	Body io.Reader
}

// UploadFiles writes files into the directory dir in one multipart
// request, streamed; the server checks every name before it writes any.
func (c *Client) UploadFiles(ctx context.Context, name, user, dir string, files []UploadFile) (api.FileList, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, f := range files {
			part, err := mw.CreateFormFile("file", f.Name)
			if err == nil {
				_, err = io.Copy(part, f.Body)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	defer pr.Close()
	req, err := c.request(ctx, http.MethodPost, filesPath(name, dir), userQuery(user), pr)
	if err != nil {
		return api.FileList{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var l api.FileList
	return l, c.doJSON(req, &l)
}
