//go:build race

package limits

// raceEnabled: the race detector changes what allocates and how much, so
// allocation assertions skip under it.
const raceEnabled = true
