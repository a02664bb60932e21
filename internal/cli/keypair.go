package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/azote/azote/internal/api"
)

var keyPairCommands = []command{
	{use: "import", short: "import the public key of an SSH key pair you keep (ed25519, or RSA of 2048 bits or more)", build: keyPairImport,
		example: "azote key-pair import --key-name laptop --public-key-material file://~/.ssh/id_ed25519.pub"},
	{use: "create", short: "make a key pair: its private key is printed (or written) once and not kept", build: keyPairCreate,
		example: "azote key-pair create --key-name ops --output-file ops.pem"},
	{use: "list", short: "list key pairs with their fingerprints (as EC2 prints them)", build: keyPairList,
		example: "azote key-pair list"},
	{use: "describe KEY-PAIR", short: "show one key pair (by id or name)", build: keyPairDescribe,
		example: "azote key-pair describe laptop"},
	{use: "delete KEY-PAIR", short: "delete a key pair (instances launched with it keep its key)", build: keyPairDelete,
		example: "azote key-pair delete laptop"},
}

// fileArg reads a value given inline or as file://path (~ is the home
// directory), as the aws CLI takes them.
func fileArg(v string) ([]byte, error) {
	path, ok := strings.CutPrefix(v, "file://")
	if !ok {
		return []byte(v), nil
	}
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		path = filepath.Join(home, rest)
	}
	return os.ReadFile(path)
}

func keyPairImport(e *env, fs *pflag.FlagSet) runFunc {
	var req api.ImportKeyPairRequest
	fs.StringVar(&req.KeyName, "key-name", "", "name of the key pair (required)")
	material := fs.String("public-key-material", "", "the OpenSSH public key, inline or file://path (required)")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more)")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.KeyPair, error) {
		if req.KeyName == "" || *material == "" {
			return api.KeyPair{}, usageError{msg: "give --key-name and --public-key-material"}
		}
		b, err := fileArg(*material)
		if err != nil {
			return api.KeyPair{}, fmt.Errorf("--public-key-material: %w", err)
		}
		req.PublicKeyMaterial = string(b)
		if len(tags) > 0 {
			req.Tags = tags
		}
		return e.client.ImportKeyPair(ctx, req)
	}, showKeyPair)
}

func keyPairCreate(e *env, fs *pflag.FlagSet) runFunc {
	var req api.CreateKeyPairRequest
	fs.StringVar(&req.KeyName, "key-name", "", "name of the key pair (required)")
	fs.StringVar(&req.KeyType, "key-type", api.KeyTypeED25519, "ed25519 or rsa")
	out := fs.String("output-file", "", "write the private key to this new file (mode 0600) instead of printing it")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more)")
	return func(ctx context.Context, pos []string) error {
		if req.KeyName == "" {
			return usageError{msg: "give --key-name"}
		}
		var f *os.File
		if *out != "" {
			// Made before asking, so that a key that cannot be written
			// is never made (it could not be shown again).
			var err error
			if f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
				return fmt.Errorf("--output-file: %w", err)
			}
		}
		if len(tags) > 0 {
			req.Tags = tags
		}
		kp, err := e.client.CreateKeyPair(ctx, req)
		if err != nil {
			if f != nil {
				f.Close()
				os.Remove(*out)
			}
			return err
		}
		if f == nil {
			if e.structured() {
				return e.emit(kp)
			}
			fmt.Fprint(e.stdout, kp.KeyMaterial)
			e.progress("key pair %s (%s) made; its private key above is shown this once, azoted does not keep it", kp.KeyName, kp.ID)
			return nil
		}
		_, err = f.WriteString(kp.KeyMaterial)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing the private key of %s to %s: %w (it is not kept by azoted: delete the pair and make another)", kp.ID, *out, err)
		}
		e.progress("private key written to %s", *out)
		return showKeyPair(e, kp.KeyPair)
	}
}

func keyPairList(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.KeyPair, error) {
		return e.client.ListKeyPairs(ctx)
	}, func(e *env, list []api.KeyPair) error {
		var rows [][]string
		for _, k := range list {
			rows = append(rows, []string{k.ID, k.KeyName, k.KeyType, k.KeyFingerprint, ago(k.CreatedAt)})
		}
		return e.list(list, "ID\tNAME\tTYPE\tFINGERPRINT\tCREATED", rows)
	})
}

func keyPairDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.KeyPair, error) {
		return e.client.DescribeKeyPair(ctx, pos[0])
	}, showKeyPair)
}

func keyPairDelete(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.KeyPair, error) {
		return e.client.DeleteKeyPair(ctx, pos[0])
	}, showKeyPair)
}

func showKeyPair(e *env, k api.KeyPair) error {
	if e.structured() {
		return e.emit(k)
	}
	origin := "imported"
	if k.Created {
		origin = "created by azoted"
	}
	e.kv([][2]string{{"ID", k.ID}, {"Name", k.KeyName}, {"Type", k.KeyType + " (" + origin + ")"},
		{"Fingerprint", k.KeyFingerprint}, {"Public key", k.PublicKey}, {"Tags", formatTags(k.Tags)},
		{"Created", k.CreatedAt.Format("2006-01-02T15:04:05Z07:00")}})
	return nil
}

// instanceSSH runs the user's ssh to the instance's primary private
// address (reached from the host through its VPC's host gateway),
// trusting only the host keys its agent reported at its last boot.
func instanceSSH(e *env, fs *pflag.FlagSet) runFunc {
	user := fs.StringP("user", "l", "admin", "user to log in as (Debian images: admin)")
	identity := fs.StringP("identity", "i", "", "private key file (default: ssh's own)")
	return func(ctx context.Context, pos []string) error {
		inst, err := e.client.DescribeInstance(ctx, pos[0])
		if err != nil {
			return err
		}
		args, known, err := sshArgs(inst, *user, *identity, pos[1:])
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "azote-ssh-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		kh := filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(kh, []byte(known), 0o600); err != nil {
			return err
		}
		args = append([]string{"-o", "UserKnownHostsFile=" + kh}, args...)
		cmd := exec.CommandContext(ctx, "ssh", args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
		err = cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return sshExit{code: exit.ExitCode()}
		}
		return err
	}
}

// sshExit is ssh's own exit status, passed on.
type sshExit struct{ code int }

func (s sshExit) Error() string { return fmt.Sprintf("ssh exited with status %d", s.code) }

// sshArgs are the arguments of ssh to inst (all but its known-hosts
// file) and the content of that file. The host keys are filed under the
// instance's id (HostKeyAlias), so that an address reused by another
// instance is never trusted for this one; extra goes after the address
// (ssh's options, then a remote command).
func sshArgs(inst api.Instance, user, identity string, extra []string) ([]string, string, error) {
	if inst.State != api.StateRunning {
		return nil, "", fmt.Errorf("instance %s is %s, not running", inst.ID, inst.State)
	}
	if inst.PrivateIP == "" {
		return nil, "", fmt.Errorf("instance %s has no network interface: launch it with --subnet, in a VPC with a host gateway", inst.ID)
	}
	if len(inst.SSHHostKeys) == 0 {
		return nil, "", fmt.Errorf("instance %s has reported no SSH host keys yet (its agent prints them on the console at boot): wait for it, or read `azote instance console %s`", inst.ID, inst.ID)
	}
	var known strings.Builder
	for _, k := range inst.SSHHostKeys {
		known.WriteString(inst.ID + " " + k + "\n")
	}
	args := []string{"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=" + inst.ID,
		"-o", "UpdateHostKeys=no", "-l", user}
	if identity != "" {
		args = append(args, "-i", identity)
	}
	args = append(args, inst.PrivateIP)
	return append(args, extra...), known.String(), nil
}

func instanceGetUserData(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.UserDataResponse, error) {
		return e.client.InstanceUserData(ctx, pos[0])
	}, func(e *env, u api.UserDataResponse) error {
		if e.structured() {
			return e.emit(u)
		}
		// The bytes as launched: a script is printed as it is.
		_, err := e.stdout.Write(u.UserData)
		return err
	})
}

func hostIdentityKey(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		pem, err := e.client.IdentityKey(ctx)
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(pem)
		return err
	}
}
