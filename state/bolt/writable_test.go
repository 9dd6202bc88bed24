package bolt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestNotWritableText: an open that fails for permissions or a read-only
// file system names the directory and the fix; other errors pass as they are.
func TestNotWritableText(t *testing.T) {
	const path = "/var/lib/calpresence/state.db"
	openErr := func(errno syscall.Errno) error {
		return fmt.Errorf("open state %s: %w", path, &fs.PathError{Op: "open", Path: path, Err: errno})
	}
	tests := []struct {
		name string
		err  error
		want []string // substrings of the message; nil: err unchanged
	}{
		{"permission", openErr(syscall.EACCES), []string{
			"open state /var/lib/calpresence/state.db: open /var/lib/calpresence/state.db: permission denied",
			"state directory is not writable: /var/lib/calpresence cannot be written by this process",
			fmt.Sprintf("(uid %d, gid %d)", os.Getuid(), os.Getgid()),
			"mount a writable\n  volume on it", "group 0", "chown",
		}},
		{"operation not permitted", openErr(syscall.EPERM), []string{"cannot be written by this process"}},
		{"read-only", openErr(syscall.EROFS), []string{
			"read-only file system\n",
			"state directory is not writable: /var/lib/calpresence is on a read-only file system",
			"mount a writable volume on /var/lib/calpresence",
			"-v calpresence-state:/var/lib/calpresence",
		}},
		{"other", openErr(syscall.ENOSPC), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := explainNotWritable(path, tt.err)
			if tt.want == nil {
				if got != tt.err {
					t.Errorf("explainNotWritable(%v) = %v; want it unchanged", tt.err, got)
				}
				return
			}
			if !errors.Is(got, ErrNotWritable) || !errors.Is(got, tt.err) {
				t.Errorf("explainNotWritable(%v) = %v; want ErrNotWritable wrapping the cause", tt.err, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("explainNotWritable(%v) =\n%v\nwant it to contain %q", tt.err, got, w)
				}
			}
		})
	}
}

// TestOpenNotWritable: Open in a directory this process cannot write, and
// under a directory it cannot create, fails with ErrNotWritable naming it.
// Root may write anywhere, so this runs only as another user.
func TestOpenNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root bypasses directory permissions; TestNotWritableText covers the text")
	}
	ro := t.TempDir()
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	for _, path := range []string{filepath.Join(ro, "state.db"), filepath.Join(ro, "sub", "state.db")} {
		_, err := Open(path, 0)
		if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), filepath.Dir(path)+" cannot be written") {
			t.Errorf("Open(%s) = %v; want ErrNotWritable naming %s", path, err, filepath.Dir(path))
		}
	}
}

// TestCheckWritable: a state file that can be created or written passes
// and leaves nothing behind; one that cannot is named.
func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	if err := CheckWritable(filepath.Join(dir, "sub", "state.db")); err != nil {
		t.Errorf("CheckWritable(new file in a new folder) = %v; want nil", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("CheckWritable left %v behind", left)
	}
	existing := filepath.Join(dir, "state.db")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckWritable(existing); err != nil {
		t.Errorf("CheckWritable(existing file) = %v; want nil", err)
	}
	if err := CheckWritable(dir); err == nil || !strings.Contains(err.Error(), dir+" is not a regular file") {
		t.Errorf("CheckWritable(a directory) = %v; want it named", err)
	}
	under := filepath.Join(existing, "state.db")
	if err := CheckWritable(under); err == nil || !strings.Contains(err.Error(), "cannot create "+under+": "+existing+" is not a directory") {
		t.Errorf("CheckWritable(under a file) = %v; want it named", err)
	}
}
