package bolt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotWritable reports a state file that cannot be created or written
// where it is: its directory is not writable by this process, or is on a
// read-only file system (a container started read-only with no volume on
// the state directory). Test for it with errors.Is; the error's text names
// the directory and the ways out.
var ErrNotWritable = errors.New("state directory is not writable")

// notWritableError adds the explanation and the fix to an error that says
// the state file cannot be written.
type notWritableError struct {
	dir      string
	readOnly bool // the file system is read-only (EROFS)
	uid, gid int
	err      error
}

func (e *notWritableError) Error() string {
	if e.readOnly {
		return fmt.Sprintf("%v\n  %v: %s is on a read-only file system (a container started with --read-only or\n"+
			"  readOnlyRootFilesystem and no volume there); mount a writable volume on %s\n"+
			"  (docker run -v calpresence-state:%s; in Kubernetes a PersistentVolumeClaim or an emptyDir),\n"+
			"  or set state.path to a writable place",
			e.err, ErrNotWritable, e.dir, e.dir, e.dir)
	}
	return fmt.Sprintf("%v\n  %v: %s cannot be written by this process (uid %d, gid %d); mount a writable\n"+
		"  volume on it, run as a member of group 0 (the image's %s is group 0 and\n"+
		"  group-writable, as OpenShift expects), or give uid %d write access to it\n"+
		"  (chown %d %s, or chgrp 0 %s && chmod g+rwx %s on the host's directory)",
		e.err, ErrNotWritable, e.dir, e.uid, e.gid, e.dir, e.uid, e.uid, e.dir, e.dir, e.dir)
}

func (e *notWritableError) Is(target error) bool { return target == ErrNotWritable }
func (e *notWritableError) Unwrap() error        { return e.err }

// explainNotWritable wraps err, an error opening the state file at path,
// with the reason and the fix when it says the file or its directory cannot
// be written (permission denied, read-only file system). Any other error is
// returned as it is.
func explainNotWritable(path string, err error) error {
	readOnly := errors.Is(err, syscall.EROFS)
	if !readOnly && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	dir, _ := filepath.Abs(filepath.Dir(path))
	return &notWritableError{dir: dir, readOnly: readOnly, uid: os.Getuid(), gid: os.Getgid(), err: err}
}

// CheckWritable checks, without opening it, that the state file at path
// can be used: when it exists, it is a regular file that can be opened for
// writing; otherwise a file can be created (and is removed again) in its
// directory, or in the nearest directory above it that exists (Open
// creates the folders). A directory this process cannot write is
// ErrNotWritable with the fix in its text, as from Open.
func CheckWritable(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && !st.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case err == nil:
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return explainNotWritable(path, fmt.Errorf("cannot write the state file: %w", err))
		}
		return f.Close()
	}
	dir := filepath.Dir(path)
	for {
		st, serr := os.Stat(dir)
		if serr == nil {
			if !st.IsDir() {
				return fmt.Errorf("cannot create %s: %s is not a directory", path, dir)
			}
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return err
		}
		dir = parent
	}
	f, err := os.CreateTemp(dir, ".calpresence-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // its path is a temporary name that means nothing to the reader
		}
		return explainNotWritable(filepath.Join(dir, "state.db"), fmt.Errorf("cannot create %s: directory %s is not writable: %w", path, dir, err))
	}
	name := f.Name()
	_ = f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("cannot remove the test file %s: %w", name, err)
	}
	return nil
}
