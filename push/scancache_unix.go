//go:build linux || darwin || freebsd || netbsd || openbsd

package push

import (
	"io/fs"
	"syscall"
)

// sysID takes the change time, inode and device from a stat result.
func sysID(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{CTime: ctime(st), Ino: uint64(st.Ino), Dev: uint64(st.Dev)}, true
}
