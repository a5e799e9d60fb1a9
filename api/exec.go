package api

import (
	"encoding/base64"
	"fmt"
)

// Output encodings of ExecResult (and ExecRequest.OutputEncoding).
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
)

// ExecRequest is the body of POST /distros/{name}/exec: run a command and
// collect its output.
type ExecRequest struct {
	// Argv is the command and its arguments; required.
	Argv []string `json:"argv"`
	// User runs the command as this user; empty means the distro's default.
	User string `json:"user,omitempty"`
	// Cwd is the working directory inside the distro.
	Cwd string `json:"cwd,omitempty"`
	// Env adds NAME=value variables.
	Env []string `json:"env,omitempty"`
	// Stdin is base64; it is written to the process and then closed.
	Stdin string `json:"stdin,omitempty"`
	// TimeoutS kills the process after that many seconds (0: no limit).
	TimeoutS float64 `json:"timeout_s,omitempty"`
	// OutputEncoding EncodingBase64 forces base64 output; by default output is
	// sent as a string when it is valid UTF-8 and as base64 otherwise.
	OutputEncoding string `json:"output_encoding,omitempty"`
}

// ExecResult is the reply of POST /distros/{name}/exec.
type ExecResult struct {
	// ExitCode is the process's exit code; 128+n when signal n ended it.
	ExitCode int `json:"exit_code"`
	// Signal names the signal that ended the process ("KILL"), if one did.
	Signal string `json:"signal,omitempty"`
	// Stdout and Stderr are the process's output, encoded as the encodings
	// below say (StdoutBytes and StderrBytes decode them).
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// StdoutEncoding and StderrEncoding say how Stdout and Stderr are encoded:
	// EncodingUTF8 or EncodingBase64 (binary output, or when asked for).
	StdoutEncoding string `json:"stdout_encoding"`
	StderrEncoding string `json:"stderr_encoding"`
	// Truncated is true when either stream went over the server's cap (16 MiB)
	// and was cut.
	Truncated bool `json:"truncated"`
	// TimedOut is true when TimeoutS killed the process.
	TimedOut bool `json:"timed_out,omitempty"`
}

// StdoutBytes returns the process's standard output, decoded.
func (r ExecResult) StdoutBytes() ([]byte, error) {
	return decodeOutput("stdout", r.Stdout, r.StdoutEncoding)
}

// StderrBytes returns the process's standard error, decoded.
func (r ExecResult) StderrBytes() ([]byte, error) {
	return decodeOutput("stderr", r.Stderr, r.StderrEncoding)
}

func decodeOutput(name, s, encoding string) ([]byte, error) {
	switch encoding {
	case EncodingUTF8, "":
		return []byte(s), nil
	case EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("decode %s: unknown encoding %q", name, encoding)
}

// Channels of the exec websocket: the first byte of every binary frame.
const (
	// ChannelStdin carries the client's input to the process.
	ChannelStdin = 0
	// ChannelStdout and ChannelStderr carry the process's output.
	ChannelStdout = 1
	ChannelStderr = 2
)

// ExecStart is the first frame a client sends on GET /distros/{name}/exec/ws,
// a JSON text frame: what to run.
type ExecStart struct {
	// Argv is the command; empty runs the user's login shell.
	Argv []string `json:"argv"`
	// User, Cwd and Env are as in ExecRequest.
	User string   `json:"user,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	Env  []string `json:"env,omitempty"`
	// TTY runs the command on a terminal of Cols × Rows.
	TTY  bool   `json:"tty,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	// Login runs Argv (or the user's shell) as a login shell would be.
	Login bool `json:"login,omitempty"`
}
