//go:build windows || plan9 || solaris || aix

package bolt

import "os"

// lockExclusive does not check the lock on these systems: bbolt locks with
// other primitives there (Windows also refuses to rename a file another
// process has open). Stop the daemon before moving its file.
func lockExclusive(f *os.File) error { return nil }
