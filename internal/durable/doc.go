// Package durable writes small files so that a crash leaves either the old
// file or the whole new one, never a torn or empty one, and so that a
// WriteFile that returned nil survives a power cut.
//
// It is for the few files a host keeps across restarts (the host key, TLS
// keys and certificates), and SyncDir for the directories of the audit
// trail, whose renames must be durable too. It never writes in place, never follows a
// symbolic link at the temporary name, and never leaves its temporary file
// behind when it returns an error. It does not serialise writers: two
// concurrent WriteFiles of one path each leave a whole file, the last
// rename wins.
package durable
