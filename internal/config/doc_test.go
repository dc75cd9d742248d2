package config

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// docRow matches a row of a key table in docs/configuration.md:
// | `server.listen` | string | `127.0.0.1:7070` | ... |
var docRow = regexp.MustCompile("^\\| `([a-z0-9_.\\[\\]]+)` \\| ([a-z]+) \\| ([^|]*) \\|")

// TestConfigurationReferenceListsEveryKeyWithItsDefault keeps
// docs/configuration.md in step with Keys(): every key is documented once,
// with the code's type and default, and nothing documented is gone.
func TestConfigurationReferenceListsEveryKeyWithItsDefault(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type row struct{ typ, def string }
	documented := map[string]row{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := docRow.FindStringSubmatch(sc.Text())
		if m == nil || strings.Contains(m[1], "[]") {
			continue // not a key row, or a field of consumer.subscriptions entries
		}
		if _, dup := documented[m[1]]; dup {
			t.Errorf("docs/configuration.md documents %s twice", m[1])
		}
		def := strings.TrimSpace(m[3])
		if def == "(empty)" {
			def = ""
		} else if q := strings.Split(def, "`"); len(q) >= 3 {
			def = q[1]
		}
		documented[m[1]] = row{m[2], def}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		got, ok := documented[k.Path]
		if !ok {
			t.Errorf("docs/configuration.md does not document %s (%s, default %q)", k.Path, k.Type, k.Default)
			continue
		}
		delete(documented, k.Path)
		want := k.Default
		if k.FileOnly {
			want = "" // "[0 entries]" in --help
		}
		if got.typ != k.Type || got.def != want {
			t.Errorf("docs/configuration.md has %s as %s with default %q; the code has %s with default %q",
				k.Path, got.typ, got.def, k.Type, want)
		}
	}
	for path := range documented {
		t.Errorf("docs/configuration.md documents %s, which is not a configuration key", path)
	}
}
