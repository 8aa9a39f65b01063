package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/ascii"
)

// NormalizeDomains lower-cases and validates site domains: host names, with an
// optional leading "*." wildcard and an optional port.
func NormalizeDomains(domains []string) ([]string, error) {
	if len(domains) > 100 {
		return nil, fmt.Errorf("%w: at most 100 domains per site", ErrInvalid)
	}
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		d = ascii.Lower(strings.TrimSpace(d))
		host := strings.TrimPrefix(d, "*.")
		if h, port, ok := strings.Cut(host, ":"); ok {
			host = h
			if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
				return nil, fmt.Errorf("%w: domain %q: bad port", ErrInvalid, d)
			}
		}
		if host == "" || len(host) > 253 || strings.Trim(host, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" ||
			strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
			return nil, fmt.Errorf("%w: domain %q: want a host name such as example.com or *.example.com", ErrInvalid, d)
		}
		out = append(out, d)
	}
	return out, nil
}

// CreateSite inserts a site of an existing account.
func (s *Store) CreateSite(ctx context.Context, site Site) (Site, error) {
	if err := validID("site", site.ID); err != nil {
		return Site{}, err
	}
	domains, err := NormalizeDomains(site.Domains)
	if err != nil {
		return Site{}, err
	}
	site.Domains = domains
	now := s.now().UTC().Truncate(time.Millisecond)
	site.CreatedAt, site.UpdatedAt = now, now
	err = s.write(ctx, "create site", func(tx *sql.Tx, log txLog) error {
		if _, err := readAccount(ctx, tx, site.AccountID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: account %q", ErrNotFound, site.AccountID)
			}
			return err
		}
		return insert(ctx, tx, log, EntitySite, site.ID, `INSERT INTO sites (id, account_id, domains, active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
			site.ID, site.AccountID, domainsJSON(site.Domains), site.Active, millis(now))
	})
	return site, err
}

// SiteUpdate lists the fields to change; nil leaves a field as it is.
type SiteUpdate struct {
	Domains *[]string
	Active  *bool
}

// UpdateSite changes a site's domains or whether it is active.
func (s *Store) UpdateSite(ctx context.Context, id string, u SiteUpdate) (Site, error) {
	if u.Domains != nil {
		d, err := NormalizeDomains(*u.Domains)
		if err != nil {
			return Site{}, err
		}
		u.Domains = &d
	}
	return update(ctx, s, "update site", id, readSite, func(tx *sql.Tx, log txLog, site *Site) error {
		patch(&site.Domains, u.Domains)
		patch(&site.Active, u.Active)
		site.UpdatedAt = fromMillis(log.at)
		if _, err := tx.ExecContext(ctx, `UPDATE sites SET domains = $1, active = $2, updated_at = $3 WHERE id = $4`,
			domainsJSON(site.Domains), site.Active, log.at, id); err != nil {
			return err
		}
		return log.add(ctx, EntitySite, id)
	})
}

const siteColumns = `SELECT id, account_id, domains, active, created_at, updated_at FROM sites`

// Site reads one site.
func (s *Store) Site(ctx context.Context, id string) (Site, error) {
	site, err := readSite(ctx, s.db, id)
	if err != nil {
		return Site{}, fmt.Errorf("keystore: site %q: %w", id, err)
	}
	return site, nil
}

func readSite(ctx context.Context, q rowQuerier, id string) (Site, error) {
	return scanSite(q.QueryRowContext(ctx, siteColumns+` WHERE id = $1`, id))
}

func scanSite(r rowScanner) (Site, error) {
	var site Site
	var domains string
	var created, updated int64
	if err := r.Scan(&site.ID, &site.AccountID, &domains, &site.Active, &created, &updated); err != nil {
		return Site{}, notFound(err)
	}
	var err error
	if site.Domains, err = decodeList(domains); err != nil {
		return Site{}, fmt.Errorf("site %q: domains: %w", site.ID, err)
	}
	site.CreatedAt, site.UpdatedAt = fromMillis(created), fromMillis(updated)
	return site, nil
}

func domainsJSON(d []string) string {
	if d == nil {
		d = []string{}
	}
	b, _ := json.Marshal(d) // a []string always marshals
	return string(b)
}
