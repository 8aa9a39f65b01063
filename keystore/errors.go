package keystore

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors the store returns; match them with errors.Is.
var (
	ErrNotFound = errors.New("keystore: not found")
	ErrConflict = errors.New("keystore: already exists")
	ErrInvalid  = errors.New("keystore: invalid")
	// ErrUnavailable wraps any failure to reach the store.
	ErrUnavailable = errors.New("keystore: store unavailable")
)

// notFound is a single-row read's error as the store returns it: no row
// is ErrNotFound, anything else ErrUnavailable.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// isUnique recognises unique-constraint violations by the databases' own
// codes: SQLSTATE 23505 (unique_violation) from PostgreSQL, and SQLite's
// extended result codes for a UNIQUE or PRIMARY KEY constraint.
func isUnique(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		return lite.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || lite.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
