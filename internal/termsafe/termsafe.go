// Package termsafe keeps text that came from elsewhere (a unit's bag, a CSR's names, a
// plugin's output) from acting on the terminal that shows it: control characters are
// written as escapes, so that no field can move the cursor, colour the screen, set a
// window title or forge a row or a log line.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape returns s with every control character (C0, DEL, C1), every format character
// (such as a right-to-left override) and every byte that is not UTF-8 written as an
// escape: \n, \r, \t, \x1b, \xff, \u007f, \u009b, \u202e. Other text, a backslash
// included, is kept. Text that is JSON stays JSON (JSON has escaped C0 already, and
// \u is its own escape).
func Escape(s string) string {
	if !needsEscape(s, false) {
		return s
	}
	var b strings.Builder
	write(&b, s, false)
	return b.String()
}

// Writer passes what is written on to w escaped as Escape does, but for the newlines and
// tabs that end and indent lines: for a log's output, whose fields may hold any text.
// A write is taken as whole lines (as loggers write), so a character split across two
// writes is shown as escaped bytes.
func Writer(w io.Writer) io.Writer { return writer{w} }

type writer struct{ w io.Writer }

func (w writer) Write(p []byte) (int, error) {
	s := string(p)
	if !needsEscape(s, true) {
		return w.w.Write(p)
	}
	var b strings.Builder
	write(&b, s, true)
	if _, err := io.WriteString(w.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func needsEscape(s string, lines bool) bool {
	for _, r := range s {
		if unsafe(r, lines) {
			return true
		}
	}
	return false
}

// unsafe: r acts on a terminal, or is utf8.RuneError (a byte that is not UTF-8).
func unsafe(r rune, lines bool) bool {
	if lines && (r == '\n' || r == '\t') {
		return false
	}
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

func write(b *strings.Builder, s string, lines bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case !unsafe(r, lines):
			b.WriteString(s[i : i+size])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && size == 1, r < 0x7f:
			fmt.Fprintf(b, `\x%02x`, s[i])
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
		i += size
	}
}
