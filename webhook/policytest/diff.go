package policytest

import (
	"fmt"
	"strings"
)

// diffContext is how many unchanged lines Diff shows around a change.
const diffContext = 3

// maxDiffCells bounds the work of the line matching (lines before x after).
const maxDiffCells = 4_000_000

// Diff renders a line diff of two texts: changed lines marked - (before) and
// + (after), with a few unchanged lines around each change; "" when equal.
func Diff(before, after string) string {
	a := strings.Split(strings.TrimRight(before, "\n"), "\n")
	b := strings.Split(strings.TrimRight(after, "\n"), "\n")
	if strings.Join(a, "\n") == strings.Join(b, "\n") {
		return ""
	}
	if len(a)*len(b) > maxDiffCells {
		return "--- before\n" + indent(before, "- ") + "\n+++ after\n" + indent(after, "+ ")
	}
	// lcs[i][j] is the length of the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		mark byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			lines = append(lines, line{' ', a[i]})
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', a[i]})
			i++
		default:
			lines = append(lines, line{'+', b[j]})
			j++
		}
	}
	// Keep the changed lines and diffContext lines around them.
	keep := make([]bool, len(lines))
	for k, l := range lines {
		if l.mark == ' ' {
			continue
		}
		for c := max(0, k-diffContext); c <= min(len(lines)-1, k+diffContext); c++ {
			keep[c] = true
		}
	}
	var out strings.Builder
	skipped := false
	for k, l := range lines {
		if !keep[k] {
			skipped = true
			continue
		}
		if skipped {
			out.WriteString("  ...\n")
			skipped = false
		}
		fmt.Fprintf(&out, "%c %s\n", l.mark, l.text)
	}
	if skipped {
		out.WriteString("  ...\n")
	}
	return strings.TrimRight(out.String(), "\n")
}
