package cli

import (
	"context"
	"fmt"
	"github.com/spf13/pflag"

	"github.com/azote/azote/internal/api"
)

var stsCommands = []command{
	{use: "get-session-token", short: "get temporary credentials, with MFA when --mfa-code is given (--root: root session, local socket)", build: stsSession,
		example: "azote sts get-session-token --profile admin --mfa-code 123456 --save-profile admin-mfa"},
	{use: "assume-role", short: "get temporary credentials of a role", build: stsAssumeRole,
		example: "azote sts assume-role --role-arn ops --role-session-name alice --save-profile ops"},
	{use: "get-caller-identity", short: "show who the credentials belong to", build: stsWhoAmI,
		example: "azote sts get-caller-identity --profile admin"},
}

func stsSession(e *env, fs *pflag.FlagSet) runFunc {
	var r api.GetSessionTokenRequest
	fs.StringVar(&r.TokenCode, "mfa-code", "", "current code of your MFA device")
	fs.StringVar(&r.SerialNumber, "serial-number", "", "MFA device serial (default: your device)")
	fs.Int64Var(&r.DurationSeconds, "duration", 0, "seconds (default 12 h; root: 1 h)")
	fs.BoolVar(&r.Root, "root", false, "a session of the account root (host root on the local socket, MFA required)")
	save := fs.String("save-profile", "", "write the credentials to this profile of the credentials file")
	return func(ctx context.Context, pos []string) error {
		var out struct {
			Credentials api.Credentials `json:"Credentials"`
		}
		if err := e.client.Call(ctx, "sts:GetSessionToken", r, &out); err != nil {
			return err
		}
		return e.credentials(out.Credentials, *save)
	}
}

func stsAssumeRole(e *env, fs *pflag.FlagSet) runFunc {
	var r api.AssumeRoleRequest
	fs.StringVar(&r.RoleArn, "role-arn", "", "role ARN or name")
	fs.StringVar(&r.RoleSessionName, "role-session-name", "", "name of the session (shows in the audit trail)")
	fs.StringVar(&r.TokenCode, "mfa-code", "", "current code of your MFA device")
	fs.StringVar(&r.SerialNumber, "serial-number", "", "MFA device serial (default: your device)")
	fs.Int64Var(&r.DurationSeconds, "duration", 0, "seconds (default 1 h)")
	save := fs.String("save-profile", "", "write the credentials to this profile of the credentials file")
	return func(ctx context.Context, pos []string) error {
		if r.RoleArn == "" || r.RoleSessionName == "" {
			return usageError{msg: "--role-arn and --role-session-name are required"}
		}
		var out api.AssumeRoleResponse
		if err := e.client.Call(ctx, "sts:AssumeRole", r, &out); err != nil {
			return err
		}
		return e.credentials(out.Credentials, *save)
	}
}

// credentials prints temporary credentials, or saves them as a profile
// next to the current one (same endpoint and CA).
func (e *env) credentials(c api.Credentials, save string) error {
	if save != "" {
		p := profile{Name: save, AccessKeyID: c.AccessKeyID, Secret: c.SecretAccessKey, SessionToken: c.SessionToken, Region: "local"}
		if e.profile != "" {
			if cur, err := loadProfile(context.Background(), e.profile); err == nil {
				p.Endpoint, p.CABundle, p.Region = cur.Endpoint, cur.CABundle, cur.Region
			}
		} else if def, err := loadProfile(context.Background(), ""); err == nil {
			p.Endpoint, p.CABundle, p.Region = def.Endpoint, def.CABundle, def.Region
		}
		if e.endpoint != "" {
			p.Endpoint = e.endpoint
		}
		path, err := saveProfile(p)
		if err != nil {
			return err
		}
		e.progress("saved profile %q in %s (expires %s)", save, path, c.Expiration.Format("2006-01-02 15:04:05Z"))
		if e.output != "json" {
			return nil
		}
	}
	if e.structured() {
		return e.emit(map[string]any{"Credentials": c})
	}
	e.kv([][2]string{{"AccessKeyId", c.AccessKeyID}, {"SecretAccessKey", c.SecretAccessKey}, {"SessionToken", c.SessionToken}, {"Expiration", c.Expiration.Format("2006-01-02 15:04:05Z")}})
	return nil
}

func stsWhoAmI(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		var out map[string]any
		if err := e.client.Call(ctx, "sts:GetCallerIdentity", nil, &out); err != nil {
			return err
		}
		if e.structured() {
			return e.emit(out)
		}
		e.kv([][2]string{{"Account", fmt.Sprint(out["Account"])}, {"Arn", fmt.Sprint(out["Arn"])}, {"UserId", fmt.Sprint(out["UserId"])}, {"Type", fmt.Sprint(out["Type"])}, {"MFA", fmt.Sprint(out["MFA"])}})
		return nil
	}
}
