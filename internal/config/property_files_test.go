package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPropertyFilesAreReadIntoKafkaProperties(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	password := filepath.Join(dir, "password")
	if err := os.WriteFile(password, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("", nil, []Override{
		{Key: "kafka.properties.sasl.username", Value: "orders"},
		{Key: "kafka.property_files.sasl.password", Value: password},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Kafka.Properties["sasl.password"]; got != "s3cret" {
		t.Errorf("sasl.password = %q, want the file's content without its line break", got)
	}
	if got := cfg.Kafka.Properties["sasl.username"]; got != "orders" {
		t.Errorf("sasl.username = %q, want orders", got)
	}
}

func TestPropertyFilesRejectMissingFilesAndDoubleSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	present := filepath.Join(dir, "password")
	if err := os.WriteFile(present, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		overrides []Override
		wantText  string
	}{
		{"missing file", []Override{{Key: "kafka.property_files.sasl.password", Value: filepath.Join(dir, "absent")}},
			"kafka.property_files.sasl.password: open"},
		{"empty path", []Override{{Key: "kafka.property_files.sasl.password", Value: ""}},
			"kafka.property_files.sasl.password: empty file path"},
		{"set in both places", []Override{
			{Key: "kafka.properties.sasl.password", Value: "inline"},
			{Key: "kafka.property_files.sasl.password", Value: present},
		}, "also set in kafka.properties"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load("", nil, tc.overrides)
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("Load error = %v, want one containing %q", err, tc.wantText)
			}
		})
	}
}
