//go:build !windows && !plan9 && !solaris && !aix

package bolt

import (
	"errors"
	"os"
	"syscall"
)

// lockExclusive takes the lock bbolt takes (flock) on f without waiting, or
// fails with ErrLocked.
func lockExclusive(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}
