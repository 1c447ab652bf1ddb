package server

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/linkwall/linkwall/internal/chat"
)

// FuzzCheckTextAndName feeds arbitrary strings to the validators of
// message text and of user and group names. Invariants: no panic; a
// refusal carries invalid or too_large; accepted text is valid UTF-8,
// not blank, within the limit and free of control characters but tab, CR
// and LF; an accepted name is its input trimmed, within the limit and free
// of control and format characters.
func FuzzCheckTextAndName(f *testing.F) {
	for _, seed := range []string{
		"hello", "多行\n文本\twith tab\r\n", "", " \n\t", "nul\x00", "c1\u0085", "bad \xff utf8",
		"a\u202eb", "  阿丽  ", "\ufeffname", strings.Repeat("汉", 21), "\uFFFD",
	} {
		f.Add(seed)
	}
	const max = 20
	f.Fuzz(func(t *testing.T, s string) {
		if err := checkText(s, max); err != nil {
			if code := chat.ErrorCode(err); code != chat.EInvalid && code != chat.ETooLarge {
				t.Fatalf("checkText(%q): code %q", s, code)
			}
		} else {
			if !utf8.ValidString(s) || strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > max {
				t.Fatalf("checkText accepted %q", s)
			}
			for _, r := range s {
				if r != '\t' && r != '\r' && r != '\n' && (unicode.IsControl(r) || r == utf8.RuneError) {
					t.Fatalf("checkText accepted %q with %U", s, r)
				}
			}
		}
		name, err := checkName("name", s, max)
		if err != nil {
			if code := chat.ErrorCode(err); code != chat.EInvalid && code != chat.ETooLarge {
				t.Fatalf("checkName(%q): code %q", s, code)
			}
			return
		}
		if name != strings.TrimSpace(s) || name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > max {
			t.Fatalf("checkName(%q) accepted %q", s, name)
		}
		for _, r := range name {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
				t.Fatalf("checkName accepted %q with %U", name, r)
			}
		}
	})
}
