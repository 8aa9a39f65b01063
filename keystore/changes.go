package keystore

import (
	"context"
	"database/sql"
	"fmt"
)

// Changes returns change-log rows after seq, oldest first, at most limit.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, entity, entity_id, at FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	return collect(rows, err, "changes", func(r rowScanner) (Change, error) {
		var c Change
		var entity string
		var at int64
		err := r.Scan(&c.Seq, &entity, &c.ID, &at)
		c.Entity, c.At = Entity(entity), fromMillis(at)
		return c, err
	})
}

// LastChange is the newest change-log sequence number (0 when empty).
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM changes`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("keystore: last change: %w: %w", ErrUnavailable, err)
	}
	return seq.Int64, nil
}
