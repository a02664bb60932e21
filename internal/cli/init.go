package cli

import (
	"bufio"
	"context"
	"fmt"
	"github.com/spf13/pflag"
	"os"
	"path/filepath"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
)

// initAccount bootstraps the account over the local socket: root's MFA
// device (enrolled with two consecutive codes), the Administrators group
// and a first admin user whose key goes into a credentials profile. Root
// never gets an access key.
func initAccount(e *env, fs *pflag.FlagSet) runFunc {
	admin := fs.String("admin", "admin", "name of the first admin user")
	codes := fs.String("root-codes", "", "two consecutive codes of root's new MFA device, comma-separated (prompted for when absent)")
	profileName := fs.String("save-profile", "", "credentials profile to write for the admin (default: the admin's name)")
	return func(ctx context.Context, pos []string) error {
		if e.profile != "" || e.endpoint != "" {
			return usageError{msg: "init runs as host root on the local socket, not with a profile"}
		}
		// The local socket, whatever AWS_PROFILE the environment holds.
		e.local = true
		e.client = client.New(e.socket)
		e.client.SetUserAgent(userAgent())
		var begin struct {
			AccountID string                  `json:"AccountId"`
			Device    api.NewVirtualMFADevice `json:"Device"`
		}
		if err := e.client.Call(ctx, "iam:InitAccountBegin", nil, &begin); err != nil {
			return err
		}
		var c1, c2 string
		if *codes != "" {
			var ok bool
			c1, c2, ok = strings.Cut(*codes, ",")
			if !ok {
				return usageError{msg: "--root-codes: want CODE1,CODE2"}
			}
		} else {
			fmt.Fprintf(e.stderr, "Account %s: root's virtual MFA device\n", begin.AccountID)
			fmt.Fprintln(e.stderr, begin.Device.QRCode)
			fmt.Fprintf(e.stderr, "Secret (base32): %s\n", begin.Device.Base32StringSeed)
			in := bufio.NewReader(e.stdin)
			fmt.Fprint(e.stderr, "Enter a code from the device: ")
			c1, _ = in.ReadString('\n')
			fmt.Fprint(e.stderr, "Wait for the next code and enter it: ")
			c2, _ = in.ReadString('\n')
		}
		var out struct {
			Account       api.InitResponse `json:"Account"`
			CACertificate string           `json:"CACertificate"`
			Endpoint      string           `json:"Endpoint"`
			Region        string           `json:"Region"`
		}
		req := api.InitRequest{RootCode1: strings.TrimSpace(c1), RootCode2: strings.TrimSpace(c2), AdminUser: *admin}
		if err := e.client.Call(ctx, "iam:InitAccount", req, &out); err != nil {
			return err
		}
		home := filepath.Dir(credentialsFile())
		if err := os.MkdirAll(home, 0o700); err != nil {
			return err
		}
		caPath := filepath.Join(home, "ca-"+out.Account.AccountID+".pem")
		if err := os.WriteFile(caPath, []byte(out.CACertificate), 0o644); err != nil {
			return err
		}
		name := *profileName
		if name == "" {
			name = *admin
		}
		key := out.Account.AccessKey
		path, err := saveProfile(profile{Name: name, AccessKeyID: key.AccessKeyID, Secret: key.SecretAccessKey, Endpoint: out.Endpoint, CABundle: caPath, Region: out.Region})
		if err != nil {
			return err
		}
		if e.structured() {
			return e.emit(map[string]any{"AccountId": out.Account.AccountID, "RootMFASerial": out.Account.RootMFA, "Admin": out.Account.Admin.UserName,
				"AccessKeyId": key.AccessKeyID, "SecretAccessKey": key.SecretAccessKey, "Profile": name, "CredentialsFile": path, "CABundle": caPath, "Endpoint": out.Endpoint})
		}
		e.kv([][2]string{
			{"Account", out.Account.AccountID},
			{"Root MFA", out.Account.RootMFA + " (enabled; root has no access keys and acts only with MFA)"},
			{"Admin user", out.Account.Admin.UserName + " (group " + api.AdminGroup + ")"},
			{"Access key", key.AccessKeyID},
			{"Secret key", key.SecretAccessKey + "  <- shown once"},
			{"Profile", name + " in " + path},
			{"Endpoint", out.Endpoint},
			{"CA bundle", caPath},
		})
		fmt.Fprintf(e.stdout, "\nNext: enrol the admin's own MFA device and use MFA sessions for dangerous actions:\n")
		fmt.Fprintf(e.stdout, "  azote iam create-virtual-mfa-device --profile %s --virtual-mfa-device-name %s\n", name, *admin)
		return nil
	}
}
