//go:build race

package main

// raceEnabled: the race detector drops sync.Pool puts at random, so
// allocation counts mean nothing under it.
const raceEnabled = true
