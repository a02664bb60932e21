package controller

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

const rootKeyUsage = `usage: azoted root-key migrate --to tpm|passphrase|file [--state-dir DIR] [--tpm-device DEV] [--root-key-passphrase-file FILE|-]

Keeps the host root key of DIR in another form: the same 32 bytes, so
nothing wrapped under it changes. The new form is written and read back
before the old one is overwritten with zeros and removed. azoted must be
stopped; start it again with --root-key set to the new form (or auto).
Run again after an interruption, it finishes the migration.
--root-key-passphrase-file gives the passphrase of the passphrase form,
whichever side of the migration it is on.`

// rootKeyCommand is `azoted root-key migrate --to FORM`.
func rootKeyCommand(args []string) int {
	return rootKeyMain(args, os.Stdin, os.Stderr)
}

func rootKeyMain(args []string, stdin io.Reader, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "migrate" {
		fmt.Fprintln(stderr, rootKeyUsage)
		return 2
	}
	cfg := DefaultConfig()
	var to string
	fs := flag.NewFlagSet("azoted root-key migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, rootKeyUsage) }
	fs.StringVar(&to, "to", "", "the form to keep the root key in: tpm, passphrase or file")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "azoted's state directory")
	rootKeyFlags(fs, &cfg)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 0 || to == "" {
		fmt.Fprintln(stderr, rootKeyUsage)
		return 2
	}
	rc := cfg.rootKeyConfig()
	rc.Stdin = stdin
	if err := migrateRootKey(cfg.StateDir, rc, keys.Source(to)); err != nil {
		fmt.Fprintln(stderr, "azoted:", err)
		return 1
	}
	fmt.Fprintf(stderr, "azoted: the root key in %s is now kept as %s; start azoted with --root-key %s or auto\n", cfg.StateDir, to, to)
	return 0
}

// migrateRootKey runs keys.MigrateRoot while holding azoted's state
// store, whose lock a running azoted holds: a migration never races an
// azoted reading the key it is moving.
func migrateRootKey(stateDir string, rc keys.RootConfig, to keys.Source) error {
	db := filepath.Join(stateDir, "state.db")
	if _, err := os.Stat(db); err == nil {
		st, err := store.OpenBolt(db)
		if err != nil {
			return fmt.Errorf("%w: is azoted running on %s? Stop it first", err, stateDir)
		}
		defer st.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return keys.MigrateRoot(rc, to)
}
