package keystore

import (
	"fmt"
	"time"
)

// AccountStatus is where an account stands with its subscription.
type AccountStatus string

// Account statuses from the contract.
const (
	StatusActive       AccountStatus = "active"
	StatusTrialing     AccountStatus = "trialing"
	StatusTrialExpired AccountStatus = "trial_expired"
	StatusInactive     AccountStatus = "inactive"
)

// ParseStatus accepts one of the four contract statuses.
func ParseStatus(s string) (AccountStatus, error) {
	switch AccountStatus(s) {
	case StatusActive, StatusTrialing, StatusTrialExpired, StatusInactive:
		return AccountStatus(s), nil
	}
	return "", fmt.Errorf("%w: status %q: want active, trialing, trial_expired or inactive", ErrInvalid, s)
}

// Account is a customer of the platform; its plan decides what its keys may do.
type Account struct {
	ID        string        `json:"id"`
	Plan      string        `json:"plan"`
	Status    AccountStatus `json:"status"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	// Limits override the plan's limits (set with key facts only).
	Limits Limits `json:"limits,omitempty"`
}

// Site belongs to an account; keys are scoped to one site and public routes
// are checked against its domains.
type Site struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account"`
	Domains   []string  `json:"domains"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Limits override the plan's limits (set with key facts only).
	Limits Limits `json:"limits,omitempty"`
}

// Key is everything keygate keeps about a key except the key itself.
type Key struct {
	ID         string     `json:"id"`
	SiteID     string     `json:"site"`
	Mode       Mode       `json:"mode"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Entitlements
}

// Entitlements narrow what one key may do below what its site and plan allow
// (issue 15). The zero value restricts nothing, so keys created before
// entitlements existed keep working.
type Entitlements struct {
	// Scopes like "videos:read"; empty means unrestricted.
	Scopes []string `json:"scopes,omitempty"`
	// AllowedCIDRs are canonical netip.Prefix strings; empty allows any
	// client address.
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
	// Meta is passed upstream as x-keygate-meta-<name>: at most 16 entries,
	// names [a-z0-9-]{1,32}, values at most 256 visible ASCII characters.
	Meta map[string]string `json:"meta,omitempty"`
	// Limits override the site's, account's and plan's (key beats site beats
	// account beats plan), by the same names.
	Limits Limits `json:"limits,omitempty"`
	// Remaining is the number of uses left; nil means unlimited.
	Remaining *int64 `json:"remaining,omitempty"`
	// Refill tops Remaining up to Refill.Amount each interval.
	Refill *Refill `json:"refill,omitempty"`
}

// Refill restores a key's remaining uses to Amount every Interval
// ("daily" or "monthly", UTC).
type Refill struct {
	Interval string `json:"interval"`
	Amount   int64  `json:"amount"`
}

// Revoked reports whether the key was revoked at or before now. (Pointer
// receivers: a Key is 208 bytes, and even inlined, a value receiver
// copied it on each of the three calls a Check makes.)
func (k *Key) Revoked(now time.Time) bool { return k.RevokedAt != nil && !now.Before(*k.RevokedAt) }

// Expired reports whether the key is past its expires_at.
func (k *Key) Expired(now time.Time) bool { return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) }

// KeyFacts is one key with the site and account it belongs to: what a
// decision needs to know about a credential.
type KeyFacts struct {
	Key     Key
	Site    Site
	Account Account
}

// SiteFacts is a site with its account, for routes that name a site but
// carry no key.
type SiteFacts struct {
	Site    Site
	Account Account
}

// Entity names what a change-log row is about.
type Entity string

// Entities that change-log rows name.
const (
	EntityAccount Entity = "account"
	EntitySite    Entity = "site"
	EntityKey     Entity = "key"
)

// Change is one change-log row: entity Entity with id ID was written.
type Change struct {
	Seq    int64
	Entity Entity
	ID     string
	At     time.Time
}

// validID keeps identifiers printable and bounded: they end up in headers,
// paths and log lines.
func validID(kind, id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: %s id %q: want 1 to 64 characters", ErrInvalid, kind, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%w: %s id %q: only letters, digits, '-', '_' and '.'", ErrInvalid, kind, id)
		}
	}
	return nil
}
