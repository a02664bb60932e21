package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/spf13/pflag"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/azote/azote/internal/api"
)

// opFlag maps one command-line flag to a field of an operation's request.
type opFlag struct {
	flag, field, usage string
	required           bool
	kind               string // "" string, "int", "bool", "doc" (JSON text or file://path)
}

// opCommand is a CLI verb that calls one operation (AWS CLI style:
// `azote iam create-user --user-name alice`).
type opCommand struct {
	op      string
	summary string
	flags   []opFlag
	// columns renders a list answer as a table: JSON field names; list is
	// the field of the answer holding the list ("" = the answer itself).
	columns []string
	list    string
}

var (
	fUser    = opFlag{flag: "user-name", field: "UserName", usage: "IAM user name"}
	fUserReq = opFlag{flag: "user-name", field: "UserName", usage: "IAM user name", required: true}
	fGroup   = opFlag{flag: "group-name", field: "GroupName", usage: "group name", required: true}
	fRole    = opFlag{flag: "role-name", field: "RoleName", usage: "role name", required: true}
	fPolArn  = opFlag{flag: "policy-arn", field: "PolicyArn", usage: "policy ARN or name", required: true}
	fPolName = opFlag{flag: "policy-name", field: "PolicyName", usage: "policy name", required: true}
	fPolDoc  = opFlag{flag: "policy-document", field: "PolicyDocument", usage: "policy JSON, or file://path", required: true, kind: "doc"}
	fKeyID   = opFlag{flag: "access-key-id", field: "AccessKeyId", usage: "access key id", required: true}
	fSerial  = opFlag{flag: "serial-number", field: "SerialNumber", usage: "MFA device serial (ARN)", required: true}
	fProfile = opFlag{flag: "instance-profile-name", field: "InstanceProfileName", usage: "instance profile name", required: true}
)

var iamOps = map[string]opCommand{
	"create-user":  {op: "iam:CreateUser", summary: "create a user", flags: []opFlag{fUserReq}},
	"get-user":     {op: "iam:GetUser", summary: "show a user (default: yourself)", flags: []opFlag{fUser}},
	"list-users":   {op: "iam:ListUsers", summary: "list users", columns: []string{"UserName", "UserId", "CreateDate", "Groups", "MFASerial"}},
	"delete-user":  {op: "iam:DeleteUser", summary: "delete a user with nothing left attached", flags: []opFlag{fUserReq}},
	"create-group": {op: "iam:CreateGroup", summary: "create a group", flags: []opFlag{fGroup}},
	"get-group":    {op: "iam:GetGroup", summary: "show a group and its members", flags: []opFlag{fGroup}},
	"list-groups":  {op: "iam:ListGroups", summary: "list groups", columns: []string{"GroupName", "GroupId", "CreateDate", "AttachedPolicies"}},
	"delete-group": {op: "iam:DeleteGroup", summary: "delete an empty group", flags: []opFlag{fGroup}},
	"add-user-to-group": {op: "iam:AddUserToGroup", summary: "add a user to a group",
		flags: []opFlag{fUserReq, fGroup}},
	"remove-user-from-group": {op: "iam:RemoveUserFromGroup", summary: "remove a user from a group",
		flags: []opFlag{fUserReq, fGroup}},
	"create-role": {op: "iam:CreateRole", summary: "create a role with a trust policy", flags: []opFlag{fRole,
		{flag: "assume-role-policy-document", field: "AssumeRolePolicyDocument", usage: "trust policy JSON, or file://path", required: true, kind: "doc"},
		{flag: "max-session-duration", field: "MaxSessionDuration", usage: "seconds (900..43200)", kind: "int"}}},
	"get-role":    {op: "iam:GetRole", summary: "show a role", flags: []opFlag{fRole}},
	"list-roles":  {op: "iam:ListRoles", summary: "list roles", columns: []string{"RoleName", "RoleId", "CreateDate", "AttachedPolicies"}},
	"delete-role": {op: "iam:DeleteRole", summary: "delete a role without policies", flags: []opFlag{fRole}},
	"update-assume-role-policy": {op: "iam:UpdateAssumeRolePolicy", summary: "replace a role's trust policy",
		flags: []opFlag{fRole, fPolDoc}},
	"create-policy": {op: "iam:CreatePolicy", summary: "create a managed policy", flags: []opFlag{fPolName, fPolDoc}},
	"get-policy":    {op: "iam:GetPolicy", summary: "show a managed policy", flags: []opFlag{fPolArn}},
	"list-policies": {op: "iam:ListPolicies", summary: "list managed policies", columns: []string{"PolicyName", "Arn", "BuiltIn"}},
	"delete-policy": {op: "iam:DeletePolicy", summary: "delete an unattached policy", flags: []opFlag{fPolArn}},
	"list-mfa-devices": {op: "iam:ListMFADevices", summary: "list MFA devices", flags: []opFlag{fUser},
		columns: []string{"SerialNumber", "UserName", "Enabled", "EnableDate"}},
	"deactivate-mfa-device": {op: "iam:DeactivateMFADevice", summary: "remove a user's MFA device", flags: []opFlag{fUser, fSerial}},
	"create-access-key":     {op: "iam:CreateAccessKey", summary: "create an access key (its secret is shown once)", flags: []opFlag{fUser}},
	"list-access-keys": {op: "iam:ListAccessKeys", summary: "list a user's access keys", flags: []opFlag{fUser},
		columns: []string{"AccessKeyId", "UserName", "Status", "CreateDate"}},
	"update-access-key": {op: "iam:UpdateAccessKey", summary: "set a key Active or Inactive", flags: []opFlag{fUser, fKeyID,
		{flag: "status", field: "Status", usage: "Active or Inactive", required: true}}},
	"rotate-access-key":   {op: "iam:RotateAccessKey", summary: "create a new key and deactivate the old one", flags: []opFlag{fUser, fKeyID}},
	"delete-access-key":   {op: "iam:DeleteAccessKey", summary: "delete an access key", flags: []opFlag{fUser, fKeyID}},
	"get-account-summary": {op: "iam:GetAccountSummary", summary: "show the account"},

	"create-instance-profile": {op: "iam:CreateInstanceProfile", summary: "create an instance profile (then add a role to it)", flags: []opFlag{fProfile}},
	"get-instance-profile":    {op: "iam:GetInstanceProfile", summary: "show an instance profile and its role", flags: []opFlag{fProfile}},
	"list-instance-profiles": {op: "iam:ListInstanceProfiles", summary: "list instance profiles", list: "InstanceProfiles",
		columns: []string{"InstanceProfileName", "InstanceProfileId", "Arn", "CreateDate"}},
	"list-instance-profiles-for-role": {op: "iam:ListInstanceProfilesForRole", summary: "list the instance profiles that hold a role", flags: []opFlag{fRole},
		list: "InstanceProfiles", columns: []string{"InstanceProfileName", "InstanceProfileId", "Arn", "CreateDate"}},
	"delete-instance-profile": {op: "iam:DeleteInstanceProfile", summary: "delete an instance profile that holds no role", flags: []opFlag{fProfile}},
	"add-role-to-instance-profile": {op: "iam:AddRoleToInstanceProfile", summary: "put a role in an instance profile (one at most; needs iam:PassRole on it)",
		flags: []opFlag{fProfile, fRole}},
	"remove-role-from-instance-profile": {op: "iam:RemoveRoleFromInstanceProfile", summary: "take the role out of an instance profile",
		flags: []opFlag{fProfile, fRole}},
}

// iamCommands lists the iam verbs: the operation verbs of iamOps, sorted,
// and the ones with code of their own.
func iamCommands() []command {
	cmds := []command{
		{use: "create-virtual-mfa-device", short: "create a virtual MFA device and show its QR code", build: mfaCreate,
			example: "azote iam create-virtual-mfa-device --virtual-mfa-device-name alice --profile admin"},
		{use: "enable-mfa-device", short: "enrol an MFA device with two consecutive codes", build: mfaEnable,
			example: "azote iam enable-mfa-device --serial-number arn:aws:iam::123456789012:mfa/alice --authentication-code1 123456 --authentication-code2 654321"},
		{use: "history", short: "show who changed which permission when, from the audit trail", build: iamHistory,
			example: "azote iam history --principal alice --start-time 168h"},
		{use: "export", short: "print the permission state as JSON (no secrets)", build: iamExport,
			example: "azote iam export > iam.json"},
		{use: "diff SAVED.json", short: "compare the permission state with a saved export", build: iamDiff,
			example: "azote iam diff iam.json"},
	}
	ops := iamOperations()
	verbs := make([]string, 0, len(ops))
	for v := range ops {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	for _, v := range verbs {
		oc := ops[v]
		cmds = append(cmds, command{use: v, short: oc.summary, build: oc.build, example: oc.example(v)})
	}
	return cmds
}

// iamOperations is iamOps with the verbs made per kind of principal.
func iamOperations() map[string]opCommand {
	ops := map[string]opCommand{}
	for k, v := range iamOps {
		ops[k] = v
	}
	for _, kind := range []struct{ noun, flag, field string }{{"user", "user-name", "UserName"}, {"group", "group-name", "GroupName"}, {"role", "role-name", "RoleName"}} {
		id := opFlag{flag: kind.flag, field: kind.field, usage: kind.noun + " name", required: true}
		title := strings.ToUpper(kind.noun[:1]) + kind.noun[1:]
		ops["attach-"+kind.noun+"-policy"] = opCommand{op: "iam:Attach" + title + "Policy", summary: "attach a managed policy to a " + kind.noun, flags: []opFlag{id, fPolArn}}
		ops["detach-"+kind.noun+"-policy"] = opCommand{op: "iam:Detach" + title + "Policy", summary: "detach a managed policy from a " + kind.noun, flags: []opFlag{id, fPolArn}}
		ops["put-"+kind.noun+"-policy"] = opCommand{op: "iam:Put" + title + "Policy", summary: "set an inline policy of a " + kind.noun, flags: []opFlag{id, fPolName, fPolDoc}}
		ops["delete-"+kind.noun+"-policy"] = opCommand{op: "iam:Delete" + title + "Policy", summary: "delete an inline policy of a " + kind.noun, flags: []opFlag{id, fPolName}}
	}
	return ops
}

// example is one command line of an operation verb, with its required
// flags filled in with sample values.
func (oc opCommand) example(verb string) string {
	samples := map[string]string{"user-name": "alice", "group-name": "ops", "role-name": "ops", "policy-arn": "ReadOnlyAccess",
		"policy-name": "dev-volumes", "policy-document": "file://policy.json", "assume-role-policy-document": "file://trust.json",
		"access-key-id": "AKIAEXAMPLE", "instance-profile-name": "web", "serial-number": "arn:aws:iam::123456789012:mfa/alice", "status": "Inactive"}
	line := "azote iam " + verb
	for _, f := range oc.flags {
		if f.required {
			line += " --" + f.flag + " " + samples[f.flag]
		}
	}
	return line
}

// build binds an operation verb's flags and returns what runs it.
func (oc opCommand) build(e *env, fs *pflag.FlagSet) runFunc {
	vals := map[string]*string{}
	for _, f := range oc.flags {
		vals[f.flag] = fs.String(f.flag, "", f.usage)
	}
	return func(ctx context.Context, pos []string) error {
		body := map[string]any{}
		for _, f := range oc.flags {
			v := *vals[f.flag]
			if v == "" {
				if f.required {
					return usageError{msg: "--" + f.flag + " is required"}
				}
				continue
			}
			switch f.kind {
			case "int":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return usageError{msg: fmt.Sprintf("--%s %q: want a number", f.flag, v)}
				}
				body[f.field] = n
			case "doc":
				doc, err := readDoc(v)
				if err != nil {
					return usageError{msg: fmt.Sprintf("--%s: %v", f.flag, err)}
				}
				body[f.field] = doc
			default:
				body[f.field] = v
			}
		}
		var out any
		if err := e.client.Call(ctx, oc.op, body, &out); err != nil {
			return err
		}
		return e.render(out, oc.list, oc.columns)
	}
}

// readDoc reads a policy document given inline or as file://path.
func readDoc(v string) (string, error) {
	if path, ok := strings.CutPrefix(v, "file://"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	if !json.Valid([]byte(v)) {
		return "", fmt.Errorf("not JSON (give the document inline or as file://path)")
	}
	return v, nil
}

// render prints an operation's answer: JSON with -o json; a table for
// lists with columns; otherwise indented JSON, which is the most readable
// form of nested IAM objects.
func (e *env) render(out any, listField string, columns []string) error {
	if e.structured() || len(columns) == 0 {
		if m, ok := out.(map[string]any); ok && len(m) == 0 {
			return nil
		}
		return e.emit(out)
	}
	list := out
	if listField != "" {
		if m, ok := out.(map[string]any); ok {
			list = m[listField]
		}
	}
	items, _ := list.([]any)
	var rows [][]string
	for _, it := range items {
		obj, _ := it.(map[string]any)
		var row []string
		for _, c := range columns {
			row = append(row, cell(obj[c]))
		}
		rows = append(rows, row)
	}
	e.table(strings.ToUpper(strings.Join(columns, "\t")), rows)
	return nil
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	case []any:
		var parts []string
		for _, p := range x {
			parts = append(parts, cell(p))
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, ",")
	case map[string]any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

func mfaCreate(e *env, fs *pflag.FlagSet) runFunc {
	name := fs.String("virtual-mfa-device-name", "", "device name")
	user := fs.String("user-name", "", "user the device is for (default: yourself)")
	return func(ctx context.Context, pos []string) error {
		if *name == "" {
			return usageError{msg: "--virtual-mfa-device-name is required"}
		}
		var d api.NewVirtualMFADevice
		if err := e.client.Call(ctx, "iam:CreateVirtualMFADevice", api.CreateVirtualMFADeviceRequest{VirtualMFADeviceName: *name, UserName: *user}, &d); err != nil {
			return err
		}
		if e.structured() {
			return e.emit(d)
		}
		showDevice(e, d)
		fmt.Fprintf(e.stdout, "\nEnrol it: azote iam enable-mfa-device --serial-number %s --authentication-code1 CODE --authentication-code2 NEXT-CODE\n", d.SerialNumber)
		return nil
	}
}

func showDevice(e *env, d api.NewVirtualMFADevice) {
	fmt.Fprintln(e.stdout, "Scan this with an authenticator app (or type the secret):")
	fmt.Fprintln(e.stdout, d.QRCode)
	e.kv([][2]string{{"Serial", d.SerialNumber}, {"Secret (base32)", d.Base32StringSeed}, {"URI", d.URI}})
}

func mfaEnable(e *env, fs *pflag.FlagSet) runFunc {
	var r api.EnableMFADeviceRequest
	fs.StringVar(&r.UserName, "user-name", "", "user (default: yourself)")
	fs.StringVar(&r.SerialNumber, "serial-number", "", "device serial (ARN)")
	fs.StringVar(&r.AuthenticationCode1, "authentication-code1", "", "a code")
	fs.StringVar(&r.AuthenticationCode2, "authentication-code2", "", "the next code")
	return func(ctx context.Context, pos []string) error {
		if r.SerialNumber == "" || r.AuthenticationCode1 == "" || r.AuthenticationCode2 == "" {
			return usageError{msg: "--serial-number, --authentication-code1 and --authentication-code2 are required"}
		}
		if err := e.client.Call(ctx, "iam:EnableMFADevice", r, nil); err != nil {
			return err
		}
		e.progress("MFA device %s enabled", r.SerialNumber)
		return nil
	}
}

func iamExport(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		var snap api.Snapshot
		if err := e.client.Call(ctx, "iam:ExportState", nil, &snap); err != nil {
			return err
		}
		return e.emit(snap)
	}
}

func iamDiff(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		raw, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		var saved api.Snapshot
		if err := json.Unmarshal(raw, &saved); err != nil {
			return fmt.Errorf("%s: %w", pos[0], err)
		}
		var cur api.Snapshot
		if err := e.client.Call(ctx, "iam:ExportState", nil, &cur); err != nil {
			return err
		}
		changes := api.Diff(saved, cur)
		if e.structured() {
			if changes == nil {
				changes = []api.Change{}
			}
			if err := e.emit(changes); err != nil {
				return err
			}
		} else if len(changes) == 0 {
			fmt.Fprintln(e.stdout, "no changes since", pos[0])
		} else {
			for _, c := range changes {
				fmt.Fprintln(e.stdout, c)
			}
		}
		if len(changes) > 0 {
			return errDrift{n: len(changes)}
		}
		return nil
	}
}

// errDrift makes `iam diff` exit non-zero when the state drifted, like
// diff(1), so a cron job can alert on it.
type errDrift struct{ n int }

func (d errDrift) Error() string { return fmt.Sprintf("%d change(s) since the saved state", d.n) }

// iamHistory lists the permission changes recorded in the audit trail.
func iamHistory(e *env, fs *pflag.FlagSet) runFunc {
	principal := fs.String("principal", "", "only changes made by this principal (ARN, user name or key id)")
	start := fs.String("start-time", "", "only changes from this time (RFC 3339, or a duration ago: 168h); old name --since")
	end := fs.String("end-time", "", "only changes up to this time (RFC 3339, or a duration ago)")
	return func(ctx context.Context, pos []string) error {
		req := api.LookupEventsRequest{Principal: *principal, Limit: 10000}
		var err error
		if req.StartTime, req.EndTime, err = timeRange(*start, *end); err != nil {
			return err
		}
		var out struct {
			Events []auditEvent `json:"Events"`
		}
		if err := e.client.Call(ctx, "audit:LookupEvents", req, &out); err != nil {
			return err
		}
		var changes []auditEvent
		for _, ev := range out.Events {
			if ev.EventSource == "iam.azote" && !ev.ReadOnly && ev.ErrorCode == "" {
				changes = append(changes, ev)
			}
		}
		if e.structured() {
			if changes == nil {
				changes = []auditEvent{}
			}
			return e.emit(changes)
		}
		var rows [][]string
		for _, ev := range changes {
			rows = append(rows, []string{ev.EventTime, ev.who(), ev.EventName, ev.target()})
		}
		e.table("TIME\tWHO\tCHANGE\tTARGET", rows)
		return nil
	}
}
