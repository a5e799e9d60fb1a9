package api

import "time"

// File types of a FileInfo.
const (
	FileTypeFile    = "file"
	FileTypeDir     = "dir"
	FileTypeSymlink = "symlink"
	FileTypeOther   = "other"
)

// Error codes of the files API (/api/v1/distros/{name}/files/…).
const (
	// CodeFileNotFound: the path does not exist in the distro.
	CodeFileNotFound = "file_not_found"
	// CodePermissionDenied: the distro's user may not do that.
	CodePermissionDenied = "permission_denied"
	// CodeFileExists: the target of a mkdir or rename exists.
	CodeFileExists = "file_exists"
	// CodeDirectoryNotEmpty: a DELETE of a non-empty directory without
	// ?recursive=1.
	CodeDirectoryNotEmpty = "directory_not_empty"
	// CodeNotADirectory: a path component, or a directory operation's target,
	// is not a directory.
	CodeNotADirectory = "not_a_directory"
	// CodeIsADirectory: a file operation named a directory.
	CodeIsADirectory = "is_a_directory"
	// CodeInvalidPath: the path is not an absolute, clean path, names "/"
	// where that is refused, or an upload's file name is not one element.
	CodeInvalidPath = "invalid_path"
	// CodeDistroNotFound: no distro by that name (files API).
	CodeDistroNotFound = "distro_not_found"
)

// Headers and file-action names of the files API.
const (
	// HeaderFileType is "file" or "dir" on a GET of a path's contents.
	HeaderFileType = "X-Subsys-File-Type"
	// FileActionMkdir creates a directory.
	FileActionMkdir = "mkdir"
	// FileActionRename renames a path, never replacing an existing one.
	FileActionRename = "rename"
)

// FileInfo describes one path inside a distro. Name, Path, Target, User and
// Group come from the distro and are untrusted: escape them before printing
// them on a terminal or into HTML.
type FileInfo struct {
	// Name is the last element of Path ("/" for the root).
	Name string `json:"name"`
	// Path is the absolute path inside the distro.
	Path string `json:"path"`
	// Type is one of the FileType constants.
	Type string `json:"type"`
	// Size is the size in bytes (of the link itself for a symlink).
	Size int64 `json:"size"`
	// Mode is the permission bits with setuid, setgid and sticky, in octal
	// ("0644", "1777").
	Mode string `json:"mode"`
	// MTime is the last modification time.
	MTime time.Time `json:"mtime"`
	// User and Group are the owner's names in the distro's /etc/passwd and
	// /etc/group, else the numeric ids.
	User  string `json:"user"`
	Group string `json:"group"`
	// Target is a symlink's target, as stored.
	Target string `json:"target,omitempty"`
}

// FileList is a directory's entries, sorted by name.
type FileList struct {
	// Path is the directory's absolute path inside the distro.
	Path    string     `json:"path"`
	Entries []FileInfo `json:"entries"`
}

// FileAction is the JSON body of POST …/files/{path}: Action is
// FileActionMkdir (with Parents) or FileActionRename (with To).
type FileAction struct {
	Action string `json:"action"`
	// Parents, for mkdir, creates missing parents and accepts an existing
	// directory.
	Parents bool `json:"parents,omitempty"`
	// To, for rename, is the new absolute path; an existing one is never
	// replaced.
	To string `json:"to,omitempty"`
}
