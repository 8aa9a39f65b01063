package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// CreateAccount inserts an account. Status defaults to active.
func (s *Store) CreateAccount(ctx context.Context, a Account) (Account, error) {
	if err := validID("account", a.ID); err != nil {
		return Account{}, err
	}
	if err := validID("plan", a.Plan); err != nil {
		return Account{}, err
	}
	if a.Status == "" {
		a.Status = StatusActive
	}
	if _, err := ParseStatus(string(a.Status)); err != nil {
		return Account{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	a.CreatedAt, a.UpdatedAt = now, now
	err := s.write(ctx, "create account", func(tx *sql.Tx, log txLog) error {
		return insert(ctx, tx, log, EntityAccount, a.ID, `INSERT INTO accounts (id, plan, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`,
			a.ID, a.Plan, string(a.Status), millis(now))
	})
	return a, err
}

// AccountUpdate lists the fields to change; nil leaves a field as it is.
type AccountUpdate struct {
	Plan   *string
	Status *AccountStatus
}

// UpdateAccount changes an account's plan or status.
func (s *Store) UpdateAccount(ctx context.Context, id string, u AccountUpdate) (Account, error) {
	if u.Plan != nil {
		if err := validID("plan", *u.Plan); err != nil {
			return Account{}, err
		}
	}
	if u.Status != nil {
		if _, err := ParseStatus(string(*u.Status)); err != nil {
			return Account{}, err
		}
	}
	return update(ctx, s, "update account", id, readAccount, func(tx *sql.Tx, log txLog, a *Account) error {
		patch(&a.Plan, u.Plan)
		patch(&a.Status, u.Status)
		a.UpdatedAt = fromMillis(log.at)
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET plan = $1, status = $2, updated_at = $3 WHERE id = $4`,
			a.Plan, string(a.Status), log.at, id); err != nil {
			return err
		}
		return log.add(ctx, EntityAccount, id)
	})
}

// Account reads one account.
func (s *Store) Account(ctx context.Context, id string) (Account, error) {
	a, err := readAccount(ctx, s.db, id)
	if err != nil {
		return Account{}, fmt.Errorf("keystore: account %q: %w", id, err)
	}
	return a, nil
}

// rowQuerier is a *sql.DB or a *sql.Tx.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readAccount is the one query that reads an account.
func readAccount(ctx context.Context, q rowQuerier, id string) (Account, error) {
	return scanAccount(q.QueryRowContext(ctx, `SELECT id, plan, status, created_at, updated_at FROM accounts WHERE id = $1`, id))
}

func scanAccount(r rowScanner) (Account, error) {
	var a Account
	var status string
	var created, updated int64
	if err := r.Scan(&a.ID, &a.Plan, &status, &created, &updated); err != nil {
		return Account{}, notFound(err)
	}
	a.Status, a.CreatedAt, a.UpdatedAt = AccountStatus(status), fromMillis(created), fromMillis(updated)
	return a, nil
}
