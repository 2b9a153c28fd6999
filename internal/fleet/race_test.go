//go:build race

package fleet

// The race detector slows the generator about tenfold; TestStatistics then
// uses a smaller sample.
const raceEnabled = true
