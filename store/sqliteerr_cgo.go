//go:build cgo

package store

import (
	"errors"

	"github.com/mattn/go-sqlite3"
)

// isPrimaryKeyViolation reports whether err is SQLite's refusal of a row
// whose primary key another row has.
func isPrimaryKeyViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
}
