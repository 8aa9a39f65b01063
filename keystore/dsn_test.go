package keystore

import (
	"context"
	"strings"
	"testing"
)

func TestOpenErrorNamesSchemeOnly(t *testing.T) {
	for _, dsn := range []string{"mysql://admin:hunter2secret@db/keygate", "hunter2secret", "postgress://u:hunter2secret@h/db", ":hunter2secret"} {
		_, err := Open(context.Background(), dsn, Options{})
		if err == nil || strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("Open(%q): %v", dsn, err)
		}
	}
}
