//go:build !race

package stepup_test

const raceEnabled = false
