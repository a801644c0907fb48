//go:build race

package main

// raceEnabled: built with -race, whose shadow memory inflates RSS.
const raceEnabled = true
