//go:build race

package keystore

// raceEnabled: the race detector changes what allocates and how much, so
// allocation counts and heap sizes mean nothing under it.
const raceEnabled = true
