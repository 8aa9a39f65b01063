package keystore

import (
	"context"
	"database/sql"
	"fmt"
)

// Changes returns change-log rows after seq, oldest first, at most limit.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, entity, entity_id, at FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("keystore: changes: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		var entity string
		var at int64
		if err := rows.Scan(&c.Seq, &entity, &c.ID, &at); err != nil {
			return nil, fmt.Errorf("keystore: changes: %w", err)
		}
		c.Entity, c.At = Entity(entity), fromMillis(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keystore: changes: %w: %w", ErrUnavailable, err)
	}
	return out, nil
}

// LastChange is the newest change-log sequence number (0 when empty).
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM changes`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("keystore: last change: %w: %w", ErrUnavailable, err)
	}
	return seq.Int64, nil
}
