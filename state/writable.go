package state

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
