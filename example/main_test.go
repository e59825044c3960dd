package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOriginOf(t *testing.T) {
	for addr, want := range map[string]string{
		"localhost:8080":   "http://localhost:8080",
		":8080":            "http://localhost:8080",
		"127.0.0.1:9000":   "http://localhost:9000",
		"0.0.0.0:8080":     "http://localhost:8080",
		"[::1]:8080":       "http://localhost:8080",
		"bank.example:443": "http://bank.example:443",
	} {
		if got := originOf(addr); got != want {
			t.Errorf("originOf(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestKeysFromEnv(t *testing.T) {
	tests := []struct {
		name, hash, block string
		ok, keys          bool
	}{
		{"neither", "", "", true, false},
		{"both", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "00112233445566778899aabbccddeeff", true, true},
		{"hash only", "0011", "", false, false},
		{"block only", "", "0011", false, false},
		{"not hex", "zz", "00", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("STEPUP_HASH_KEY", tt.hash)
			t.Setenv("STEPUP_BLOCK_KEY", tt.block)
			h, b, err := keysFromEnv()
			if (err == nil) != tt.ok || (h != nil && b != nil) != tt.keys {
				t.Errorf("keysFromEnv() = %x, %x, %v", h, b, err)
			}
		})
	}
}

func TestDefaultDBPath(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache) // os.UserCacheDir on Linux
	t.Setenv("HOME", cache)           // and elsewhere
	path, err := defaultDBPath()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "bank.db" || filepath.Base(filepath.Dir(path)) != "stepup-example" || !strings.HasPrefix(path, cache) {
		t.Errorf("defaultDBPath() = %q, want .../stepup-example/bank.db under %s", path, cache)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		t.Errorf("the folder was not made: %v", err)
	}
}
