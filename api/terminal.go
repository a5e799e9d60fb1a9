package api

import "time"

// TerminalSession is one terminal session of a distro, as GET
// /distros/{name}/terminals lists it. Sessions live in the distro's agent and
// outlive the websocket (and the server) for the session timeout.
type TerminalSession struct {
	// ID reattaches the session: GET …/terminal?session=ID.
	ID string `json:"id"`
	// Argv is the program as started (a login shell's argv[0] starts with "-").
	Argv []string `json:"argv"`
	// User is the account the program runs as.
	User string `json:"user"`
	// PID is the program's process id inside the distro.
	PID int `json:"pid"`
	// Cols and Rows are the terminal's size.
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
	// Attached says whether a websocket is attached now.
	Attached  bool      `json:"attached"`
	CreatedAt time.Time `json:"created_at"`
	// Exited and ExitCode: the program has ended, with that code.
	Exited   bool `json:"exited"`
	ExitCode int  `json:"exit_code"`
}
