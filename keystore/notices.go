package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// QuotaThresholdEvent is the data of quota.threshold: a site's monthly
// quota (one mode's counter) reached Threshold percent.
type QuotaThresholdEvent struct {
	Site      string `json:"site"`
	Account   string `json:"account"`
	Mode      string `json:"mode"`
	Period    string `json:"period"`
	Threshold int    `json:"threshold"`
	Used      int64  `json:"used"`
	Quota     int64  `json:"quota"`
}

// QuotaThresholds are the percentages quota.threshold fires at.
var QuotaThresholds = []int{80, 100}

// maxNotices bounds the events one scan emits; the next scan continues.
const maxNotices = 500

// ScanNotices emits the events that fire once per subject: key.expiring
// (expiring within window, not revoked), key.expired (expired in the last
// window, not revoked before), and quota.threshold (a site counter of
// period at 80% and 100%). Each is recorded in event_notices in the
// transaction that emits it, so it fires once however many replicas scan.
// It returns how many events it emitted.
func (s *Store) ScanNotices(ctx context.Context, now time.Time, window time.Duration, period string) (int, error) {
	emitted := 0
	err := s.write(ctx, "scan notices", func(tx *sql.Tx, log txLog) error {
		at := millis(now)
		for _, scan := range []struct {
			kind, where string
			args        []any
		}{
			{EventKeyExpiring, `k.expires_at > $1 AND k.expires_at <= $2 AND (k.revoked_at IS NULL OR k.revoked_at > k.expires_at)`, []any{at, at + window.Milliseconds()}},
			{EventKeyExpired, `k.expires_at <= $1 AND k.expires_at > $2 AND (k.revoked_at IS NULL OR k.revoked_at > k.expires_at)`, []any{at, at - window.Milliseconds()}},
		} {
			ids, err := queryIDs(ctx, tx, `SELECT k.id FROM keys k WHERE `+scan.where+
				` AND NOT EXISTS (SELECT 1 FROM event_notices n WHERE n.subject = k.id AND n.kind = '`+scan.kind+`') ORDER BY k.expires_at, k.id LIMIT `+fmt.Sprint(maxNotices), scan.args...)
			if err != nil {
				return err
			}
			for _, id := range ids {
				k, err := keyEvent(ctx, tx, id)
				if err != nil {
					return err
				}
				if err := notice(ctx, tx, log, id, scan.kind, scan.kind, k); err != nil {
					return err
				}
				emitted++
			}
		}
		n, err := s.quotaNotices(ctx, tx, log, period)
		emitted += n
		return err
	})
	return emitted, err
}

func (s *Store) quotaNotices(ctx context.Context, tx *sql.Tx, log txLog, period string) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT counter, used, quota FROM quota_usage WHERE period = $1 AND quota > 0 AND counter LIKE 'site:%' AND used * 100 >= quota * $2 ORDER BY counter LIMIT $3`,
		period, QuotaThresholds[0], maxNotices)
	if err != nil {
		return 0, err
	}
	var hits []QuotaThresholdEvent
	for rows.Next() {
		var counter string
		var e QuotaThresholdEvent
		if err := rows.Scan(&counter, &e.Used, &e.Quota); err != nil {
			rows.Close()
			return 0, err
		}
		rest := strings.TrimPrefix(counter, "site:")
		i := strings.LastIndexByte(rest, ':')
		if i <= 0 {
			continue // not a per-mode site counter the default policy names
		}
		e.Site, e.Mode, e.Period = rest[:i], rest[i+1:], period
		hits = append(hits, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	emitted := 0
	for _, e := range hits {
		if err := tx.QueryRowContext(ctx, `SELECT account_id FROM sites WHERE id = $1`, e.Site).Scan(&e.Account); err != nil && err != sql.ErrNoRows {
			return emitted, err
		}
		for _, pct := range QuotaThresholds {
			if e.Used*100 < e.Quota*int64(pct) {
				break
			}
			e.Threshold = pct
			subject := "site:" + e.Site + ":" + e.Mode + "/" + period
			if err := notice(ctx, tx, log, subject, fmt.Sprintf("%s.%d", EventQuotaThreshold, pct), EventQuotaThreshold, e); err != nil {
				return emitted, err
			}
			emitted++
		}
	}
	return emitted, nil
}

// notice records (subject, kind) and emits typ with data, unless it was
// recorded before. A notice is recorded even when no endpoint subscribes:
// an endpoint added later does not hear of old thresholds.
func notice(ctx context.Context, tx *sql.Tx, log txLog, subject, kind, typ string, data any) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO event_notices (subject, kind, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, subject, kind, log.at)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	return log.events.emit(ctx, log, typ, data)
}

func queryIDs(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	return collect(rows, err, "ids", func(r rowScanner) (id string, err error) {
		err = r.Scan(&id)
		return id, err
	})
}
