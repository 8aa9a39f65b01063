//go:build race

package extauthz

// raceEnabled: the race detector changes what allocates, so allocation
// counts mean nothing under it.
const raceEnabled = true
