package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/azote/azote/internal/api"
)

var instanceCommands = []command{
	{use: "run", short: "launch an instance and wait until its agent is ready", build: instanceRun,
		example: "azote instance run --name web --image default --vcpus 2 --memory 512 --volume data --tag env=dev\nazote instance run --name api --subnet front --security-group web --private-ip 10.0.1.20\nazote instance run --name worker --subnet front --iam-instance-profile web"},
	{use: "list", short: "list instances", build: instanceList,
		example: "azote instance list -o json --query '.[] | select(.State == \"running\") | .ID'"},
	{use: "describe INSTANCE", short: "show one instance (by id or name)", build: instanceDescribe,
		example: "azote instance describe web"},
	{use: "console INSTANCE", short: "print an instance's serial console (-f to follow), or open a shell in it (--interactive)", build: instanceConsole, textOnly: true,
		example: "azote instance console web --follow\nazote instance console web --interactive"},
	{use: "exec INSTANCE COMMAND...", short: "run a command in an instance through its agent, exiting with its status", build: instanceExec, textOnly: true,
		example: "azote instance exec web -- uname -a\nazote instance exec web --user admin --timeout 30s -- sh -c 'df -h /'"},
	{use: "stop INSTANCE", short: "power an instance off (guest shutdown, then forced)", build: instanceStop,
		example: "azote instance stop web"},
	{use: "start INSTANCE", short: "start a stopped instance", build: instanceStart,
		example: "azote instance start web --timeout 1m"},
	{use: "reboot INSTANCE", short: "reboot an instance's guest", build: instanceReboot,
		example: "azote instance reboot web"},
	{use: "terminate INSTANCE", short: "end an instance and delete its files", build: instanceTerminate,
		example: "azote instance terminate web"},
	{use: "modify INSTANCE", short: "change an instance's attributes (--termination-protection)", build: instanceModify,
		example: "azote instance modify web --termination-protection=false"},
	{use: "ssh INSTANCE", short: "run ssh to the instance's private address, trusting the host keys its agent reported (ssh's own options and a command after --)",
		build: instanceSSH, textOnly: true, passArgs: true, example: "azote instance ssh web --user admin -i ops.pem -- uname -a"},
	{use: "get-user-data INSTANCE", short: "print the user data an instance was launched with", build: instanceGetUserData,
		example: "azote instance get-user-data web"},
}

func instanceRun(e *env, fs *pflag.FlagSet) runFunc {
	var req api.RunInstanceRequest
	fs.StringVar(&req.Name, "name", "", "instance name (default: its id)")
	fs.StringVar(&req.Image, "image", "default", "image id or name")
	fs.IntVar(&req.VCPUs, "vcpus", 1, "virtual CPUs")
	fs.IntVar(&req.MemoryMiB, "memory", 256, "memory in MiB")
	fs.BoolVar(&req.TerminationProtection, "termination-protection", false, "refuse terminate until turned off")
	fs.StringVar(&req.RootVolume, "root-volume", "", "boot with this volume (made with volume create --image) as the root filesystem")
	var vols volumeFlag
	fs.Var(&vols, "volume", "attach VOLUME (or VOLUME:ro); repeat for more, the first is /dev/vda")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more); policies test it as aws:ResourceTag/KEY")
	fs.StringVar(&req.Subnet, "subnet", "", "give the instance a primary network interface in this subnet (id or name); none: no network")
	fs.StringArrayVar(&req.SecurityGroups, "security-group", nil, "security group (id or name) of the primary interface; repeat for more (default: the VPC's default group)")
	fs.StringVar(&req.PrivateIP, "private-ip", "", "the primary interface's address, inside the subnet and free (default: the lowest free one)")
	fs.StringVar(&req.IAMInstanceProfile, "iam-instance-profile", "", "instance profile (name or ARN) whose role's credentials the metadata service gives the guest; needs iam:PassRole on the role")
	fs.StringVar(&req.KeyName, "key-name", "", "key pair whose public key the metadata service gives the guest")
	userData := fs.String("user-data", "", "user data (at most 16 KiB), inline or file://path; run once at first boot when it starts with #!")
	var mdOpts api.MetadataOptions
	fs.StringVar(&mdOpts.HTTPTokens, "metadata-v1", "", "optional: the metadata service also answers IMDSv1 GETs without a token; required (the default): IMDSv2 only")
	fs.IntVar(&mdOpts.HTTPPutResponseHopLimit, "metadata-hop-limit", 0, "IP TTL of the metadata service's answers, 1-64 (default 1)")
	noWait := fs.Bool("no-wait", false, "return once the machine is launched")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the agent")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Instance, error) {
		if req.Subnet == "" && (len(req.SecurityGroups) > 0 || req.PrivateIP != "") {
			return api.Instance{}, usageError{msg: "--security-group and --private-ip are the primary interface's: give --subnet too"}
		}
		req.Volumes = vols
		if len(tags) > 0 {
			req.Tags = tags
		}
		if *userData != "" {
			b, err := fileArg(*userData)
			if err != nil {
				return api.Instance{}, fmt.Errorf("--user-data: %w", err)
			}
			if len(b) > api.MaxUserData {
				return api.Instance{}, usageError{msg: fmt.Sprintf("--user-data: %d bytes, at most %d", len(b), api.MaxUserData)}
			}
			req.UserData = b
		}
		if mdOpts != (api.MetadataOptions{}) {
			req.Metadata = &mdOpts
		}
		start := time.Now()
		e.progress("launching %d vCPU / %d MiB instance from image %s ...", req.VCPUs, req.MemoryMiB, req.Image)
		inst, err := e.client.RunInstance(ctx, req)
		if err != nil {
			return inst, err
		}
		e.progress("%s launched (engine %s/%s, pid %d); waiting for the guest agent ...", inst.ID, inst.Engine, inst.Accel, inst.PID)
		if !*noWait {
			if inst, err = waitReady(ctx, e, inst.ID, inst.BootCount, *timeout); err != nil {
				return inst, err
			}
			e.progress("%s is running: agent ready %d ms after launch (%.2f s since this command started)",
				inst.ID, inst.BootMs, time.Since(start).Seconds())
		}
		return inst, nil
	}, showInstance)
}

// waitReady waits until the instance reports ready in a boot after
// afterBoot-1, or fails if it stops or fails first.
func waitReady(ctx context.Context, e *env, id string, boot int, timeout time.Duration) (api.Instance, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inst, err := e.client.WaitInstance(wctx, id, func(i api.Instance) bool {
		switch i.State {
		case api.StateFailed, api.StateStopped, api.StateTerminated:
			return true
		}
		return i.Ready && i.BootCount >= boot
	})
	if err != nil {
		return inst, err
	}
	if !inst.Ready {
		return inst, api.Errorf(api.CodeIncorrectInstanceState, "instance %s became %s before it was ready: %s", id, inst.State, inst.StateReason)
	}
	return inst, nil
}

func instanceList(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.Instance, error) {
		return e.client.ListInstances(ctx)
	}, showInstances)
}

func showInstances(e *env, list []api.Instance) error {
	var rows [][]string
	for _, i := range list {
		boot := ""
		if i.BootMs > 0 {
			boot = strconv.FormatInt(i.BootMs, 10) + " ms"
		}
		rows = append(rows, []string{i.ID, i.Name, i.State, strconv.Itoa(i.VCPUs), strconv.Itoa(i.MemoryMiB),
			i.ImageID, i.Engine + "/" + i.Accel, boot, ago(i.CreatedAt), i.PrivateIP})
	}
	return e.list(list, "ID\tNAME\tSTATE\tVCPUS\tMEMORY_MIB\tIMAGE\tENGINE\tBOOT\tCREATED\tPRIVATE_IP", rows)
}

func showInstance(e *env, i api.Instance) error {
	if e.structured() {
		return e.emit(i)
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339Nano)
	}
	pairs := [][2]string{
		{"ID", i.ID}, {"Name", i.Name}, {"State", i.State}, {"Reason", i.StateReason},
		{"Image", i.ImageID}, {"vCPUs", strconv.Itoa(i.VCPUs)}, {"Memory", fmt.Sprintf("%d MiB", i.MemoryMiB)},
		{"Termination protection", strconv.FormatBool(i.TerminationProtection)},
		{"Tags", formatTags(i.Tags)},
		{"Engine", i.Engine + " (accel " + i.Accel + ")"},
		{"PID", func() string {
			if i.PID == 0 {
				return ""
			}
			return strconv.Itoa(i.PID)
		}()},
		{"Command line", i.Cmdline}, {"Command line SHA-384", i.CmdlineSHA384},
		{"Key pair", i.KeyName}, {"User data SHA-256", i.UserDataSHA256},
		{"Metadata service", func() string {
			if i.Metadata == nil {
				return ""
			}
			return fmt.Sprintf("tokens %s, hop limit %d", i.Metadata.HTTPTokens, i.Metadata.HTTPPutResponseHopLimit)
		}()},
		{"SSH host keys", strings.Join(i.SSHHostKeys, ", ")},
		{"Created", i.CreatedAt.Format(time.RFC3339Nano)}, {"Launched", ts(i.LaunchedAt)}, {"Ready", ts(i.ReadyAt)},
		{"Boots", strconv.Itoa(i.BootCount)},
	}
	for n, v := range i.Volumes {
		mode := "read-write"
		if v.ReadOnly {
			mode = "read-only"
		}
		card := ""
		if v.CardPID != 0 {
			card = fmt.Sprintf(", card pid %d", v.CardPID)
		}
		pairs = append(pairs, [2]string{"Volume vd" + string(rune('a'+n)), v.VolumeID + " (" + mode + card + ")"})
	}
	pairs = append(pairs, [2]string{"Private IP", i.PrivateIP})
	if i.IAMInstanceProfile != "" {
		pairs = append(pairs, [2]string{"Instance profile", i.IAMInstanceProfile})
	}
	for _, n := range i.NetworkInterfaces {
		pairs = append(pairs, [2]string{fmt.Sprintf("Interface %d", n.DeviceIndex),
			fmt.Sprintf("%s (%s, MAC %s, subnet %s, VPC %s)", n.ID, n.PrivateIP, n.MAC, n.SubnetID, n.VPCID)})
	}
	if i.BootMs > 0 {
		pairs = append(pairs, [2]string{"Boot time", fmt.Sprintf("%d ms (launch to agent ready)", i.BootMs)})
	}
	if a := i.Agent; a != nil {
		pairs = append(pairs,
			[2]string{"Guest timings", fmt.Sprintf("kernel start to init %d ms, init to ready %d ms", a.InitMs, a.ReadyMs-a.InitMs)},
			[2]string{"Guest sees", fmt.Sprintf("%d vCPUs, %d KiB RAM (MemTotal %d KiB), %d modules loaded", a.VCPUs, a.MemRAMKiB, a.MemTotalKiB, a.Modules)})
	}
	e.kv(pairs)
	return nil
}

func instanceDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Instance, error) {
		return e.client.DescribeInstance(ctx, pos[0])
	}, showInstance)
}

func instanceConsole(e *env, fs *pflag.FlagSet) runFunc {
	follow := fs.BoolP("follow", "f", false, "follow new output until interrupted")
	tail := fs.Int64("tail", 64<<10, "bytes of earlier output to print")
	raw := fs.Bool("raw", false, "print the guest's bytes unchanged, escape sequences included (by default they are removed and control characters shown as ^X)")
	interactive := fs.Bool("interactive", false, "open a login shell in the guest through its agent (compute:ExecuteCommand); ~. at the start of a line leaves")
	user := fs.String("user", "", "with --interactive: log in as this user of the guest (default root)")
	return func(ctx context.Context, pos []string) error {
		if *interactive {
			return consoleInteractive(ctx, e, pos[0], *user)
		}
		if *raw {
			return e.client.Console(ctx, pos[0], *tail, *follow, e.stdout)
		}
		// The guest writes these bytes: they must not drive the terminal.
		tw := newTermWriter(e.stdout)
		err := e.client.Console(ctx, pos[0], *tail, *follow, tw)
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
		return err
	}
}

func instanceStop(e *env, fs *pflag.FlagSet) runFunc {
	force := fs.Bool("force", false, "end the machine at once instead of asking the guest")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Instance, error) {
		e.progress("stopping %s ...", pos[0])
		return e.client.InstanceAction(ctx, pos[0], "stop", api.StopInstanceRequest{Force: *force})
	}, showInstance)
}

func instanceStart(e *env, fs *pflag.FlagSet) runFunc {
	noWait := fs.Bool("no-wait", false, "return once the machine is launched")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the agent")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Instance, error) {
		inst, err := e.client.InstanceAction(ctx, pos[0], "start", nil)
		if err != nil {
			return inst, err
		}
		e.progress("%s launched (pid %d); waiting for the guest agent ...", inst.ID, inst.PID)
		if !*noWait {
			if inst, err = waitReady(ctx, e, inst.ID, inst.BootCount, *timeout); err != nil {
				return inst, err
			}
			e.progress("%s is running: agent ready %d ms after launch", inst.ID, inst.BootMs)
		}
		return inst, nil
	}, showInstance)
}

func instanceReboot(e *env, fs *pflag.FlagSet) runFunc {
	noWait := fs.Bool("no-wait", false, "return once the guest was asked to reboot")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the agent")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Instance, error) {
		inst, err := e.client.InstanceAction(ctx, pos[0], "reboot", nil)
		if err != nil {
			return inst, err
		}
		if !*noWait {
			e.progress("rebooting %s; waiting for the guest agent ...", inst.ID)
			if inst, err = waitReady(ctx, e, inst.ID, inst.BootCount+1, *timeout); err != nil {
				return inst, err
			}
			e.progress("%s is running again: agent ready %d ms after reset", inst.ID, inst.BootMs)
		}
		return inst, nil
	}, showInstance)
}

func instanceTerminate(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Instance, error) {
		e.progress("terminating %s ...", pos[0])
		return e.client.InstanceAction(ctx, pos[0], "terminate", nil)
	}, showInstance)
}

func instanceModify(e *env, fs *pflag.FlagSet) runFunc {
	var req api.ModifyInstanceRequest
	fs.Func("termination-protection", "true or false", setBool(&req.TerminationProtection))
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Instance, error) {
		if req.TerminationProtection == nil {
			return api.Instance{}, usageError{msg: "nothing to change: give --termination-protection=true|false"}
		}
		return e.client.ModifyInstance(ctx, pos[0], req)
	}, showInstance)
}
