package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, a \"quote\" and a \\ kept", "plain text, a \"quote\" and a \\ kept"},
		{"UTF-8 kept: é, 日本", "UTF-8 kept: é, 日本"},
		{"forged\nnode/9  certificate_available", `forged\nnode/9  certificate_available`},
		{"\x1b]0;pwned\x07title", `\x1b]0;pwned\x07title`},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"\x1b[2K\rerased", `\x1b[2K\rerased`},
		{"tab\there", `tab\there`},
		{"C1 CSI \u009b2J", `C1 CSI \u009b2J`},
		{"bidi \u202eevil", `bidi \u202eevil`},
		{"not UTF-8 \xff\xfe", `not UTF-8 \xff\xfe`},
		{"DEL \x7f", `DEL \u007f`},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriterKeepsLines(t *testing.T) {
	var out bytes.Buffer
	line := "2026-12-02 [WARN] unit error: error=\"a\x1b[2Kb\"\n  | second\tline\r\n"
	n, err := Writer(&out).Write([]byte(line))
	if err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(line))
	}
	if want := "2026-12-02 [WARN] unit error: error=\"a\\x1b[2Kb\"\n  | second\tline\\r\n"; out.String() != want {
		t.Fatalf("wrote %q, want %q", out.String(), want)
	}
}

// A JSON log line stays JSON: what JSON leaves raw is escaped as JSON does.
func TestWriterKeepsJSON(t *testing.T) {
	var out bytes.Buffer
	line := "{\"error\":\"a\u0080b\u009bc\x7fd\u202ee\\u001bf\"}\n"
	Writer(&out).Write([]byte(line))
	var v map[string]string
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v["error"] != "a\u0080b\u009bc\x7fd\u202ee\x1bf" {
		t.Fatalf("wrote %q: %v, %q", out.String(), err, v["error"])
	}
	if strings.ContainsAny(out.String(), "\u0080\u009b\x7f\u202e") {
		t.Fatalf("wrote %q raw", out.String())
	}
}
