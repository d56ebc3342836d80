package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's commands table and each command's --help name the same flags: a flag
// the table shows exists, and a flag the command takes is in the table.
func TestReadmeCommandsTableMatchesHelp(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start, end := strings.Index(section, "\n## Commands"), strings.Index(section, "\n## Layout")
	if start < 0 || end < start {
		t.Fatal("README has no Commands section before Layout")
	}
	row := regexp.MustCompile("(?m)^\\| `tlsrelay ([^`]*)` \\|")
	flag := regexp.MustCompile(`--[a-z0-9][a-z0-9-]*`)
	rows := row.FindAllStringSubmatch(section[start:end], -1)
	if len(rows) < 10 {
		t.Fatalf("%d command rows in the README's table", len(rows))
	}
	for _, m := range rows {
		cell := m[1]
		var words []string
		for _, w := range strings.Fields(cell) {
			if w != strings.ToLower(w) || strings.HasPrefix(w, "[") || strings.HasPrefix(w, "-") {
				break
			}
			words = append(words, w)
		}
		r := run(t, append(words, "--help")...)
		if r.code != 0 {
			t.Errorf("tlsrelay %s --help: exit %d\n%s", strings.Join(words, " "), r.code, r.stderr)
			continue
		}
		help := r.stdout
		if i := strings.Index(help, "Global Flags:"); i >= 0 {
			help = help[:i]
		}
		if i := strings.Index(help, "Flags:"); i >= 0 {
			help = help[i:]
		} else {
			help = ""
		}
		documented, taken := flag.FindAllString(cell, -1), flag.FindAllString(help, -1)
		for _, f := range documented {
			if !slices.Contains(taken, f) {
				t.Errorf("README: tlsrelay %s shows %s, which --help does not list", strings.Join(words, " "), f)
			}
		}
		for _, f := range taken {
			if f != "--help" && !slices.Contains(documented, f) {
				t.Errorf("README: tlsrelay %s takes %s, which the commands table leaves out", strings.Join(words, " "), f)
			}
		}
	}
}
